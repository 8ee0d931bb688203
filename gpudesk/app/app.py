"""The gpudesk Textual app: Textual wiring around the headless :class:`FleetState`.

The state's loops report through this app (it is their :class:`~gpudesk.app.state.Sink`): each
report becomes a message, whose handler applies it to the state on the UI thread and tells the
screens which host changed (:class:`~gpudesk.app.desk.HostView`). Screens reach the app only
through :class:`~gpudesk.app.desk.Desk`.
"""

from __future__ import annotations

import sys
import webbrowser
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from gpudesk import __version__
from gpudesk.app.desk import Desk, HostView
from gpudesk.app.exporter import BackgroundExporter
from gpudesk.app.messages import (
    ContainerChange,
    ContainerStats,
    ContainersUpdate,
    EngineStatus,
    GpuStreamState,
    GpuUpdate,
    HostStatus,
    JupyterReady,
    LoopFailed,
)
from gpudesk.app.palette import GpudeskCommands
from gpudesk.app.plain import visible
from gpudesk.app.screens.fleet import FleetScreen
from gpudesk.app.state import (
    FleetFactory,
    FleetState,
    HostModel,
    default_fleet,
    gpu_summary_text,
)
from gpudesk.core.config import ConfigError, Host
from gpudesk.core.engine import EngineInfo
from gpudesk.core.errors import GpudeskError
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import StreamState
from gpudesk.core.ssh import ConnStatus

if TYPE_CHECKING:
    from gpudesk.core.containers import ContainerInfo
    from gpudesk.core.containers.stats import Usage
    from gpudesk.core.containers.watch import WatchChange

__all__ = ["GpudeskApp", "HostModel", "gpu_summary_text", "run_app"]


