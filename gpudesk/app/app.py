"""The gpudesk Textual app: owns the fleet, runs every host's IO in workers, routes messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from gpudesk import __version__
from gpudesk.app.commands import GpudeskCommands
from gpudesk.app.messages import EngineStatus, HostStatus
from gpudesk.app.screens.fleet import FleetScreen
from gpudesk.app.screens.help import HelpScreen
from gpudesk.remote.config import ConfigError, Host, Inventory
from gpudesk.remote.engine import EngineError, EngineInfo
from gpudesk.remote.fleet import Fleet, HostService
from gpudesk.remote.ssh import ConnState, ConnStatus


@dataclass
class HostModel:
    """Everything the UI shows about one host; changed only by message handlers."""

    host: Host
    status: ConnStatus
    engine: EngineInfo | None = None
    engine_error: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


FleetFactory = Callable[[Callable[[ConnStatus], None]], Fleet]


def default_fleet(on_status: Callable[[ConnStatus], None]) -> Fleet:
    return Fleet.build(Inventory.load(), on_status=on_status)


class GpudeskApp(App[int]):
    TITLE = "gpudesk"
    SUB_TITLE = f"v{__version__}"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {GpudeskCommands}
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("colon", "command_palette", "Commands", key_display=":"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, fleet_factory: FleetFactory = default_fleet, connect: bool = True) -> None:
        super().__init__()
        self.fleet = fleet_factory(self._status_from_thread)
        self.connect_hosts = connect
        self.models: dict[str, HostModel] = {
            name: HostModel(svc.host, svc.conn.status) for name, svc in self.fleet.services.items()
        }

    def _status_from_thread(self, status: ConnStatus) -> None:
        # Called on connection threads; post_message is thread-safe.
        self.post_message(HostStatus(status))

    def on_mount(self) -> None:
        self.push_screen(FleetScreen())
        if self.connect_hosts:
            for service in self.fleet.services.values():
                self.start_host(service)

    def start_host(self, service: HostService) -> None:
        self.run_worker(
            service.conn.run,
            name=f"conn:{service.host.name}",
            group="connections",
            thread=True,
            exit_on_error=False,
        )

    # ------------------------------------------------------------------ messages

    def on_host_status(self, message: HostStatus) -> None:
        model = self.models.get(message.status.host)
        if model is None:
            return
        was = model.status.state
        model.status = message.status
        if message.status.state is ConnState.CONNECTED and was is not ConnState.CONNECTED:
            self.probe_engine(message.status.host)
        elif message.status.state is not ConnState.CONNECTED:
            model.engine = None
            model.engine_error = None
        self.refresh_host(message.status.host)

    @work(thread=True, group="engine", exit_on_error=False)
    def probe_engine(self, name: str) -> None:
        service = self.fleet.services.get(name)
        if service is None:
            return
        try:
            info = service.engine()
        except EngineError as exc:
            self.post_message(EngineStatus(name, None, str(exc)))
        else:
            self.post_message(EngineStatus(name, info, None))

    def on_engine_status(self, message: EngineStatus) -> None:
        model = self.models.get(message.host)
        if model is None:
            return
        model.engine, model.engine_error = message.info, message.error
        self.refresh_host(message.host)

    def refresh_host(self, name: str) -> None:
        for screen in self.screen_stack:
            refresher = getattr(screen, "refresh_host", None)
            if refresher is not None:
                refresher(name)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state is WorkerState.ERROR and event.worker.error is not None:
            error = event.worker.error
            self.notify(
                f"{event.worker.name}: {error}", title="Error", severity="error", timeout=10
            )

    # ------------------------------------------------------------------ hosts

    def add_host(self, host: Host) -> None:
        try:
            service = self.fleet.add(host, on_status=self._status_from_thread)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.models[host.name] = HostModel(host, service.conn.status)
        self.refresh_host(host.name)
        if self.connect_hosts:
            self.start_host(service)

    def remove_host(self, name: str) -> None:
        try:
            self.fleet.remove(name)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.models.pop(name, None)
        self.refresh_host(name)
        self.notify(f"Removed {name}; its containers and files on the host are untouched.")

    def open_host(self, name: str) -> None:
        from gpudesk.app.screens.host import HostScreen

        if name in self.models:
            self.push_screen(HostScreen(name))

    def retry_host(self, name: str) -> None:
        service = self.fleet.services.get(name)
        if service is not None:
            service.conn.retry()

    def accept_host_key(self, name: str) -> None:
        service = self.fleet.services.get(name)
        accept = getattr(service.conn, "accept_pending_key", None) if service else None
        if accept is not None:
            accept()

    # ------------------------------------------------------------------ actions

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    async def action_quit(self) -> None:
        self.fleet.close()
        self.exit(0)


def run_app() -> int:
    try:
        app = GpudeskApp()
    except ConfigError as exc:
        import sys

        print(f"gpudesk: {exc}", file=sys.stderr)
        return 1
    result = app.run()
    app.fleet.close()
    return result or 0
