"""Queries and actions on one Docker engine's dev containers: list, watch, inspect, start, stop,
remove, and build gpudesk's images.

Everything goes through an injected ``docker.DockerClient`` (in the app it tunnels over the GPU
host's SSH connection), so this module only speaks the Docker API. Docker's own exceptions never
leave it: each failure becomes a :class:`ContainerError` whose message says what went wrong and
what to do.
"""

from __future__ import annotations

import builtins
import io
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gpudesk.core.containers.model import (
    LOG_TAIL,
    BaseImageMissingError,
    ContainerError,
    ContainerEvent,
    ContainerInfo,
    ContainerNotFoundError,
    ImageBuildError,
    NoSpaceLeftError,
    Progress,
    Removed,
    Stats,
    info_from_attrs,
    list_order,
    parse_event,
)
from gpudesk.core.containers.pull import PullProgress, split_image_ref
from gpudesk.core.containers.stats import usage_of
from gpudesk.core.errors import disk_full, engine_errors
from gpudesk.core.flavours import (
    DEFAULT_BASE_IMAGE,
    Flavour,
    context_tarball,
    created_by,
    image_tag,
    label,
)

if TYPE_CHECKING:
    import docker
    import docker.errors
    import requests
else:
    from gpudesk.core.lazy import lazy_module

    docker = lazy_module("docker")
    requests = lazy_module("requests")


