"""Dev containers as gpudesk sees them: errors, values, and parsing of Docker's inspect output."""

from __future__ import annotations

import getpass
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gpudesk.core.errors import GpudeskError
from gpudesk.core.flavours import (
    DEFAULT_BASE_IMAGE,
    DEFAULT_USER,
    Flavour,
    GpudeskLabels,
    is_gpudesk,
    label,
)

WORKSPACE = "/workspace"  # where every dev container mounts its workspace folder
LOG_TAIL = 20
_TIMESTAMP_FRACTION = re.compile(r"(\.\d{6})\d+")
# Indices as nvidia-smi numbers them, or GPU/MIG UUIDs as it prints them.
_GPU_ID = re.compile(r"\d{1,3}|GPU-[0-9a-fA-F-]{8,}|MIG-[0-9A-Za-z/-]{8,}", re.ASCII)


class ContainerError(GpudeskError):
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
    network: str = ""  # "host" when the container shares the host's network namespace

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
    # The GPUs are simulated (GPUDESK_SIMULATE_GPUS): labelled as asked, but no devices.
    simulated: bool = False
    # "host": the container shares the host's network (multi-node runs); its SSH or Jupyter
    # server then listens on the host's 127.0.0.1:host_port, a free port the caller picked.
    network: str = ""
    host_port: int | None = None


@dataclass(frozen=True)
class LaunchResult:
    info: ContainerInfo
    image: str
    host_port: int  # on the GPU host's 127.0.0.1
    user: str
    token: str | None = None  # Jupyter only
    host_key: str | None = None  # SSH only: "ssh-ed25519 AAAA..."


Progress = Callable[[str], None]


def parse_gpus(spec: str | None) -> list[Any]:
    """Docker device requests for ``spec``: "all", a count ("2"), or indices/UUIDs ("0,2").

    A bare number is a count, as with ``docker run --gpus``; a single index is written "1," or
    "device=1". None, "" or "none" mean no GPUs.
    """
    from docker.types import DeviceRequest  # docker is imported on first use (core/lazy.py)

    text = (spec or "").strip()
    lowered = text.lower()
    if lowered in ("", "none", "cpu"):
        return []
    if lowered == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if text.isascii() and text.isdigit():  # not "²", which isdigit() too
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


HOST_NETWORK = "host"


def network_mode(attrs: dict[str, Any]) -> str:
    """ "host" for a container on the host's network, else ""."""
    mode = str((attrs.get("HostConfig") or {}).get("NetworkMode") or "")
    return HOST_NETWORK if mode == HOST_NETWORK else ""


def listen_binding(attrs: dict[str, Any]) -> list[PortBinding]:
    """A host-network container's server port, from the label launch wrote (nothing is
    published: the server listens on the host's loopback itself)."""
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    parsed = GpudeskLabels.from_labels(labels)
    host, _, port = str(labels.get(label("listen")) or "").rpartition(":")
    if parsed is None or not port.isdigit():
        return []
    return [PortBinding(host or "127.0.0.1", int(port), parsed.flavour.port_key)]


def _ports(attrs: dict[str, Any]) -> list[PortBinding]:
    if network_mode(attrs):
        return listen_binding(attrs)
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


def workspace_from_mounts(attrs: dict[str, Any]) -> str:
    """The host folder mounted at /workspace (containers gpudesk did not label), or ""."""
    workspace = ""
    for mount in attrs.get("Mounts") or []:
        if mount.get("Destination") == WORKSPACE:
            workspace = str(mount.get("Source") or "")
    return workspace


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
    workspace = (parsed.workspace if parsed else "") or workspace_from_mounts(attrs)
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
        network=network_mode(attrs),
    )


def published_port(attrs: dict[str, Any], port_key: str) -> int | None:
    for binding in _ports(attrs):
        if binding.container_port == port_key:
            return binding.host_port
    return None


def parse_event(raw: dict[str, Any]) -> ContainerEvent | None:
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


def list_order(info: ContainerInfo) -> tuple[bool, str]:
    """The order of a listing: gpudesk's containers first, then by name."""
    return (not info.is_gpudesk, info.name)
