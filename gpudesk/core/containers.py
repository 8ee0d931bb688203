"""Dev containers on one Docker engine: list, watch, start/stop/remove, build and launch.

Everything goes through an injected ``docker.DockerClient`` (in the app it tunnels over the GPU
host's SSH connection), so this module only speaks the Docker API. Docker's own exceptions never
leave it: each failure becomes a :class:`ContainerError` whose message says what went wrong and
what to do.
"""

from __future__ import annotations

import builtins
import contextlib
import getpass
import http.client
import io
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import docker
import docker.errors
import requests
from docker.types import DeviceRequest, Mount

from gpudesk.core.flavours import (
    DEFAULT_BASE_IMAGE,
    DEFAULT_USER,
    Flavour,
    GpudeskLabels,
    context_tarball,
    created_by,
    generate_token,
    image_tag,
    is_gpudesk,
    label,
    validate_name,
    validate_user,
)

# PyTorch DataLoader workers pass tensors through /dev/shm and Docker's default is 64 MB. A sized
# tmpfs keeps the container's IPC namespace private (ipc=host would expose the host's and every
# other container's shared memory); the tmpfs only uses memory as it fills.
SHM_SIZE = "16g"
READY_TIMEOUT = 120.0
PROBE_INTERVAL = 0.5
LOG_TAIL = 20
_TIMESTAMP_FRACTION = re.compile(r"(\.\d{6})\d+")
# Indices as nvidia-smi numbers them, or GPU/MIG UUIDs as it prints them.
_GPU_ID = re.compile(r"\d{1,3}|GPU-[0-9a-fA-F-]{8,}|MIG-[0-9A-Za-z/-]{8,}")


# The SDK lets transport failures through as requests/OSError, not as DockerException.
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)
_MEMORY_RE = re.compile(r"\d+(\.\d+)?[kmg]?b?", re.IGNORECASE)


class ContainerError(Exception):
    """A container operation failed; the message is one sentence for the user."""


class ContainerNotFoundError(ContainerError):
    pass


class NameInUseError(ContainerError):
    pass


class NoGpuRuntimeError(ContainerError):
    """GPUs were asked for on a host whose Docker has no NVIDIA runtime."""


class InvalidGpuSpecError(ContainerError, ValueError):
    pass


class BaseImageMissingError(ContainerError):
    pass


class NoSpaceLeftError(ContainerError):
    pass


class ImageBuildError(ContainerError):
    def __init__(self, message: str, last_lines: list[str]) -> None:
        super().__init__(message)
        self.last_lines = last_lines


class ContainerStartError(ContainerError):
    def __init__(self, message: str, last_lines: list[str]) -> None:
        super().__init__(message)
        self.last_lines = last_lines


class LaunchTimeoutError(ContainerError):
    pass


class LaunchCancelledError(ContainerError):
    pass


# The name the issue uses.
NoGpuRuntime = NoGpuRuntimeError


@dataclass(frozen=True)
class PortBinding:
    host_ip: str
    host_port: int
    container_port: str  # as Docker names it, e.g. "22/tcp"


@dataclass(frozen=True)
class ContainerInfo:
    id: str
    name: str
    flavour: Flavour | None
    image: str
    state: str  # Docker's: created, running, paused, restarting, exited, dead
    status: str  # for people, e.g. "running", "exited (1)"
    created: datetime | None
    started_at: datetime | None
    uptime: timedelta | None
    gpus: str
    ports: list[PortBinding]
    workspace: str
    labels: dict[str, str]
    is_gpudesk: bool
    user: str = ""

    @property
    def uptime_text(self) -> str:
        if self.uptime is None or self.state != "running":
            return "-"
        seconds = int(self.uptime.total_seconds())
        days, rest = divmod(seconds, 86400)
        hours, rest = divmod(rest, 3600)
        if days:
            return f"{days}d{hours}h"
        return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"

    def host_port(self, container_port: str) -> int | None:
        for binding in self.ports:
            if binding.container_port == container_port:
                return binding.host_port
        return None


