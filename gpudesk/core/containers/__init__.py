"""Dev containers on one Docker engine, one module per concern.

- :mod:`.model`: errors, values (:class:`ContainerInfo`, :class:`LaunchSpec`, ...) and parsing of
  Docker's inspect output and ``--gpus`` syntax;
- :mod:`.engine`: queries and actions (list, watch, inspect, start/stop/remove, image build);
- :mod:`.launch`: launching a container and waiting until it answers (:class:`Containers`);
- :mod:`.probes`: the readiness probes, over a local socket or an SSH channel.

The names below are the package's public interface.
"""

from gpudesk.core.containers.engine import ContainerEngine
from gpudesk.core.containers.launch import Containers
from gpudesk.core.containers.model import (
    LOG_TAIL,
    WORKSPACE,
    BaseImageMissingError,
    ContainerError,
    ContainerEvent,
    ContainerInfo,
    ContainerNotFoundError,
    ContainerStartError,
    ImageBuildError,
    InvalidGpuSpecError,
    LaunchCancelledError,
    LaunchResult,
    LaunchSpec,
    LaunchTimeoutError,
    NameInUseError,
    NoGpuRuntime,
    NoGpuRuntimeError,
    NoSpaceLeftError,
    PortBinding,
    Removed,
    Stats,
    info_from_attrs,
    parse_gpus,
    workspace_from_mounts,
)
from gpudesk.core.containers.probes import (
    Probe,
    ReadyResult,
    probe_jupyter,
    probe_ssh_banner,
    ready_probe,
)
from gpudesk.core.containers.pull import PullProgress, split_image_ref

__all__ = [
    "LOG_TAIL",
    "WORKSPACE",
    "BaseImageMissingError",
    "ContainerEngine",
    "ContainerError",
    "ContainerEvent",
    "ContainerInfo",
    "ContainerNotFoundError",
    "ContainerStartError",
    "Containers",
    "ImageBuildError",
    "InvalidGpuSpecError",
    "LaunchCancelledError",
    "LaunchResult",
    "LaunchSpec",
    "LaunchTimeoutError",
    "NameInUseError",
    "NoGpuRuntime",
    "NoGpuRuntimeError",
    "NoSpaceLeftError",
    "PortBinding",
    "Probe",
    "PullProgress",
    "ReadyResult",
    "Removed",
    "Stats",
    "info_from_attrs",
    "parse_gpus",
    "probe_jupyter",
    "probe_ssh_banner",
    "ready_probe",
    "split_image_ref",
    "workspace_from_mounts",
]