def _api_message(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip().rstrip(".")


class ContainerEngine:
    """Dev container queries and actions on one Docker engine (launching is in ``launch``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    # ---------------------------------------------------------------- queries

    def list(self, all_containers: bool = False) -> list[ContainerInfo]:
        """gpudesk's containers, running or not; with ``all_containers``, every container."""
        filters = {} if all_containers else {"label": label("flavour")}
        try:
            found = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        except engine_errors() as exc:
            raise self._error("could not list containers", exc) from exc
        now = datetime.now(UTC)
        infos = [info_from_attrs(c.attrs, now) for c in found]
        return sorted(infos, key=list_order)

    def get(self, name: str) -> ContainerInfo:
        return info_from_attrs(self._container(name).attrs)

    def inspect(self, name: str) -> dict[str, Any]:
        attrs: dict[str, Any] = self._container(name).attrs
        return attrs

    def exists(self, name: str) -> bool:
        try:
            self.client.containers.get(name)
        except docker.errors.NotFound:
            return False
        except engine_errors() as exc:
            raise self._error(f"could not look up container {name}", exc) from exc
        return True

    def events(self) -> EventStream:
        """Container events as they happen, until the stream ends or is closed.

        The stream is opened before this returns, so failing to reach Docker raises here. It
        ends on its own when the engine restarts or the channel carrying it drops; the caller
        decides whether to subscribe again (the TUI's watch does, see ``watch``).
        """
        try:
            stream = self.client.events(decode=True, filters={"type": "container"})
        except engine_errors() as exc:
            raise self._error("could not watch container events", exc) from exc
        return EventStream(stream, self._error)

    def stats(self, name: str) -> Stats:
        """One CPU/memory sample of a running container."""
        container = self._container(name)
        try:
            raw = container.stats(stream=False)
        except engine_errors() as exc:
            raise self._error(f"could not read the usage of {name}", exc) from exc
        usage = usage_of(raw)
        if usage is None:
            return Stats(0.0, 0, 0)
        return Stats(round(usage.cpu_percent or 0.0, 1), usage.mem_used or 0, usage.mem_limit or 0)

    def host_public_key(self, name: str, key_type: str = "ed25519") -> str:
        """The SSH host key a running SSH-flavour container made at its first start."""
        container = self._container(name)
        path = f"/etc/ssh/ssh_host_{key_type}_key.pub"
        try:
            code, output = container.exec_run(["cat", path], user="root")
        except engine_errors() as exc:
            raise self._error(f"could not read the SSH host key of {name}", exc) from exc
        text = output.decode("utf-8", "replace").strip() if output else ""
        parts = text.split()
        if code != 0 or len(parts) < 2 or not parts[0].startswith("ssh-"):
            raise ContainerError(
                f"Container {name} has no SSH host key at {path}; is it an SSH-flavour container?"
            )
        return f"{parts[0]} {parts[1]}"

    def logs_tail(self, name: str, lines: int = LOG_TAIL) -> builtins.list[str]:
        return logs_tail(self._container(name), lines)

    # ---------------------------------------------------------------- actions

    def start(self, name: str) -> ContainerInfo:
        return self._act(name, "start", lambda c: c.start())

    def stop(self, name: str, timeout: int = 10) -> ContainerInfo:
        return self._act(name, "stop", lambda c: c.stop(timeout=timeout))

    def restart(self, name: str, timeout: int = 10) -> ContainerInfo:
        return self._act(name, "restart", lambda c: c.restart(timeout=timeout))

    def remove(self, name: str) -> Removed:
        """Stop and delete the container; its workspace folder on the host is left untouched."""
        container = self._container(name)
        info = info_from_attrs(container.attrs)
        try:
            # v=False: Docker never deletes bind mounts, and named volumes are the user's too.
            container.remove(force=True, v=False)
        except docker.errors.NotFound:
            pass
        except engine_errors() as exc:
            raise self._error(f"could not remove {name}", exc) from exc
        return Removed(id=info.id, name=info.name, kept_workspace=info.workspace)

    # ---------------------------------------------------------------- images

    def nvidia_runtime_available(self) -> bool:
        """Whether this engine has the NVIDIA runtime registered (``docker info`` Runtimes)."""
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except engine_errors() as exc:
            raise self._error("could not ask Docker about its runtimes", exc) from exc
        return "nvidia" in runtimes

    def image_exists(self, tag: str) -> bool:
        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        except engine_errors() as exc:
            raise self._error(f"could not look up image {tag}", exc) from exc
        return True

    def ensure_image(
        self,
        flavour: Flavour,
        base_image: str = DEFAULT_BASE_IMAGE,
        on_output: Progress | None = None,
    ) -> str:
        """The image tag for ``flavour`` on ``base_image``, building it only if it is missing."""
        emit = on_output or (lambda _line: None)
        tag = image_tag(flavour, base_image)
        if self.image_exists(tag):
            return tag
        if not self.image_exists(base_image):
            raise BaseImageMissingError(
                f"The base image {base_image} is not on the GPU host; let gpudesk pull it"
                f" (--pull, or the Pull button in the TUI; several GB) or run"
                f" `docker pull {base_image}` there."
            )
        emit(f"Building {tag} from {base_image}")
        last: deque[str] = deque(maxlen=LOG_TAIL)
        try:
            chunks = self.client.api.build(
                fileobj=io.BytesIO(context_tarball()),
                custom_context=True,
                tag=tag,
                target=flavour.value,
                buildargs={"BASE_IMAGE": base_image},
                # Not io.gpudesk.flavour: containers inherit image labels, and that one marks
                # containers gpudesk launched itself.
                labels={
                    label("image.created-by"): created_by(),
                    label("image.flavour"): flavour.value,
                },
                decode=True,
                rm=True,
                forcerm=True,
                pull=False,
            )
            for chunk in chunks:
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in str(text).splitlines():
                    if line.strip():
                        last.append(line)
                        emit(line)
                if "error" in chunk:
                    self._raise_build_error(tag, str(chunk["error"]), list(last))
        except engine_errors() as exc:
            message = _api_message(exc) if isinstance(exc, docker.errors.APIError) else str(exc)
            self._raise_build_error(tag, message, list(last))
        if not self.image_exists(tag):
            raise ImageBuildError(f"Building {tag} ended without an image.", list(last))
        return tag

    def pull_image(self, ref: str, on_progress: Progress | None = None) -> None:
        """Pull ``ref`` onto the host, reporting overall progress (bytes over all layers)."""
        emit = on_progress or (lambda _line: None)
        repository, tag = split_image_ref(ref)
        emit(f"Pulling {ref}")
        progress = PullProgress()
        try:
            for chunk in self.client.api.pull(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    raise ContainerError(
                        f"Pulling {ref} failed: {str(chunk['error']).strip()[:300]}."
                    )
                line = progress.update(chunk)
                if line:
                    emit(line)
        except engine_errors() as exc:
            raise self._error(f"could not pull {ref}", exc) from exc
        if not self.image_exists(ref):
            raise ContainerError(f"Pulling {ref} ended without the image; try again.")
        emit(f"Pulled {ref}")

    @staticmethod
    def _raise_build_error(tag: str, error: str, last: builtins.list[str]) -> None:
        error = error.strip()
        if disk_full(error) or any(disk_full(line) for line in last):
            raise NoSpaceLeftError(
                f"The GPU host ran out of disk space while building {tag}; free some (for"
                " example with docker system prune) and try again."
            )
        tail = "\n".join(last[-10:])
        raise ImageBuildError(
            f"Building {tag} failed: {error}" + (f"\nLast output:\n{tail}" if tail else ""), last
        )

    # ---------------------------------------------------------------- helpers

    def _container(self, name: str) -> Any:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound as exc:
            raise ContainerNotFoundError(
                f"There is no container named {name} on this host; refresh the list."
            ) from exc
        except engine_errors() as exc:
            raise self._error(f"could not look up {name}", exc) from exc

    def _act(self, name: str, verb: str, action: Callable[[Any], None]) -> ContainerInfo:
        container = self._container(name)
        try:
            action(container)
            container.reload()
        except engine_errors() as exc:
            raise self._error(f"could not {verb} {name}", exc) from exc
        return info_from_attrs(container.attrs)

    @staticmethod
    def _error(what: str, exc: BaseException) -> ContainerError:
        if isinstance(exc, docker.errors.APIError):
            detail = _api_message(exc)
            if disk_full(detail):
                return NoSpaceLeftError(
                    f"Docker {what}: the GPU host is out of disk space; free some and try again."
                )
            return ContainerError(f"Docker {what}: {detail}.")
        if "No such file or directory" in str(exc):
            return ContainerError(
                f"Docker {what}: no Docker engine runs there (its socket does not exist); start"
                " dockerd or set DOCKER_HOST."
            )
        if isinstance(exc, requests.exceptions.RequestException | OSError):
            return ContainerError(
                f"Docker {what} because the engine did not answer ({exc}); check the connection"
                " to the GPU host."
            )
        return ContainerError(f"Docker {what}: {exc}.")


class EventStream:
    """One subscription to a Docker engine's container events: iterate it; close it from any
    thread to end the iteration (the iterator then returns quietly).

    Ending by itself (engine restart, dropped channel) returns or raises
    :class:`ContainerError`; either way only this subscription is over.
    """

    def __init__(self, stream: Any, error: Callable[[str, BaseException], ContainerError]) -> None:
        self._stream = stream
        self._error = error
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._stream.close()
        except Exception:
            # Over SSH the stream rides a paramiko channel, which docker-py cannot cancel;
            # closing the channel ends the blocked read all the same.
            raw = getattr(getattr(self._stream, "_response", None), "raw", None)
            fp = getattr(getattr(raw, "_fp", None), "fp", None)
            channel = getattr(fp, "channel", None)
            if channel is not None:
                channel.close()

    def __iter__(self) -> Iterator[ContainerEvent]:
        try:
            for raw in self._stream:
                if self._closed.is_set():
                    return
                event = parse_event(raw)
                if event is not None:
                    yield event
        except Exception as exc:
            # Closing the stream from another thread surfaces here as a socket error.
            if self._closed.is_set():
                return
            if isinstance(exc, engine_errors()):
                raise self._error("the Docker event stream broke", exc) from exc
            raise


def logs_tail(container: Any, lines: int) -> list[str]:
    try:
        raw = container.logs(tail=lines)
    except engine_errors():
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return [line for line in text.splitlines() if line.strip()]
