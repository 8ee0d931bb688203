"""Every message gpudesk's workers and loops post, in one place.

The app's state loops post the host messages (HostStatus ... JupyterReady, LoopFailed) to the
app, whose handlers apply them to the FleetState and tell the screens (desk.HostView). A screen's
own workers post the rest to that screen (RunsLoaded, LogLines, Notice, ...). Widgets' own
events (HostList.Opened, LogView.Changed) stay nested in their widget, as Textual does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

from gpudesk.core.engine import EngineInfo
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import StreamState
from gpudesk.core.ssh import ConnStatus

if TYPE_CHECKING:
    from gpudesk.core.containers import ContainerInfo
    from gpudesk.core.containers.stats import Usage
    from gpudesk.core.containers.watch import WatchChange
    from gpudesk.core.runs import Run


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


class ContainerChange(Message):
    """A host's container watch saw something: a full listing, changed rows, or a stale list."""

    def __init__(self, host: str, change: WatchChange) -> None:
        super().__init__()
        self.host = host
        self.change = change


class ContainerStats(Message):
    """The latest CPU/memory of the containers a host's stats watch follows (once a tick)."""

    def __init__(self, host: str, usage: dict[str, Usage]) -> None:
        super().__init__()
        self.host = host
        self.usage = usage


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


class LoopFailed(Message):
    """A host's long-lived loop (connection, GPU stream, container watch) ended with an error."""

    def __init__(self, loop: str, error: str) -> None:
        super().__init__()
        self.loop = loop
        self.error = error


class RunsLoaded(Message):
    """The runs of every host asked (and one error line per host that failed)."""

    def __init__(self, runs: list[Run], errors: list[str]) -> None:
        super().__init__()
        self.runs = runs
        self.errors = errors


class RunLoaded(Message):
    """One run, re-read for its detail view (``error`` if it could not be)."""

    def __init__(self, run: Run | None, error: str | None) -> None:
        super().__init__()
        self.run = run
        self.error = error


class LogLines(Message):
    """New lines of a followed log, and how many lines the follower has seen in all."""

    def __init__(self, lines: list[str], total: int) -> None:
        super().__init__()
        self.lines = lines
        self.total = total


class LogEnded(Message):
    """A followed log ended (the run or container stopped, or ``error``)."""

    def __init__(self, error: str | None) -> None:
        super().__init__()
        self.error = error


class Submitted(Message):
    """A run was submitted (``run``) or could not be (``error``)."""

    def __init__(self, run: Run | None, error: str | None) -> None:
        super().__init__()
        self.run = run
        self.error = error


class Notice(Message):
    """A worker's one line for the user; the screen that started the worker shows it."""

    def __init__(self, text: str, *, error: bool = False, timeout: float | None = None) -> None:
        super().__init__()
        self.text = text
        self.error = error
        self.timeout = timeout


class ActionDone(Notice):
    """A worker finished an action (or failed, ``error``); the screen notifies and refreshes."""


class InspectLoaded(Message):
    """``docker inspect`` of a container, as indented JSON."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__()
        self.name = name
        self.text = text


class ForwardOpened(Message):
    """A container port is forwarded here, at ``url``."""

    def __init__(self, url: str, text: str) -> None:
        super().__init__()
        self.url = url
        self.text = text
