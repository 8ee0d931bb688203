"""Messages that workers post to the app; handlers turn them into widget state."""

from __future__ import annotations

from textual.message import Message

from gpudesk.core.containers import ContainerInfo
from gpudesk.core.engine import EngineInfo
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import StreamState
from gpudesk.core.ssh import ConnStatus


class HostStatus(Message):
    """A host's connection changed state or measured a new latency."""

    def __init__(self, status: ConnStatus) -> None:
        super().__init__()
        self.status = status


class EngineStatus(Message):
    """The Docker engine of a host answered (``info``) or could not be reached (``error``)."""

    def __init__(self, host: str, info: EngineInfo | None, error: str | None) -> None:
        super().__init__()
        self.host = host
        self.info = info
        self.error = error


class GpuUpdate(Message):
    """A host's GPU agent sent a sample."""

    def __init__(self, host: str, sample: GpuSample) -> None:
        super().__init__()
        self.host = host
        self.sample = sample


class GpuStreamState(Message):
    """A host's GPU agent started, stopped or is being restarted."""

    def __init__(self, host: str, state: StreamState, detail: str) -> None:
        super().__init__()
        self.host = host
        self.state = state
        self.detail = detail


class ContainersUpdate(Message):
    """A fresh container listing for a host (``infos``), or why there is none (``error``)."""

    def __init__(self, host: str, infos: list[ContainerInfo] | None, error: str | None) -> None:
        super().__init__()
        self.host = host
        self.infos = infos
        self.error = error


class JupyterReady(Message):
    """A Jupyter container's URL, reachable from this machine (``error`` if it is not)."""

    def __init__(
        self, host: str, name: str, url: str | None, error: str | None, browser: bool
    ) -> None:
        super().__init__()
        self.host = host
        self.name = name
        self.url = url
        self.error = error
        self.browser = browser
