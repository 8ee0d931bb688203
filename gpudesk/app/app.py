"""The gpudesk Textual app: owns the fleet, runs every host's IO in workers, routes messages."""

from __future__ import annotations

import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from gpudesk import __version__
from gpudesk.app.messages import (
    ContainersUpdate,
    EngineStatus,
    GpuStreamState,
    GpuUpdate,
    HostStatus,
    JupyterReady,
)
from gpudesk.app.palette import GpudeskCommands
from gpudesk.app.screens.fleet import FleetScreen
from gpudesk.app.screens.help import HelpScreen
from gpudesk.core.config import ConfigError, Host, Inventory
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.devcontainers import DevContainers
from gpudesk.core.engine import EngineError, EngineInfo
from gpudesk.core.fleet import Fleet, HostService, simulated_gpus
from gpudesk.core.forwards import Forward
from gpudesk.core.gpu.sample import GpuSample, GpuSummary, summarize
from gpudesk.core.gpu.stream import GpuHistory, GpuStream, StreamState
from gpudesk.core.ssh import ConnState, ConnStatus


@dataclass
class HostModel:
    """Everything the UI shows about one host; changed only by message handlers."""

    host: Host
    status: ConnStatus
    engine: EngineInfo | None = None
    engine_error: str | None = None
    gpu: GpuSample | None = None
    gpu_history: GpuHistory = field(default_factory=GpuHistory)
    gpu_summary: GpuSummary | None = None
    gpu_note: str = ""
    containers: list[ContainerInfo] | None = None
    containers_error: str | None = None
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
        self.simulate = simulated_gpus()
        self.gpu_interval = 1.0
        self.streams: dict[str, GpuStream] = {}
        self.watchers: dict[str, threading.Event] = {}
        self.tunnels: dict[tuple[str, str], Forward] = {}
        # Forwards the user asked for with `f`: (host, container, container port).
        self.forwards: dict[tuple[str, str, int], Forward] = {}
        self.jupyter_urls: dict[tuple[str, str], str] = {}
        if self.simulate:
            self.sub_title = f"v{__version__} · SIMULATED GPUs"
        self.models: dict[str, HostModel] = {
            name: HostModel(svc.host, ConnStatus(name, ConnState.CONNECTING))
            for name, svc in self.fleet.services.items()
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
        self.spawn(service.conn.run, f"conn:{service.host.name}")

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """A loop that lives as long as its host: a thread of its own, not a pooled worker.

        Textual's thread workers share asyncio's default executor (a handful of threads);
        per-host loops held there forever would starve short workers and later hosts.
        """

        def guarded() -> None:
            try:
                target()
            except Exception as exc:
                self.call_from_thread(
                    self.notify, f"{name} stopped: {exc}", severity="error", timeout=10
                )

        threading.Thread(target=guarded, name=f"gpudesk-{name}", daemon=True).start()

    # ------------------------------------------------------------------ messages

    def on_host_status(self, message: HostStatus) -> None:
        model = self.models.get(message.status.host)
        if model is None:
            return
        was = model.status.state
        model.status = message.status
        if (
            self.connect_hosts
            and message.status.state is ConnState.CONNECTED
            and was is not ConnState.CONNECTED
        ):
            self.probe_engine(message.status.host)
            self.start_gpu_stream(message.status.host)
            self.start_container_watch(message.status.host)
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

    def start_gpu_stream(self, name: str) -> None:
        stream = self.streams.get(name)
        if stream is not None and not stream.stopped:
            return
        service = self.fleet.services.get(name)
        if service is None:
            return
        stream = service.gpu_stream(
            lambda sample: self.post_message(GpuUpdate(name, sample)),
            lambda state, detail: self.post_message(GpuStreamState(name, state, detail)),
            interval=self.gpu_interval,
            simulate=self.simulate,
        )
        self.streams[name] = stream
        self.spawn(stream.run, f"gpu:{name}")

    def devcontainers(self, name: str) -> DevContainers:
        return DevContainers(self.fleet.get(name), self.fleet.inventory)

    def start_container_watch(self, name: str) -> None:
        running = self.watchers.get(name)
        if running is not None and not running.is_set():
            return
        stop = threading.Event()
        self.watchers[name] = stop
        self.spawn(partial(self._watch_containers, name, stop), f"containers:{name}")

    def _watch_containers(self, name: str, stop: threading.Event) -> None:
        """List once, then again on every engine event: live without polling."""
        dev = self.devcontainers(name)
        while not stop.is_set():
            try:
                # Open the event stream first so nothing between list and watch is missed.
                events = dev.engine().events(stop)
                self.post_message(ContainersUpdate(name, dev.list(True), None))
                for _event in events:
                    self.post_message(ContainersUpdate(name, dev.list(True), None))
            except Exception as exc:
                self.post_message(ContainersUpdate(name, None, str(exc)))
            # A broken stream (engine restart, SSH drop) is reopened after a pause.
            stop.wait(5)

    def refresh_containers(self, name: str) -> None:
        """Relist now (after an action), without waiting for the event."""
        self.run_worker(
            partial(self._list_containers, name),
            group="containers",
            thread=True,
            exit_on_error=False,
        )

    def _list_containers(self, name: str) -> None:
        try:
            self.post_message(ContainersUpdate(name, self.devcontainers(name).list(True), None))
        except Exception as exc:
            self.post_message(ContainersUpdate(name, None, str(exc)))

    def on_containers_update(self, message: ContainersUpdate) -> None:
        model = self.models.get(message.host)
        if model is None:
            return
        if message.infos is not None:
            model.containers = message.infos
            model.containers_error = None
            ours = [i for i in message.infos if i.is_gpudesk]
            running = sum(i.state == "running" for i in ours)
            model.extra["containers"] = f"{running}/{len(ours)} up"
        else:
            model.containers_error = message.error
            model.extra["containers"] = "error"
        self.refresh_host(message.host)

    @work(thread=True, group="jupyter", exit_on_error=False)
    def open_jupyter(self, host: str, name: str, browser: bool = True) -> None:
        """The URL through a port forward kept for the session (one per container)."""
        key = (host, name)
        try:
            url = self.jupyter_urls.get(key)
            if url is None:
                reach, tunnel = self.devcontainers(host).open_jupyter(name)
                url = reach.url
                if tunnel is not None:
                    self.tunnels[key] = tunnel
            self.post_message(JupyterReady(host, name, url, None, browser))
        except Exception as exc:
            self.post_message(JupyterReady(host, name, None, str(exc), browser))

    def forwards_of(self, host: str, name: str) -> dict[int, Forward]:
        return {k[2]: f for k, f in self.forwards.items() if k[:2] == (host, name)}

    @work(thread=True, group="forward", exit_on_error=False)
    def start_forward(self, host: str, name: str, port: int, local_port: int | None) -> None:
        """Forward a container port here for the session, following container restarts."""
        key = (host, name, port)
        try:
            if key in self.forwards:
                self.forwards.pop(key).close()
            forward = self.devcontainers(host).forward(name, port, local_port)
        except Exception as exc:
            self.call_from_thread(self.notify, str(exc), severity="error", timeout=10)
            return
        self.forwards[key] = forward
        self.call_from_thread(self.copy_to_clipboard, forward.url)
        self.call_from_thread(
            self.notify, f"{forward.url} -> {name}:{port}\n(copied to the clipboard)", timeout=10
        )

    def stop_forward(self, host: str, name: str, port: int) -> None:
        forward = self.forwards.pop((host, name, port), None)
        if forward is not None:
            forward.close()
            self.notify(f"stopped forwarding {forward.url} -> {name}:{port}")

    def on_jupyter_ready(self, message: JupyterReady) -> None:
        if message.error or not message.url:
            self.notify(message.error or "No Jupyter URL.", severity="error", timeout=10)
            return
        self.jupyter_urls[(message.host, message.name)] = message.url
        self.copy_to_clipboard(message.url)
        self.notify(f"{message.url}\n(copied to the clipboard)", title=message.name, timeout=15)
        if message.browser:
            self.run_worker(partial(webbrowser.open, message.url), thread=True, exit_on_error=False)
        self.refresh_host(message.host)

    def stop_gpu_stream(self, name: str) -> None:
        stream = self.streams.pop(name, None)
        if stream is not None:
            stream.stop()

    def set_gpu_interval(self, seconds: float) -> None:
        """Restart every agent at the new interval (the agent reads it at start)."""
        self.gpu_interval = seconds
        self.notify(f"GPU stats every {seconds:g} s")
        for name in list(self.streams):
            self.stop_gpu_stream(name)
            model = self.models.get(name)
            if model is not None and model.status.state is ConnState.CONNECTED:
                self.start_gpu_stream(name)

    def on_gpu_update(self, message: GpuUpdate) -> None:
        model = self.models.get(message.host)
        if model is None:
            return
        model.gpu = message.sample
        model.gpu_history.add(message.sample)
        model.gpu_note = ""
        model.gpu_summary = summarize(message.sample) if message.sample.gpus else None
        model.extra["gpus"] = gpu_summary_text(message.sample, model.gpu_summary)
        self.refresh_host(message.host)

    def on_gpu_stream_state(self, message: GpuStreamState) -> None:
        model = self.models.get(message.host)
        if model is None:
            return
        if message.state in (StreamState.STARTING, StreamState.RESTARTING):
            model.gpu_history.mark_gap()
        if message.state is StreamState.RESTARTING:
            model.gpu_note = f"GPU agent restarting: {message.detail}"
            self.refresh_host(message.host)

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
        self.models[host.name] = HostModel(host, ConnStatus(host.name, ConnState.CONNECTING))
        self.refresh_host(host.name)
        if self.connect_hosts:
            self.start_host(service)

    def remove_host(self, name: str) -> None:
        try:
            self.fleet.remove(name)
        except ConfigError as exc:
            self.notify(str(exc), severity="error")
            return
        self.stop_gpu_stream(name)
        watcher = self.watchers.pop(name, None)
        if watcher is not None:
            watcher.set()
        self.models.pop(name, None)
        self.refresh_host(name)
        self.notify(f"Removed {name}; its containers and files on the host are untouched.")

    def open_host(self, name: str) -> None:
        from gpudesk.app.screens.host import HostScreen

        if name in self.models:
            self.push_screen(HostScreen(name))

    def open_runs(self) -> None:
        from gpudesk.app.screens.runs import RunsScreen

        self.push_screen(RunsScreen())

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
        self.shutdown()
        self.exit(0)

    def shutdown(self) -> None:
        for name in list(self.streams):
            self.stop_gpu_stream(name)
        for stop in self.watchers.values():
            stop.set()
        for tunnel in [*self.tunnels.values(), *self.forwards.values()]:
            tunnel.close()
        self.fleet.close()
        self.exit(0)


def gpu_summary_text(sample: GpuSample, s: GpuSummary | None) -> str:
    """The Fleet table's GPU cell: free/total, memory used, hottest, or why there are none."""
    prefix = "SIM " if sample.simulated else ""
    if s is None:
        return prefix + (sample.driver_state.value.replace("_", " ") if sample.message else "none")
    parts = [f"{s.free}/{s.count} free"]
    if s.mem_total:
        parts.append(f"{s.mem_used / 2**30:.0f}/{s.mem_total / 2**30:.0f}G")
    if s.hottest is not None:
        parts.append(f"{s.hottest:.0f}°C")
    return prefix + " ".join(parts)


def run_app() -> int:
    try:
        app = GpudeskApp()
    except ConfigError as exc:
        import sys

        print(f"gpudesk: {exc}", file=sys.stderr)
        return 1
    result = app.run()
    app.shutdown()
    return result or 0