@dataclass(frozen=True)
class ContainerEvent:
    action: str  # Docker's: create, start, die, stop, destroy, health_status: healthy, ...
    id: str
    name: str
    labels: dict[str, str]
    time: datetime | None
    is_gpudesk: bool
    exit_code: int | None = None


@dataclass(frozen=True)
class Removed:
    """What :meth:`Containers.remove` removed (the container) and kept (its workspace)."""

    id: str
    name: str
    kept_workspace: str


@dataclass(frozen=True)
class Stats:
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int


@dataclass(frozen=True)
class ReadyResult:
    ready: bool
    detail: str = ""


@dataclass
class LaunchSpec:
    flavour: Flavour
    name: str
    workspace: str  # an absolute path on the GPU host; see flavours.default_workspace
    public_key: str = ""  # the operator's key, for the SSH flavour
    gpus: str | None = None
    image: str | None = None  # use this image instead of building one
    base_image: str = DEFAULT_BASE_IMAGE
    memory: str | None = None  # Docker's syntax, e.g. "64g"
    user: str = DEFAULT_USER
    owner: str = field(default_factory=getpass.getuser)
    sudo: bool = False
    # Made by launch() when None; a caller whose readiness probe needs it makes it first.
    jupyter_token: str | None = None


@dataclass(frozen=True)
class LaunchResult:
    info: ContainerInfo
    image: str
    host_port: int  # on the GPU host's 127.0.0.1
    user: str
    token: str | None = None  # Jupyter only
    host_key: str | None = None  # SSH only: "ssh-ed25519 AAAA..."


Probe = Callable[[int], ReadyResult]
Progress = Callable[[str], None]


def parse_gpus(spec: str | None) -> list[Any]:
    """Docker device requests for ``spec``: "all", a count ("2"), or indices/UUIDs ("0,2").

    A bare number is a count, as with ``docker run --gpus``; a single index is written "1," or
    "device=1". None, "" or "none" mean no GPUs.
    """
    text = (spec or "").strip()
    lowered = text.lower()
    if lowered in ("", "none", "cpu"):
        return []
    if lowered == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if text.isdigit():
        if int(text) == 0:
            raise InvalidGpuSpecError("0 GPUs is not a GPU request; leave GPUs empty for CPU only.")
        return [DeviceRequest(count=int(text), capabilities=[["gpu"]])]
    explicit = lowered.startswith("device=")
    ids = [part.strip() for part in text[len("device=") if explicit else 0 :].split(",")]
    if len(ids) > 1 and ids[-1] == "":
        ids.pop()
    if (
        (explicit or "," in text)
        and ids
        and all(_GPU_ID.fullmatch(i) for i in ids)
        and len(set(ids)) == len(ids)
    ):
        return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
    raise InvalidGpuSpecError(
        f"{spec!r} is not a GPU selection: use 'all', a count like '2', or GPU indices like '0,2'."
    )


