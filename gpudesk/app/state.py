"""The TUI's state, without Textual: what it knows about each host and the loops that feed it.

:class:`FleetState` owns the fleet (connections), one :class:`HostModel` per host, the GPU
streams, the container watchers, the Jupyter tunnels and URLs. Its loops run on threads and
report through a :class:`Sink`; :class:`~gpudesk.app.app.GpudeskApp` is that sink and turns each
report into a Textual message, whose handler calls one of the ``apply_*`` methods here on the
UI thread and tells the screens which host changed. Nothing here imports Textual, so the
state and its transitions are tested on their own (tests/unit/test_app_state.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol

from gpudesk.core.config import Host, Inventory, Paths
from gpudesk.core.containers.stats import STREAMS_LOCAL, STREAMS_SSH, StatsWatch, Usage
from gpudesk.core.engine import EngineError, EngineInfo
from gpudesk.core.fleet import Fleet, HostService, simulated_gpus
from gpudesk.core.gpu.idle import IdleTracker, idle_tracker
from gpudesk.core.gpu.sample import GpuSample, GpuSummary, summarize
from gpudesk.core.gpu.stream import GpuHistory, GpuStream, StreamState
from gpudesk.core.local import LocalConnection
from gpudesk.core.ssh import ConnState, ConnStatus

if TYPE_CHECKING:
    # Containers, runs and forwards are imported when first used, off the first frame's path.
    from gpudesk.core import runs as core_runs
    from gpudesk.core.containers import ContainerInfo
    from gpudesk.core.containers import watch as core_watch
    from gpudesk.core.containers.watch import ContainersStale, ContainerWatch, WatchChange
    from gpudesk.core.devcontainers import DevContainers
    from gpudesk.core.forwards import Forward
else:
    from gpudesk.core.lazy import lazy_module

    core_runs = lazy_module("gpudesk.core.runs")
    core_watch = lazy_module("gpudesk.core.containers.watch")


@dataclass
class HostModel:
    """Everything the UI shows about one host; changed only by FleetState.apply_*."""

    host: Host
    status: ConnStatus
    engine: EngineInfo | None = None
    engine_error: str | None = None
    gpu: GpuSample | None = None
    gpu_history: GpuHistory = field(default_factory=GpuHistory)
    gpu_idle: IdleTracker = field(default_factory=idle_tracker)  # fed the same samples
    gpu_summary: GpuSummary | None = None
    gpu_note: str = ""
    containers: list[ContainerInfo] | None = None
    containers_error: str | None = None
    # Set while the container event stream is down: the list is as it was at .since.
    containers_stale: ContainersStale | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # Live CPU/memory of the containers an open host screen shows, by container name.
    container_usage: dict[str, Usage] = field(default_factory=dict)


class Sink(Protocol):
    """Where the state's loops report, from any thread (the app posts a message for each)."""

    def host_status(self, status: ConnStatus) -> None: ...

    def engine_status(self, host: str, info: EngineInfo | None, error: str | None) -> None: ...

    def gpu_sample(self, host: str, sample: GpuSample) -> None: ...

    def gpu_stream_state(self, host: str, state: StreamState, detail: str) -> None: ...

    def containers(
        self, host: str, infos: list[ContainerInfo] | None, error: str | None
    ) -> None: ...

    def container_change(self, host: str, change: WatchChange) -> None: ...

    def loop_failed(self, name: str, error: Exception) -> None: ...

    def container_stats(self, host: str, usage: dict[str, Usage]) -> None: ...


FleetFactory = Callable[[Callable[[ConnStatus], None]], Fleet]


def default_fleet(on_status: Callable[[ConnStatus], None]) -> Fleet:
    return Fleet.build(Inventory.load(), on_status=on_status)


