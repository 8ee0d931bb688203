"""Launching a dev container: check the request, build the image if needed, create, start, and
wait until it answers; on any failure nothing is left behind but the workspace folder."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpudesk.core.containers.engine import ContainerEngine, logs_tail
from gpudesk.core.containers.model import (
    HOST_NETWORK,
    LOG_TAIL,
    WORKSPACE,
    BaseImageMissingError,
    ContainerError,
    ContainerStartError,
    LaunchCancelledError,
    LaunchResult,
    LaunchSpec,
    LaunchTimeoutError,
    NameInUseError,
    NoGpuRuntimeError,
    Progress,
    info_from_attrs,
    parse_gpus,
    published_port,
)
from gpudesk.core.containers.probes import Probe, ReadyResult, local_probe
from gpudesk.core.containers.workspace import check_workspace
from gpudesk.core.errors import engine_errors
from gpudesk.core.flavours import (
    Flavour,
    GpudeskLabels,
    generate_token,
    label,
    validate_name,
    validate_user,
)

if TYPE_CHECKING:
    import docker
    import docker.errors
    import docker.types
else:
    from gpudesk.core.lazy import lazy_module

    docker = lazy_module("docker")

# PyTorch DataLoader workers pass tensors through /dev/shm and Docker's default is 64 MB. A sized
# tmpfs keeps the container's IPC namespace private (ipc=host would expose the host's and every
# other container's shared memory); the tmpfs only uses memory as it fills.
SHM_SIZE = "16g"
READY_TIMEOUT = 120.0
PROBE_INTERVAL = 0.5
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)b?", re.IGNORECASE | re.ASCII)
_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}
MIN_MEMORY = 6 * 2**20  # Docker's own floor for a memory limit


def check_memory(memory: str | None) -> None:
    """Refuse a memory limit Docker would refuse or misread (``0`` means no limit to Docker)."""
    if memory is None:
        return
    match = _MEMORY_RE.fullmatch(memory.strip())
    if not match:
        raise ContainerError(
            f"{memory!r} is not a memory size; write a number with k, m or g, like 64g."
        )
    size = float(match[1]) * _MEMORY_UNITS[match[2].lower()]
    if size < MIN_MEMORY:
        raise ContainerError(
            f"A memory limit of {memory.strip()} is too small (Docker needs at least 6m, and 0"
            " would mean no limit); leave --memory out for no limit."
        )


def check_network(spec: LaunchSpec) -> int | None:
    """The host loopback port the server listens on with host networking, else None."""
    if not spec.network:
        return None
    if spec.network != HOST_NETWORK:
        raise ContainerError(
            f"{spec.network!r} is not a network gpudesk launches on; use host or leave it out."
        )
    if spec.host_port is None or not 1024 <= spec.host_port <= 65535:
        raise ContainerError(
            "A container on the host network needs a free port on the host for its server;"
            " none was picked."
        )
    return spec.host_port


class Containers(ContainerEngine):
    """Dev container operations on one Docker engine: queries, actions and launch."""

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

        ``ensure_dir`` creates the workspace folder on the GPU host, owned by the container
        user when it makes it (the image never changes a folder's owner; see
        :func:`gpudesk.core.containers.workspace.prepare_workspace`); ``probe`` checks readiness
        through the published port on the host's 127.0.0.1 (defaults to a direct local probe,
        which only works when the engine is local). If anything fails after the container was
        created, the container is removed again; the workspace folder is kept.
        """
        emit = on_progress or (lambda _line: None)
        validate_name(spec.name)
        validate_user(spec.user)
        check_workspace(spec.workspace)
        check_memory(spec.memory)
        listen = check_network(spec)
        if spec.flavour is Flavour.SSH and not spec.public_key.strip():
            raise ContainerError("An SSH container needs your public key; none was given.")
        if self.exists(spec.name):
            raise NameInUseError(
                f"A container named {spec.name} already exists on this host; pick another name"
                " or remove that one first."
            )
        device_requests = parse_gpus(spec.gpus)
        if spec.simulated:  # simulated GPUs are not Docker's to hand out
            device_requests = []
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
        if listen is not None:
            environment["GPUDESK_LISTEN_PORT"] = str(listen)
        labels = GpudeskLabels(
            flavour=spec.flavour,
            owner=spec.owner,
            workspace=spec.workspace,
            user=spec.user,
            gpus=(spec.gpus or "").strip(),
            ports=(spec.flavour.container_port,),
            sudo=spec.sudo,
        ).to_labels()
        if listen is not None:
            labels[label("network")] = HOST_NETWORK
            labels[label("listen")] = f"127.0.0.1:{listen}"
        kwargs: dict[str, Any] = {
            "name": spec.name,
            "hostname": spec.name.replace("_", "-").replace(".", "-"),
            "detach": True,
            "environment": environment,
            "labels": labels,
            # Only the host's loopback: the operator reaches it through the SSH connection.
            "ports": {spec.flavour.port_key: ("127.0.0.1", None)},
            "mounts": [docker.types.Mount(target=WORKSPACE, source=spec.workspace, type="bind")],
            "shm_size": SHM_SIZE,
            "restart_policy": {"Name": "unless-stopped"},
            # Kernels and ssh sessions leave orphans behind; Docker's init reaps them.
            "init": True,
        }
        if listen is not None:
            # The host's network namespace (multi-node runs reach each other directly); the
            # server listens on the host's loopback itself, so nothing is published, and the
            # hostname is the host's own.
            del kwargs["ports"], kwargs["hostname"]
            kwargs["network_mode"] = HOST_NETWORK
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
        except engine_errors() as exc:
            raise self._error(f"could not create {spec.name}", exc) from exc
        try:
            emit(f"Starting {spec.name}")
            container.start()
            host_port = self._wait_ready(
                container,
                spec.name,
                port_key=spec.flavour.port_key,
                probe=probe or local_probe(spec.flavour, token),
                timeout=timeout,
                cancel=cancel,
                emit=emit,
            )
            host_key = self.host_public_key(spec.name) if spec.flavour is Flavour.SSH else None
            container.reload()
        except BaseException as exc:
            self._discard(container)
            if isinstance(exc, engine_errors()):
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
                lines = logs_tail(container, LOG_TAIL)
                shown = "\n".join(lines[-10:]) or "(no output)"
                raise ContainerStartError(
                    f"Container {name} stopped while starting (exit code"
                    f" {state.get('ExitCode', '?')}); its last output:\n{shown}",
                    lines,
                )
            if host_port is None:
                host_port = published_port(container.attrs, port_key)
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
        with contextlib.suppress(*engine_errors()):
            container.remove(force=True, v=True)
