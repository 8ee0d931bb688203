"""The loops that keep a :class:`MetricsBoard` current for ``gpudesk exporter``.

The same per-host loops the TUI runs: each host's connection (reconnecting with backoff), and
once it is up its GPU agent stream, its container watch (Docker events) and, every
``runs_every`` seconds while GPU processes run in containers, a listing of its runs (to put a
``run`` label on their GPU memory). Scrapes only read the board.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from gpudesk.core.config import Inventory
from gpudesk.core.connection import ConnState, ConnStatus
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.stream import GpuStream, StreamState
from gpudesk.core.metrics.board import MetricsBoard

if TYPE_CHECKING:
    from gpudesk.core.containers import ContainerInfo
    from gpudesk.core.containers.watch import ContainerWatch, WatchChange

RUNS_EVERY_S = 30.0


class FleetFeeds:
    def __init__(
        self,
        inventory: Inventory,
        board: MetricsBoard,
        *,
        interval: float = 1.0,
        simulate: int | None = None,
        runs_every: float = RUNS_EVERY_S,
    ) -> None:
        self.board = board
        self.interval = interval
        self.simulate = simulate
        self.runs_every = runs_every
        self.fleet = Fleet.build(inventory, on_status=self._on_status)
        for name in self.fleet.services:
            board.add_host(name)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._streams: dict[str, GpuStream] = {}
        self._watches: dict[str, ContainerWatch] = {}

    @property
    def hosts(self) -> list[str]:
        return sorted(self.fleet.services)

    def start(self) -> None:
        for name, service in self.fleet.services.items():
            self._spawn(service.conn.run, f"conn:{name}")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=f"gpudesk-exporter-{name}", daemon=True).start()

    def _on_status(self, status: ConnStatus) -> None:
        if self._stop.is_set():
            return  # closing: close() marks every host closed
        self.board.set_status(status)
        if status.state is ConnState.CONNECTED:
            self._host_up(status.host)

    def _host_up(self, name: str) -> None:
        from gpudesk.core.containers import watch as core_watch
        from gpudesk.core.devcontainers import DevContainers

        with self._lock:
            known = self._watches.get(name)
            if known is not None:
                known.wake()  # relist now: events sent while the host was away are lost
                return
            service = self.fleet.services[name]
            stream = service.gpu_stream(
                partial(self.board.set_sample, name),
                partial(self._stream_state, name),
                interval=self.interval,
                simulate=self.simulate,
            )
            watch = core_watch.ContainerWatch(
                partial(DevContainers, service, self.fleet.inventory),
                partial(self._container_change, name),
            )
            self._streams[name], self._watches[name] = stream, watch
        self._spawn(stream.run, f"gpu:{name}")
        self._spawn(watch.run, f"containers:{name}")
        self._spawn(partial(self._runs_loop, name), f"runs:{name}")

    def _stream_state(self, name: str, state: StreamState, detail: str) -> None:
        if state in (StreamState.RESTARTING, StreamState.STOPPED):
            self.board.set_sample(name, None)  # the last sample is no longer current

    def _container_change(self, name: str, change: WatchChange) -> None:
        from gpudesk.core.containers import watch as core_watch

        if isinstance(change, core_watch.ContainersListed):
            self.board.set_containers(name, change.infos)
        elif isinstance(change, core_watch.ContainersChanged):

            def apply(infos: list[ContainerInfo] | None) -> list[ContainerInfo] | None:
                return None if infos is None else core_watch.apply_change(infos, change)

            self.board.change_containers(name, apply)
        # ContainersStale: the list stays as last seen until the watch relists.

    def _runs_loop(self, name: str) -> None:
        from gpudesk.core import runs as core_runs

        while not self._stop.is_set():
            snap = self.board.get(name)
            sample = snap.sample if snap is not None else None
            if sample is not None and any(p.container_name for p in sample.processes):
                # Only labels depend on it: a failed listing keeps the last, the next round retries.
                with contextlib.suppress(Exception):
                    self.board.set_runs(name, core_runs.list_runs(self.fleet.services[name]))
            self._stop.wait(self.runs_every)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            streams, watches = list(self._streams.values()), list(self._watches.values())
        for stream in streams:
            stream.stop()
        for watch in watches:
            watch.stop()
        self.fleet.close()
        # The loops end on their own threads; what they last reported is no longer current.
        for name in self.fleet.services:
            self.board.set_status(ConnStatus(name, ConnState.CLOSED))