def probe_ssh_banner(host: str, port: int, timeout: float = 2.0) -> ReadyResult:
    """Ready once something on ``host:port`` greets with an SSH banner."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            banner = sock.recv(256)
    except OSError as exc:
        return ReadyResult(False, f"no answer on port {port}: {exc}")
    if banner.startswith(b"SSH-"):
        return ReadyResult(True, banner.split(b"\r", 1)[0].decode("ascii", "replace"))
    return ReadyResult(False, f"port {port} answered without an SSH banner")


def probe_jupyter(host: str, port: int, token: str, timeout: float = 2.0) -> ReadyResult:
    """Ready once Jupyter answers GET /api/status with 200 for ``token``."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/api/status", headers={"Authorization": f"token {token}"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return ReadyResult(False, f"no answer on port {port}: {exc}")
    finally:
        conn.close()
    if status == 200:
        return ReadyResult(True, "Jupyter is up")
    return ReadyResult(False, f"Jupyter answered {status}")


def _parse_time(value: str | None) -> datetime | None:
    # Docker writes nanoseconds and "0001-01-01T00:00:00Z" for never.
    if not value or value.startswith("0001-"):
        return None
    text = _TIMESTAMP_FRACTION.sub(r"\1", value.replace("Z", "+00:00"))
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ports(attrs: dict[str, Any]) -> list[PortBinding]:
    result: list[PortBinding] = []
    raw = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    for container_port, bindings in sorted(raw.items()):
        for binding in bindings or []:
            host_port = str(binding.get("HostPort") or "")
            if host_port.isdigit():
                result.append(
                    PortBinding(binding.get("HostIp") or "", int(host_port), container_port)
                )
    return result


def _gpus_from_host_config(attrs: dict[str, Any]) -> str:
    for request in (attrs.get("HostConfig") or {}).get("DeviceRequests") or []:
        if request.get("DeviceIDs"):
            return ",".join(request["DeviceIDs"])
        if request.get("Count") == -1:
            return "all"
        if request.get("Count"):
            return str(request["Count"])
    return ""


def info_from_attrs(attrs: dict[str, Any], now: datetime | None = None) -> ContainerInfo:
    """A :class:`ContainerInfo` from ``docker inspect`` output."""
    config = attrs.get("Config") or {}
    state = attrs.get("State") or {}
    labels: dict[str, str] = dict(config.get("Labels") or {})
    parsed = GpudeskLabels.from_labels(labels)
    state_name = str(state.get("Status") or "unknown")
    started = _parse_time(state.get("StartedAt"))
    running = state_name == "running"
    uptime = (now or datetime.now(UTC)) - started if running and started else None
    status = state_name
    if state_name == "exited":
        status = f"exited ({state.get('ExitCode', '?')})"
    if state.get("OOMKilled"):
        status += ", out of memory"
    workspace = parsed.workspace if parsed else ""
    if not workspace:
        for mount in attrs.get("Mounts") or []:
            if mount.get("Destination") == "/workspace":
                workspace = str(mount.get("Source") or "")
    return ContainerInfo(
        id=str(attrs.get("Id", "")),
        name=str(attrs.get("Name", "")).lstrip("/"),
        flavour=parsed.flavour if parsed else None,
        image=str(config.get("Image") or attrs.get("Image") or ""),
        state=state_name,
        status=status,
        created=_parse_time(attrs.get("Created")),
        started_at=started,
        uptime=uptime,
        gpus=(parsed.gpus if parsed and parsed.gpus else _gpus_from_host_config(attrs)),
        ports=_ports(attrs),
        workspace=workspace,
        labels=labels,
        is_gpudesk=parsed is not None,
        user=parsed.user if parsed else "",
    )


def _api_message(exc: docker.errors.APIError) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip().rstrip(".")


class Containers:
    """Dev container operations on one Docker engine."""

    def __init__(self, client: Any) -> None:
        self.client = client

    # ---------------------------------------------------------------- queries

    def list(self, all_containers: bool = False) -> list[ContainerInfo]:
        """gpudesk's containers, running or not; with ``all_containers``, every container."""
        filters = {} if all_containers else {"label": label("flavour")}
        try:
            found = self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        except _ENGINE_ERRORS as exc:
            raise self._error("could not list containers", exc) from exc
        now = datetime.now(UTC)
        infos = [info_from_attrs(c.attrs, now) for c in found]
        return sorted(infos, key=lambda i: (not i.is_gpudesk, i.name))

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
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not look up container {name}", exc) from exc
        return True

    def events(self, stop: threading.Event) -> Iterator[ContainerEvent]:
        """Container events as they happen, until ``stop`` is set (which also closes the stream).

        The stream is opened before this returns, so failing to reach Docker raises here.
        """
        try:
            stream = self.client.events(decode=True, filters={"type": "container"})
        except _ENGINE_ERRORS as exc:
            raise self._error("could not watch container events", exc) from exc

        def closer() -> None:
            stop.wait()
            try:
                stream.close()
            except docker.errors.DockerException:
                # Over SSH the stream rides a paramiko channel, which docker-py cannot cancel;
                # closing the channel ends the blocked read all the same.
                channel = getattr(stream._response.raw._fp.fp, "channel", None)
                if channel is not None:
                    channel.close()

        threading.Thread(target=closer, name="gpudesk-docker-events", daemon=True).start()
        return self._event_iter(stream, stop)

    def _event_iter(self, stream: Any, stop: threading.Event) -> Iterator[ContainerEvent]:
        try:
            for raw in stream:
                if stop.is_set():
                    return
                event = _event(raw)
                if event is not None:
                    yield event
        except Exception as exc:
            # Closing the stream from the closer thread surfaces here as a socket error.
            if stop.is_set():
                return
            if isinstance(exc, _ENGINE_ERRORS):
                raise self._error("the Docker event stream broke", exc) from exc
            raise
        finally:
            stop.set()

    def stats(self, name: str) -> Stats:
        """One CPU/memory sample of a running container."""
        container = self._container(name)
        try:
            raw = container.stats(stream=False)
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not read the usage of {name}", exc) from exc
        cpu, pre = raw.get("cpu_stats") or {}, raw.get("precpu_stats") or {}
        cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
            pre.get("cpu_usage") or {}
        ).get("total_usage", 0)
        sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
        cpus = cpu.get("online_cpus") or len(
            (cpu.get("cpu_usage") or {}).get("percpu_usage") or [1]
        )
        percent = cpu_delta / sys_delta * cpus * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
        mem = raw.get("memory_stats") or {}
        details = mem.get("stats") or {}
        # Page cache is reclaimable; `docker stats` leaves it out the same way.
        cache = details.get("inactive_file", details.get("total_inactive_file", 0))
        used = max(int(mem.get("usage", 0)) - int(cache), 0)
        return Stats(round(percent, 1), used, int(mem.get("limit", 0)))

    def host_public_key(self, name: str, key_type: str = "ed25519") -> str:
        """The SSH host key a running SSH-flavour container made at its first start."""
        container = self._container(name)
        path = f"/etc/ssh/ssh_host_{key_type}_key.pub"
        try:
            code, output = container.exec_run(["cat", path], user="root")
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not read the SSH host key of {name}", exc) from exc
        text = output.decode("utf-8", "replace").strip() if output else ""
        parts = text.split()
        if code != 0 or len(parts) < 2 or not parts[0].startswith("ssh-"):
            raise ContainerError(
                f"Container {name} has no SSH host key at {path}; is it an SSH-flavour container?"
            )
        return f"{parts[0]} {parts[1]}"

    def logs_tail(self, name: str, lines: int = LOG_TAIL) -> builtins.list[str]:
        return _logs_tail(self._container(name), lines)

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
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not remove {name}", exc) from exc
        return Removed(id=info.id, name=info.name, kept_workspace=info.workspace)

    # ---------------------------------------------------------------- images

    def nvidia_runtime_available(self) -> bool:
        """Whether this engine has the NVIDIA runtime registered (``docker info`` Runtimes)."""
        try:
            runtimes = self.client.info().get("Runtimes") or {}
        except _ENGINE_ERRORS as exc:
            raise self._error("could not ask Docker about its runtimes", exc) from exc
        return "nvidia" in runtimes

    def image_exists(self, tag: str) -> bool:
        try:
            self.client.images.get(tag)
        except docker.errors.ImageNotFound:
            return False
        except _ENGINE_ERRORS as exc:
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
        except _ENGINE_ERRORS as exc:
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
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not pull {ref}", exc) from exc
        if not self.image_exists(ref):
            raise ContainerError(f"Pulling {ref} ended without the image; try again.")
        emit(f"Pulled {ref}")

    @staticmethod
    def _raise_build_error(tag: str, error: str, last: builtins.list[str]) -> None:
        error = error.strip()
        if "no space left on device" in error.lower() or any(
            "no space left on device" in line.lower() for line in last
        ):
            raise NoSpaceLeftError(
                f"The GPU host ran out of disk space while building {tag}; free some (for"
                " example with docker system prune) and try again."
            )
        tail = "\n".join(last[-10:])
        raise ImageBuildError(
            f"Building {tag} failed: {error}" + (f"\nLast output:\n{tail}" if tail else ""), last
        )

    # ---------------------------------------------------------------- launch

    def launch(
        self,
        spec: LaunchSpec,
        ensure_dir: Callable[[str], None],
        *,
        probe: Probe | None = None,
        on_progress: Progress | None = None,
        timeout: float = READY_TIMEOUT,
        cancel: threading.Event | None = None,
    ) -> LaunchResult:
        """Create and start a dev container and wait until it answers.

        ``ensure_dir`` creates the workspace folder on the GPU host; ``probe`` checks readiness
        through the published port on the host's 127.0.0.1 (defaults to a direct local probe,
        which only works when the engine is local). If anything fails after the container was
        created, the container is removed again; the workspace folder is kept.
        """
        emit = on_progress or (lambda _line: None)
        validate_name(spec.name)
        validate_user(spec.user)
        if not PurePosixPath(spec.workspace).is_absolute():
            raise ContainerError(
                f"The workspace {spec.workspace!r} must be an absolute path on the GPU host."
            )
        if spec.memory and not _MEMORY_RE.fullmatch(spec.memory.strip()):
            raise ContainerError(
                f"{spec.memory!r} is not a memory size; write a number with k, m or g, like 64g."
            )
        if spec.flavour is Flavour.SSH and not spec.public_key.strip():
            raise ContainerError("An SSH container needs your public key; none was given.")
        if self.exists(spec.name):
            raise NameInUseError(
                f"A container named {spec.name} already exists on this host; pick another name"
                " or remove that one first."
            )
        device_requests = parse_gpus(spec.gpus)
        if device_requests and not self.nvidia_runtime_available():
            raise NoGpuRuntimeError(
                "This host's Docker has no NVIDIA runtime, so the container cannot use GPUs;"
                " launch it CPU-only instead, or install the NVIDIA Container Toolkit on the host."
            )
        image = spec.image or self.ensure_image(spec.flavour, spec.base_image, emit)
        if spec.image and not self.image_exists(spec.image):
            raise BaseImageMissingError(
                f"The image {spec.image} is not on the GPU host; pull or import it first."
            )
        emit(f"Creating workspace {spec.workspace}")
        ensure_dir(spec.workspace)

        token = None
        if spec.flavour is Flavour.JUPYTER:
            token = spec.jupyter_token or generate_token()
        environment = {"GPUDESK_USER": spec.user, "GPUDESK_SUDO": "1" if spec.sudo else "0"}
        if spec.flavour is Flavour.SSH:
            environment["GPUDESK_AUTHORIZED_KEYS"] = spec.public_key.strip()
        if token is not None:
            environment["JUPYTER_TOKEN"] = token
        labels = GpudeskLabels(
            flavour=spec.flavour,
            owner=spec.owner,
            workspace=spec.workspace,
            user=spec.user,
            gpus=(spec.gpus or "").strip(),
            ports=(spec.flavour.container_port,),
            sudo=spec.sudo,
        ).to_labels()
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "hostname": spec.name.replace("_", "-").replace(".", "-"),
            "detach": True,
            "environment": environment,
            "labels": labels,
            # Only the host's loopback: the operator reaches it through the SSH connection.
            "ports": {spec.flavour.port_key: ("127.0.0.1", None)},
            "mounts": [Mount(target="/workspace", source=spec.workspace, type="bind")],
            "shm_size": SHM_SIZE,
            "restart_policy": {"Name": "unless-stopped"},
            # Kernels and ssh sessions leave orphans behind; Docker's init reaps them.
            "init": True,
        }
        if device_requests:
            kwargs["device_requests"] = device_requests
        if spec.memory:
            kwargs["mem_limit"] = spec.memory.strip().lower()

        emit(f"Creating container {spec.name}")
        try:
            container = self.client.containers.create(image, **kwargs)
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise NameInUseError(
                    f"A container named {spec.name} was just created by someone else; pick"
                    " another name."
                ) from exc
            raise self._error(f"could not create {spec.name}", exc) from exc
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not create {spec.name}", exc) from exc
        try:
            emit(f"Starting {spec.name}")
            container.start()
            host_port = self._wait_ready(
                container,
                spec.name,
                port_key=spec.flavour.port_key,
                probe=probe or _local_probe(spec.flavour, token),
                timeout=timeout,
                cancel=cancel,
                emit=emit,
            )
            host_key = self.host_public_key(spec.name) if spec.flavour is Flavour.SSH else None
            container.reload()
        except BaseException as exc:
            self._discard(container)
            if isinstance(exc, _ENGINE_ERRORS):
                raise self._error(f"could not start {spec.name}", exc) from exc
            raise
        emit(f"{spec.name} is ready")
        return LaunchResult(
            info=info_from_attrs(container.attrs),
            image=image,
            host_port=host_port,
            user=spec.user,
            token=token,
            host_key=host_key,
        )

    def _wait_ready(
        self,
        container: Any,
        name: str,
        *,
        port_key: str,
        probe: Probe,
        timeout: float,
        cancel: threading.Event | None,
        emit: Progress,
    ) -> int:
        """The published host port, once ``probe`` says the container answers on it."""
        waiter = cancel or threading.Event()
        deadline = time.monotonic() + timeout
        last = ReadyResult(False, "the port is not published yet")
        host_port: int | None = None
        while True:
            container.reload()
            state = container.attrs.get("State") or {}
            # With restart policy unless-stopped a failing entrypoint shows up as a restart
            # loop rather than as an exit.
            if (
                state.get("Status") in ("exited", "dead")
                or state.get("Restarting")
                or container.attrs.get("RestartCount", 0) > 0
            ):
                lines = _logs_tail(container, LOG_TAIL)
                shown = "\n".join(lines[-10:]) or "(no output)"
                raise ContainerStartError(
                    f"Container {name} stopped while starting (exit code"
                    f" {state.get('ExitCode', '?')}); its last output:\n{shown}",
                    lines,
                )
            if host_port is None:
                host_port = _published_port(container.attrs, port_key)
                if host_port is not None:
                    emit(f"Waiting for {name} to answer on 127.0.0.1:{host_port}")
            if host_port is not None:
                last = probe(host_port)
                if last.ready:
                    return host_port
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LaunchTimeoutError(
                    f"Container {name} did not answer within {timeout:.0f} s ({last.detail});"
                    " check its logs."
                )
            if waiter.wait(min(PROBE_INTERVAL, remaining)) and cancel is not None:
                raise LaunchCancelledError(f"Launching {name} was cancelled.")

    @staticmethod
    def _discard(container: Any) -> None:
        # The original failure matters more; a leftover would show up in the list for removal.
        with contextlib.suppress(*_ENGINE_ERRORS):
            container.remove(force=True, v=True)

    # ---------------------------------------------------------------- helpers

    def _container(self, name: str) -> Any:
        try:
            return self.client.containers.get(name)
        except docker.errors.NotFound as exc:
            raise ContainerNotFoundError(
                f"There is no container named {name} on this host; refresh the list."
            ) from exc
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not look up {name}", exc) from exc

    def _act(self, name: str, verb: str, action: Callable[[Any], None]) -> ContainerInfo:
        container = self._container(name)
        try:
            action(container)
            container.reload()
        except _ENGINE_ERRORS as exc:
            raise self._error(f"could not {verb} {name}", exc) from exc
        return info_from_attrs(container.attrs)

    @staticmethod
    def _error(what: str, exc: BaseException) -> ContainerError:
        if isinstance(exc, docker.errors.APIError):
            detail = _api_message(exc)
            if "no space left on device" in detail.lower():
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