class GpudeskApp(App[int]):
    TITLE = "gpudesk"
    SUB_TITLE = f"v{__version__}"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {GpudeskCommands}
    # Screens get -narrow / -short below these sizes; app.tcss compacts the footer and the
    # host screen for them (80x24 must show every screen's essentials).
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (40, "-tall")]
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        # Listed by ? (and ctrl+p is Textual's own); the footer keeps its room for the screen.
        Binding("colon", "command_palette", "Commands", key_display=":", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, fleet_factory: FleetFactory = default_fleet, connect: bool = True) -> None:
        super().__init__()
        self.state = FleetState(self, fleet_factory, connect=connect)
        self.exporter = BackgroundExporter(self.state)
        self._show_sub_title()

    def _show_sub_title(self) -> None:
        parts = [f"v{__version__}"]
        if self.state.simulate:
            parts.append("SIMULATED GPUs")
        if self.exporter_address is not None:
            parts.append(f"exporter on {self.exporter_address}")
        self.sub_title = " · ".join(parts)

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notification as plain text: they carry container names, run names and error
        text from hosts, and ``[/]`` in one of those must never be read as markup (or crash)."""
        super().notify(
            visible(message, lines=True),
            title=visible(title),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # gpudesk's own palette entries open its help and quit cleanly; Textual's "Keys" and
        # "Quit" would list the same two actions a second time.
        for command in super().get_system_commands(screen):
            if command.title not in ("Keys", "Quit"):
                yield command

    # Read-only views of the state, for tests and the command palette.
    @property
    def models(self) -> dict[str, HostModel]:
        return self.state.models

    @property
    def gpu_interval(self) -> float:
        return self.state.gpu_interval

    def on_mount(self) -> None:
        # The Fleet is drawn from hosts.toml first; connecting (which imports paramiko and,
        # for localhost, docker) starts only once that frame is on screen.
        self.push_screen(FleetScreen())
        self.call_after_refresh(self.state.start)

    # ------------------------------------------------------------------ the state's sink
    # Called on the state's threads; post_message is thread-safe.

    def host_status(self, status: ConnStatus) -> None:
        self.post_message(HostStatus(status))

    def engine_status(self, host: str, info: EngineInfo | None, error: str | None) -> None:
        self.post_message(EngineStatus(host, info, error))

    def gpu_sample(self, host: str, sample: GpuSample) -> None:
        self.post_message(GpuUpdate(host, sample))

    def gpu_stream_state(self, host: str, state: StreamState, detail: str) -> None:
        self.post_message(GpuStreamState(host, state, detail))

    def containers(self, host: str, infos: list[ContainerInfo] | None, error: str | None) -> None:
        self.post_message(ContainersUpdate(host, infos, error))

    def container_change(self, host: str, change: WatchChange) -> None:
        self.post_message(ContainerChange(host, change))

    def loop_failed(self, name: str, error: Exception) -> None:
        self.post_message(LoopFailed(name, str(error)))

    def container_stats(self, host: str, usage: dict[str, Usage]) -> None:
        self.post_message(ContainerStats(host, usage))

    # ------------------------------------------------------------------ messages

    def host_changed(self, name: str) -> None:
        """Tell every screen on the stack that what it may show about ``name`` changed."""
        for screen in self.screen_stack:
            if isinstance(screen, HostView):
                screen.host_changed(name)

    def on_host_status(self, message: HostStatus) -> None:
        name = message.status.host
        if name not in self.state.models:
            return
        if self.state.apply_status(message.status):
            self.probe_engine(name)
            self.state.start_gpu_stream(name)
            self.state.start_container_watch(name)
        self.host_changed(name)

    @work(thread=True, group="engine", exit_on_error=False)
    def probe_engine(self, name: str) -> None:
        self.state.probe_engine(name)

    def on_engine_status(self, message: EngineStatus) -> None:
        if self.state.apply_engine(message.host, message.info, message.error):
            self.host_changed(message.host)

    def on_gpu_update(self, message: GpuUpdate) -> None:
        if self.state.apply_gpu(message.host, message.sample):
            self.host_changed(message.host)

    def on_gpu_stream_state(self, message: GpuStreamState) -> None:
        if self.state.apply_stream_state(message.host, message.state, message.detail):
            self.host_changed(message.host)

    def on_containers_update(self, message: ContainersUpdate) -> None:
        if self.state.apply_containers(message.host, message.infos, message.error):
            self.host_changed(message.host)

    def on_container_change(self, message: ContainerChange) -> None:
        if self.state.apply_container_change(message.host, message.change):
            self.host_changed(message.host)

    def on_container_stats(self, message: ContainerStats) -> None:
        if self.state.apply_container_stats(message.host, message.usage):
            self.host_changed(message.host)

    def refresh_containers(self, name: str) -> None:
        """Relist now (after an action), without waiting for the engine's event."""
        self.run_worker(
            partial(self.state.list_containers, name),
            group="containers",
            thread=True,
            exit_on_error=False,
        )

    def open_jupyter(self, host: str, name: str, browser: bool = True) -> None:
        self._open_jupyter(host, name, browser)

    @work(thread=True, group="jupyter", exit_on_error=False)
    def _open_jupyter(self, host: str, name: str, browser: bool) -> None:
        try:
            url = self.state.jupyter_url(host, name)
        except Exception as exc:
            self.post_message(JupyterReady(host, name, None, str(exc), browser))
        else:
            self.post_message(JupyterReady(host, name, url, None, browser))

    def on_jupyter_ready(self, message: JupyterReady) -> None:
        if message.error or not message.url:
            self.notify(message.error or "No Jupyter URL.", severity="error", timeout=10)
            return
        self.state.jupyter_urls[(message.host, message.name)] = message.url
        self.copy_to_clipboard(message.url)
        self.notify(f"{message.url}\n(copied to the clipboard)", title=message.name, timeout=15)
        if message.browser:
            self.run_worker(partial(webbrowser.open, message.url), thread=True, exit_on_error=False)
        self.host_changed(message.host)

    def on_loop_failed(self, message: LoopFailed) -> None:
        self.notify(f"{message.loop} stopped: {message.error}", severity="error", timeout=10)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(
                f"{event.worker.name}: {error}", title="Error", severity="error", timeout=10
            )

    # ------------------------------------------------------------------ what screens ask for

    def set_gpu_interval(self, seconds: float) -> None:
        self.notify(f"GPU stats every {seconds:g} s")
        self.state.set_gpu_interval(seconds)

    @property
    def exporter_address(self) -> str | None:
        address = self.exporter.address
        return None if address is None else str(address)

    def toggle_exporter(self) -> None:
        """Serve the fleet's metrics to Prometheus from this app's streams, or stop."""
        try:
            address = self.exporter.toggle()
        except GpudeskError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        if address is None:
            self.notify("Prometheus exporter stopped")
        else:
            self.notify(f"Prometheus exporter on {address.url}")
        self._show_sub_title()

    def add_host(self, host: Host) -> None:
        try:
            self.state.add_host(host)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.host_changed(host.name)

    def remove_host(self, name: str) -> None:
        try:
            self.state.remove_host(name)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.host_changed(name)
        self.notify(f"Removed {name}; its containers and files on the host are untouched.")

    def open_host(self, name: str) -> None:
        # The other screens are imported when first opened, off the first frame's path.
        from gpudesk.app.screens.host import HostScreen

        if name in self.state.models:
            self.push_screen(HostScreen(name))

    def open_runs(self) -> None:
        from gpudesk.app.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

    # ------------------------------------------------------------------ actions

    def action_help(self) -> None:
        from gpudesk.app.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    async def action_quit(self) -> None:
        self.shutdown()
        self.exit(0)

    def shutdown(self) -> None:
        self.exporter.stop()
        self.state.shutdown()
        self.exit(0)


def _is_a_desk(app: GpudeskApp) -> Desk:
    # Never called: mypy checks here that GpudeskApp offers everything screens rely on.
    return app


def run_app() -> int:
    try:
        app = GpudeskApp()
    except GpudeskError as exc:
        print(f"gpudesk: {exc}", file=sys.stderr)
        return 1
    result = app.run()
    app.shutdown()
    return result or 0
