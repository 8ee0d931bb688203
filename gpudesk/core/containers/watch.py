"""A live container list for one engine: list once, then follow the engine's events.

:class:`ContainerWatch` subscribes to the engine's container events, lists every container,
then updates only the containers that events name (one inspect each, bursts coalesced);
events that cannot change the list (``exec_*`` from every ``docker exec``, attach, resize, ...)
are skipped. When the stream ends (dockerd restarted, the SSH channel dropped) it says the
list is stale and since when, then subscribes again with a capped backoff and relists, since
events that happened meanwhile are lost.
"""

from __future__ import annotations

import builtins
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from gpudesk.core.containers.engine import EventStream
from gpudesk.core.containers.model import ContainerEvent, ContainerInfo, list_order
from gpudesk.core.gpu.stream import backoff_delay

# Events of one burst (`docker stop` sends kill, die and stop) are gathered this long after
# the first one, so the container is inspected once with its final state.
COALESCE_S = 0.1
# A flood of events is still applied in bursts of at most this many.
MAX_BURST = 1000

# Actions that never change what the list shows: every `docker exec` (gpudesk's own runs,
# logs and probes use exec a lot) and the I/O side of a container. `kill` is followed by
# `die` when the signal ends the container.
_NO_CHANGE = frozenset(
    {"attach", "detach", "resize", "top", "export", "copy", "archive-path", "extract-to-dir",
     "commit", "kill"}
)  # fmt: skip

STREAM_ENDED = "the Docker event stream ended (engine restarted or connection dropped)"


def changes_list(event: ContainerEvent) -> bool:
    """Whether ``event`` can change a container's row (state, name, health, ports, ...)."""
    action = event.action
    return bool(event.id) and not (action.startswith("exec_") or action in _NO_CHANGE)


class WatchSource(Protocol):
    """The engine as the watch needs it (DevContainers in the app)."""

    def events(self) -> EventStream: ...

    def list(self, all_containers: bool = False) -> builtins.list[ContainerInfo]: ...

    def find(self, ident: str) -> ContainerInfo | None: ...


@dataclass(frozen=True)
class ContainersListed:
    """A full listing: the list is live from here on."""

    infos: list[ContainerInfo]


@dataclass(frozen=True)
class ContainersChanged:
    """Containers whose rows changed (inspected now) and ids of containers that are gone."""

    updated: tuple[ContainerInfo, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class ContainersStale:
    """The event stream is down: the last list is what it was at ``since``."""

    since: datetime
    reason: str
    retry_in: float


WatchChange = ContainersListed | ContainersChanged | ContainersStale


@dataclass(frozen=True)
class _End:
    error: BaseException | None


class ContainerWatch:
    """Keeps one engine's container list live; ``run()`` blocks until :meth:`stop`."""

    def __init__(
        self,
        source: Callable[[], WatchSource],
        report: Callable[[WatchChange], None],
        *,
        backoff: Callable[[int], float] = backoff_delay,
        coalesce_s: float = COALESCE_S,
    ) -> None:
        self._source = source
        self._report = report
        self._backoff = backoff
        self._coalesce_s = coalesce_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stream: EventStream | None = None
        self.stale = False
        # What the watch asked the engine, for tests and bench/container_events.py.
        self.lists = 0
        self.lookups = 0
        self.subscriptions = 0

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def wake(self) -> None:
        """Try again now instead of at the end of the backoff (the host just reconnected)."""
        self._wake.set()

    def run(self) -> None:
        attempt = 0
        since: datetime | None = None
        while not self._stop.is_set():
            try:
                source = self._source()
                # Subscribe before listing so that nothing between the two is missed.
                stream = self._subscribe(source)
                try:
                    infos = source.list(True)
                    self.lists += 1
                    if self._stop.is_set():
                        return
                    self.stale, since, attempt = False, None, 0
                    self._report(ContainersListed(infos))
                    self._follow(source, stream)
                finally:
                    self._unsubscribe(stream)
                reason = STREAM_ENDED
            except Exception as exc:  # every failure ends in a visible state and a retry
                reason = str(exc) or type(exc).__name__
            if self._stop.is_set():
                return
            since = since or datetime.now(UTC)
            delay = self._backoff(attempt)
            attempt += 1
            self.stale = True
            self._report(ContainersStale(since, reason, delay))
            self._wake.wait(delay)
            self._wake.clear()

    def _subscribe(self, source: WatchSource) -> EventStream:
        stream = source.events()
        self.subscriptions += 1
        with self._lock:
            self._stream = stream
        if self._stop.is_set():  # stop() came between events() and here
            stream.close()
        return stream

    def _unsubscribe(self, stream: EventStream) -> None:
        with self._lock:
            if self._stream is stream:
                self._stream = None
        stream.close()

    def _follow(self, source: WatchSource, stream: EventStream) -> None:
        """Apply events until the stream ends (return) or breaks (raise)."""
        events: queue.SimpleQueue[ContainerEvent | _End] = queue.SimpleQueue()

        def read() -> None:
            try:
                for event in stream:
                    events.put(event)
            except BaseException as exc:
                events.put(_End(exc))
            else:
                events.put(_End(None))

        threading.Thread(target=read, name="gpudesk-container-events", daemon=True).start()
        while True:
            ids, end = self._burst(events)
            if ids and not self._stop.is_set():
                self._refresh(source, ids)
            if end is not None:
                if end.error is not None and not self._stop.is_set():
                    raise end.error
                return

    def _burst(
        self, events: queue.SimpleQueue[ContainerEvent | _End]
    ) -> tuple[builtins.list[str], _End | None]:
        """The ids named by the next burst of list-changing events (in order, once each).

        Waits for the first such event, gathers more for ``coalesce_s``, then takes whatever
        is already waiting (up to MAX_BURST events) without waiting any longer.
        """
        ids: dict[str, None] = {}
        deadline: float | None = None
        taken = 0
        item = events.get()
        while True:
            if isinstance(item, _End):
                return list(ids), item
            taken += 1
            if changes_list(item):
                ids[item.id] = None
                if deadline is None:
                    deadline = time.monotonic() + self._coalesce_s
            try:
                if deadline is None:  # nothing to do yet: wait for the next event
                    item = events.get()
                elif taken >= MAX_BURST:
                    return list(ids), None
                else:
                    remaining = deadline - time.monotonic()
                    item = events.get(timeout=remaining) if remaining > 0 else events.get_nowait()
            except queue.Empty:
                return list(ids), None

    def _refresh(self, source: WatchSource, ids: builtins.list[str]) -> None:
        updated: list[ContainerInfo] = []
        removed: list[str] = []
        for ident in ids:
            self.lookups += 1
            info = source.find(ident)
            if info is None:
                removed.append(ident)
            else:
                updated.append(info)
        self._report(ContainersChanged(tuple(updated), tuple(removed)))


def apply_change(infos: list[ContainerInfo], change: ContainersChanged) -> list[ContainerInfo]:
    """``infos`` with ``change`` applied: rows replaced or added by id, removed ones dropped."""
    gone = set(change.removed) | {i.id for i in change.updated}
    kept = [i for i in infos if i.id not in gone]
    return sorted([*kept, *change.updated], key=list_order)