def split_image_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` or ``repo@digest`` to what the pull API takes (tag "latest" if none)."""
    if "@" in ref:
        repository, digest = ref.split("@", 1)
        return repository, digest
    name, _, tag = ref.rpartition(":")
    if name and "/" not in tag:
        return name, tag
    return ref, "latest"


class PullProgress:
    """One line of overall pull progress from Docker's per-layer JSON messages.

    A line is made when the whole-image percentage moves by a step or a layer finishes, so a
    multi-GB pull prints tens of lines, not thousands.
    """

    STEP = 5.0

    def __init__(self) -> None:
        self.layers: dict[str, tuple[int, int]] = {}  # id -> (current, total) bytes
        self.done: set[str] = set()
        self._last = -self.STEP

    def update(self, chunk: dict[str, Any]) -> str | None:
        layer = str(chunk.get("id") or "")
        status = str(chunk.get("status") or "")
        detail = chunk.get("progressDetail") or {}
        if layer and status == "Downloading" and isinstance(detail, dict):
            total = detail.get("total")
            current = detail.get("current")
            if isinstance(total, int) and isinstance(current, int) and total > 0:
                self.layers[layer] = (min(current, total), total)
        finished = layer and status in ("Download complete", "Pull complete", "Already exists")
        if finished and layer not in self.done:
            self.done.add(layer)
            if layer in self.layers:
                self.layers[layer] = (self.layers[layer][1], self.layers[layer][1])
        total = sum(t for _, t in self.layers.values())
        if not total:
            return None
        current = sum(c for c, _ in self.layers.values())
        percent = 100.0 * current / total
        if percent - self._last < self.STEP and not (finished and status == "Pull complete"):
            return None
        self._last = percent
        return (
            f"downloaded {current / 1e9:.2f} of {total / 1e9:.2f} GB ({percent:.0f}%),"
            f" {len(self.done)} layer(s) done"
        )


def _published_port(attrs: dict[str, Any], port_key: str) -> int | None:
    for binding in _ports(attrs):
        if binding.container_port == port_key:
            return binding.host_port
    return None


def _local_probe(flavour: Flavour, token: str | None) -> Probe:
    if flavour is Flavour.JUPYTER:
        return lambda port: probe_jupyter("127.0.0.1", port, token or "")
    return lambda port: probe_ssh_banner("127.0.0.1", port)


def _logs_tail(container: Any, lines: int) -> list[str]:
    try:
        raw = container.logs(tail=lines)
    except _ENGINE_ERRORS:
        return []
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return [line for line in text.splitlines() if line.strip()]


def _event(raw: dict[str, Any]) -> ContainerEvent | None:
    actor = raw.get("Actor") or {}
    attributes: dict[str, str] = dict(actor.get("Attributes") or {})
    action = str(raw.get("Action") or raw.get("status") or "")
    if not action:
        return None
    name = attributes.pop("name", "")
    exit_code_text = attributes.pop("exitCode", None)
    attributes.pop("image", None)
    nanos = raw.get("timeNano")
    when = (
        datetime.fromtimestamp(nanos / 1e9, UTC)
        if isinstance(nanos, int)
        else (
            datetime.fromtimestamp(raw["time"], UTC) if isinstance(raw.get("time"), int) else None
        )
    )
    return ContainerEvent(
        action=action,
        id=str(actor.get("ID") or raw.get("id") or ""),
        name=name,
        labels=attributes,
        time=when,
        is_gpudesk=is_gpudesk(attributes),
        exit_code=int(exit_code_text) if exit_code_text and exit_code_text.isdigit() else None,
    )