class FleetState:
    """The hosts, their models and the loops that keep them current."""

    def __init__(self, sink: Sink, fleet_factory: FleetFactory, *, connect: bool = True) -> None:
        self.sink = sink
        self.fleet = fleet_factory(sink.host_status)
        self.connect_hosts = connect
        self.simulate = simulated_gpus()
        self.gpu_interval = 1.0
        self.streams: dict[str, GpuStream] = {}
        self.watchers: dict[str, ContainerWatch] = {}
        self.stats_watches: dict[str, StatsWatch] = {}
        self.tunnels: dict[tuple[str, str], Forward] = {}
        # Forwards the user asked for with `f`: (host, container, container port).
        self.forwards: dict[tuple[str, str, int], Forward] = {}
        self.jupyter_urls: dict[tuple[str, str], str] = {}
        self.models: dict[str, HostModel] = {
            name: HostModel(svc.host, ConnStatus(name, ConnState.CONNECTING))
            for name, svc in self.fleet.services.items()
        }

    @property
    def paths(self) -> Paths:
        return self.fleet.inventory.paths

    @property
    def inventory(self) -> Inventory:
        return self.fleet.inventory

    def service(self, name: str) -> HostService:
        return self.fleet.get(name)

    def devcontainers(self, name: str) -> DevContainers:
        from gpudesk.core.devcontainers import DevContainers

        return DevContainers(self.fleet.get(name), self.fleet.inventory)

    def connected(self, name: str) -> bool:
        model = self.models.get(name)
        return model is not None and model.status.state is ConnState.CONNECTED

    # ------------------------------------------------------------------ loops

    def start(self) -> None:
        """Connect every host (each connection is a loop of its own)."""
        if self.connect_hosts:
            for service in self.fleet.services.values():
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
                self.sink.loop_failed(name, exc)

        threading.Thread(target=guarded, name=f"gpudesk-{name}", daemon=True).start()

    def probe_engine(self, name: str) -> None:
        """Ask the host's Docker engine who it is (blocking; run it in a worker)."""
        service = self.fleet.services.get(name)
        if service is None:
            return
        try:
            info = service.engine()
        except EngineError as exc:
            self.sink.engine_status(name, None, str(exc))
        else:
            self.sink.engine_status(name, info, None)

    def start_gpu_stream(self, name: str) -> None:
        stream = self.streams.get(name)
        if stream is not None and not stream.stopped:
            return
        service = self.fleet.services.get(name)
        if service is None:
            return
        stream = service.gpu_stream(
            partial(self.sink.gpu_sample, name),
            partial(self.sink.gpu_stream_state, name),
            interval=self.gpu_interval,
            simulate=self.simulate,
        )
        self.streams[name] = stream
        self.spawn(stream.run, f"gpu:{name}")

    def stop_gpu_stream(self, name: str) -> None:
        if (stream := self.streams.pop(name, None)) is not None:
            stream.stop()

    def set_gpu_interval(self, seconds: float) -> None:
        """Restart every agent at the new interval (the agent reads it at start)."""
        self.gpu_interval = seconds
        for name in list(self.streams):
            self.stop_gpu_stream(name)
            if self.connected(name):
                self.start_gpu_stream(name)

    def start_container_watch(self, name: str) -> None:
        """Keep ``name``'s container list live from its engine's events (see core watch).

        Called again when the host reconnects: a watch waiting out its backoff tries now.
        """
        running = self.watchers.get(name)
        if running is not None and not running.stopped:
            running.wake()
            return
        watch = core_watch.ContainerWatch(
            partial(self.devcontainers, name), partial(self.sink.container_change, name)
        )
        self.watchers[name] = watch
        self.spawn(watch.run, f"containers:{name}")

    def list_containers(self, name: str) -> None:
        """Relist now (after an action), without waiting for the event (blocking)."""
        try:
            infos = self.devcontainers(name).list(True)
        except Exception as exc:
            self.sink.containers(name, None, str(exc))
            return
        self.sink.containers(name, infos, None)
        watch = self.watchers.get(name)
        if watch is not None and watch.stale:
            watch.wake()  # the engine answers again: resubscribe now, not after the backoff

    def watch_container_stats(self, name: str, containers: list[str]) -> None:
        """Stream the usage of ``containers`` (running ones an open screen shows) on host ``name``.

        One :class:`StatsWatch` per host, capped in streams (and so in SSH channels) by the
        kind of connection; an empty list stops it.
        """
        if not containers:
            self.stop_container_stats(name)
            return
        watch = self.stats_watches.get(name)
        service = self.fleet.services.get(name)
        if service is None or not self.connected(name) or not self.connect_hosts:
            return
        if watch is None or watch.stopped:
            local = isinstance(service.conn, LocalConnection)

            def report(usage: dict[str, Usage]) -> None:
                # A stopped watch's last tick must not bring back the values it cleared.
                current = self.stats_watches.get(name)
                if current is not None and current is fresh and not current.stopped:
                    self.sink.container_stats(name, usage)

            fresh = StatsWatch(
                service.docker,
                report,
                max_streams=STREAMS_LOCAL if local else STREAMS_SSH,
                spawn=self.spawn,
            )
            self.stats_watches[name] = watch = fresh
            self.spawn(watch.run, f"stats:{name}")
        watch.watch(containers)

    def stop_container_stats(self, name: str) -> None:
        watch = self.stats_watches.pop(name, None)
        if watch is not None:
            watch.stop()
        model = self.models.get(name)
        if model is not None:
            model.container_usage = {}

    def jupyter_url(self, host: str, name: str) -> str | None:
        """The URL through a port forward kept for the session, one per container (blocking)."""
        key = (host, name)
        url, tunnel = self.jupyter_urls.get(key), self.tunnels.get(key)
        # A kept URL is good only while its forward still leads to that very container (a
        # restart moves the port, which the forward follows; a recreated one is refused).
        if url is not None and tunnel is not None and tunnel.follows():
            return url
        if tunnel is not None:
            self.tunnels.pop(key).close()
        reach, tunnel = self.devcontainers(host).open_jupyter(name)
        if tunnel is not None:
            self.tunnels[key] = tunnel
        return reach.url

    def forwards_of(self, host: str, name: str) -> dict[int, Forward]:
        return {k[2]: f for k, f in self.forwards.items() if k[:2] == (host, name)}

    def open_forward(self, host: str, name: str, port: int, local_port: int | None) -> Forward:
        """Forward a container port here for the session, following restarts (blocking)."""
        key = (host, name, port)
        if key in self.forwards:
            self.forwards.pop(key).close()
        forward = self.devcontainers(host).forward(name, port, local_port)
        self.forwards[key] = forward
        return forward

    def close_forward(self, host: str, name: str, port: int) -> Forward | None:
        forward = self.forwards.pop((host, name, port), None)
        if forward is not None:
            forward.close()
        return forward

    # ------------------------------------------------------------------ transitions

    def apply_status(self, status: ConnStatus) -> bool:
        """Record a connection status; True when the host just connected (start its loops)."""
        model = self.models.get(status.host)
        if model is None:
            return False
        was = model.status.state
        model.status = status
        if status.state is not ConnState.CONNECTED:
            model.engine = None
            model.engine_error = None
            self.stop_container_stats(status.host)  # an open host screen restarts it
            return False
        return self.connect_hosts and was is not ConnState.CONNECTED

    def apply_engine(self, host: str, info: EngineInfo | None, error: str | None) -> bool:
        model = self.models.get(host)
        if model is None:
            return False
        model.engine, model.engine_error = info, error
        return True

    def apply_gpu(self, host: str, sample: GpuSample) -> bool:
        model = self.models.get(host)
        if model is None:
            return False
        model.gpu = sample
        model.gpu_history.add(sample)
        model.gpu_idle.add(sample)
        model.gpu_note = ""
        model.gpu_summary = summarize(sample) if sample.gpus else None
        model.extra["gpus"] = gpu_summary_text(sample, model.gpu_summary)
        return True

    def apply_stream_state(self, host: str, state: StreamState, detail: str) -> bool:
        """Mark gaps in the history; True when the screens show something new (a restart)."""
        model = self.models.get(host)
        if model is None:
            return False
        if state in (StreamState.STARTING, StreamState.RESTARTING):
            model.gpu_history.mark_gap()
            model.gpu_idle.mark_gap()
        if state is StreamState.RESTARTING:
            model.gpu_note = f"GPU agent restarting: {detail}"
            return True
        return False

    def apply_containers(
        self, host: str, infos: list[ContainerInfo] | None, error: str | None
    ) -> bool:
        model = self.models.get(host)
        if model is None:
            return False
        if infos is not None:
            model.containers = infos
            model.containers_error = None
        else:
            model.containers_error = error
        _summarize_containers(model)
        return True

    def apply_container_change(self, host: str, change: WatchChange) -> bool:
        """Apply what the container watch saw; True when the model changed."""
        model = self.models.get(host)
        if model is None:
            return False
        if isinstance(change, core_watch.ContainersListed):
            model.containers, model.containers_error = change.infos, None
            model.containers_stale = None
        elif isinstance(change, core_watch.ContainersChanged):
            if model.containers is None:
                return False  # a change before the first listing: that listing has it
            model.containers = core_watch.apply_change(model.containers, change)
        else:
            model.containers_stale = change
            if model.containers is None:  # never listed: an error, as before any watch
                model.containers_error = change.reason
        _summarize_containers(model)
        return True

    def apply_container_stats(self, host: str, usage: dict[str, Usage]) -> bool:
        if (model := self.models.get(host)) is not None:
            model.container_usage = usage
        return model is not None

    # ------------------------------------------------------------------ hosts

    def add_host(self, host: Host) -> None:
        """Add ``host`` to the inventory and start connecting; ConfigError if it cannot be."""
        service = self.fleet.add(host, on_status=self.sink.host_status)
        self.models[host.name] = HostModel(host, ConnStatus(host.name, ConnState.CONNECTING))
        if self.connect_hosts:
            self.spawn(service.conn.run, f"conn:{host.name}")

    def remove_host(self, name: str) -> None:
        """Drop ``name`` from the inventory and stop its loops; ConfigError if it cannot be."""
        self.fleet.remove(name)
        self.stop_gpu_stream(name)
        self.stop_container_stats(name)
        watcher = self.watchers.pop(name, None)
        if watcher is not None:
            watcher.stop()
        self.models.pop(name, None)

    def retry_host(self, name: str) -> None:
        if (service := self.fleet.services.get(name)) is not None:
            service.conn.retry()

    def accept_host_key(self, name: str) -> None:
        service = self.fleet.services.get(name)
        accept = getattr(service.conn, "accept_pending_key", None) if service else None
        if accept is not None:
            accept()

    def shutdown(self) -> None:
        for name in list(self.streams):
            self.stop_gpu_stream(name)
        for watch in self.watchers.values():
            watch.stop()
        for name in list(self.stats_watches):
            self.stop_container_stats(name)
        for tunnel in [*self.tunnels.values(), *self.forwards.values()]:
            tunnel.close()
        self.fleet.close()


def _summarize_containers(model: HostModel) -> None:
    """The Fleet's CONTAINERS cell: running/total of gpudesk's, and whether that is stale."""
    if model.containers is None:
        model.extra["containers"] = "error"
        return
    if model.containers_error is not None and model.containers_stale is None:
        model.extra["containers"] = "error"
        return
    ours = [i for i in model.containers if i.is_gpudesk]
    running = sum(i.state == "running" for i in ours)
    suffix = " stale" if model.containers_stale else " up"
    model.extra["containers"] = f"{running}/{len(ours)}{suffix}"


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
