"""The live container list (core/containers/watch.py) and its state transitions, with a fake engine.

The fake engine records what the watch asks it (full listings, one-container lookups), so the
tests count engine calls the way bench/container_events.py does on the real test bed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from gpudesk.app.state import FleetState
from gpudesk.core.config import Host, Inventory
from gpudesk.core.containers import ContainerError, ContainerEvent, ContainerInfo
from gpudesk.core.containers.watch import (
    ContainersChanged,
    ContainersListed,
    ContainersStale,
    ContainerWatch,
    WatchChange,
    apply_change,
    changes_list,
)
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.stream import MAX_BACKOFF_S, backoff_delay

END = object()
BREAK = object()


def info(name: str, state: str = "running", ours: bool = True) -> ContainerInfo:
    return ContainerInfo(
        id=f"id-{name}", name=name, flavour=Flavour.SSH if ours else None, image="img",
        state=state, status=state, created=None, started_at=None, uptime=None, gpus="",
        ports=[], workspace="", labels={}, is_gpudesk=ours,
    )  # fmt: skip


def event(action: str, name: str) -> ContainerEvent:
    return ContainerEvent(action, f"id-{name}", name, {}, datetime.now(UTC), True)


class FakeStream:
    """Yields what the test puts; END ends it, BREAK breaks it; close() ends it from outside."""

    def __init__(self) -> None:
        self.items: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.closed = False

    def put(self, *items: object) -> None:
        for item in items:
            self.items.put(item)

    def close(self) -> None:
        self.closed = True
        self.items.put(END)

    def __iter__(self) -> Iterator[ContainerEvent]:
        while True:
            item = self.items.get()
            if item is END:
                return
            if item is BREAK:
                raise ContainerError("Docker the Docker event stream broke: connection reset.")
            assert isinstance(item, ContainerEvent)
            yield item


class FakeEngine:
    """Containers by id; counts listings and lookups; can refuse the next subscriptions."""

    def __init__(self, *infos: ContainerInfo) -> None:
        self.containers = {i.id: i for i in infos}
        self.streams: queue.SimpleQueue[FakeStream] = queue.SimpleQueue()
        self.refuse = 0
        self.lists = 0
        self.lookups: list[str] = []

    def events(self) -> FakeStream:
        if self.refuse:
            self.refuse -= 1
            raise ContainerError("Docker could not watch container events: engine down.")
        stream = FakeStream()
        self.streams.put(stream)
        return stream

    def list(self, all_containers: bool = False) -> list[ContainerInfo]:
        self.lists += 1
        return sorted(self.containers.values(), key=lambda i: i.name)

    def find(self, ident: str) -> ContainerInfo | None:
        self.lookups.append(ident)
        return self.containers.get(ident)


class Reports:
    def __init__(self) -> None:
        self.items: queue.SimpleQueue[WatchChange] = queue.SimpleQueue()

    def __call__(self, change: WatchChange) -> None:
        self.items.put(change)

    def next(self, kind: type[Any]) -> Any:
        got = self.items.get(timeout=30)
        assert isinstance(got, kind), got
        return got


@pytest.fixture
def running() -> Iterator[tuple[FakeEngine, Reports, ContainerWatch, list[int]]]:
    engine = FakeEngine(info("a"), info("b", "exited"))
    reports = Reports()
    attempts: list[int] = []

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    watch = ContainerWatch(lambda: engine, reports, backoff=backoff, coalesce_s=0.05)  # type: ignore[arg-type, return-value]
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    yield engine, reports, watch, attempts
    watch.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_only_list_changing_events_are_followed() -> None:
    assert not changes_list(event("exec_create: python3 -", "a"))
    assert not changes_list(event("exec_start: python3 -", "a"))
    assert not changes_list(event("exec_die", "a"))
    for action in ("attach", "resize", "kill", "top"):
        assert not changes_list(event(action, "a"))
    for action in ("create", "start", "die", "stop", "destroy", "rename", "pause", "restart",
                   "health_status: unhealthy", "update", "oom"):  # fmt: skip
        assert changes_list(event(action, "a"))


def test_exec_events_of_a_submit_cost_nothing_and_a_stop_one_lookup(
    running: tuple[FakeEngine, Reports, ContainerWatch, list[int]],
) -> None:
    engine, reports, watch, _ = running
    first = reports.next(ContainersListed)
    assert [i.name for i in first.infos] == ["a", "b"]
    stream = engine.streams.get(timeout=30)
    # A submit and one `runs` against container a: 27 exec events (9 execs), as in issue 15.
    execs = [event(f"exec_{step}", "a") for _ in range(9) for step in ("create", "start", "die")]
    engine.containers["id-a"] = replace(engine.containers["id-a"], state="exited")
    stream.put(*execs, event("kill", "a"), event("die", "a"), event("stop", "a"))
    change = reports.next(ContainersChanged)
    assert [i.state for i in change.updated] == ["exited"] and change.removed == ()
    # The old watcher listed the whole host once per event: 30 listings. Now: none, one lookup.
    assert (engine.lists, engine.lookups) == (1, ["id-a"])
    assert (watch.lists, watch.lookups) == (1, 1)


def test_a_burst_is_looked_up_once_per_container_and_a_destroyed_one_is_removed() -> None:
    engine = FakeEngine(info("a"), info("b"))
    watch = ContainerWatch(lambda: engine, Reports(), coalesce_s=0.0)  # type: ignore[arg-type, return-value]
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for item in [event("die", "a"), event("exec_die", "b"), event("stop", "a"),
                 event("destroy", "b"), event("start", "a")]:  # fmt: skip
        events.put(item)
    ids, end = watch._burst(events)
    assert ids == ["id-a", "id-b"] and end is None
    del engine.containers["id-b"]
    reports = Reports()
    watch._report = reports
    watch._refresh(engine, ids)  # type: ignore[arg-type]
    change = reports.next(ContainersChanged)
    assert [i.name for i in change.updated] == ["a"] and change.removed == ("id-b",)


def test_a_dropped_stream_is_stale_then_resubscribed_with_backoff_and_relisted(
    running: tuple[FakeEngine, Reports, ContainerWatch, list[int]],
) -> None:
    engine, reports, watch, attempts = running
    reports.next(ContainersListed)
    engine.refuse = 2  # the engine is still restarting for the next two tries
    before = datetime.now(UTC)
    engine.containers["id-c"] = info("c")  # created as the stream broke: its event is lost
    engine.streams.get(timeout=30).put(BREAK)
    stale = [reports.next(ContainersStale) for _ in range(3)]
    # One moment the list stopped being live, kept over every failed try, each saying why.
    assert len({s.since for s in stale}) == 1 and before <= stale[0].since <= datetime.now(UTC)
    assert "broke" in stale[0].reason and "engine down" in stale[1].reason
    relisted = reports.next(ContainersListed)
    assert [i.name for i in relisted.infos] == ["a", "b", "c"]
    assert attempts == [0, 1, 2] and not watch.stale and watch.subscriptions == 2
    # A stream that simply ends (dockerd shut down cleanly) is a drop too; backoff starts over.
    engine.streams.get(timeout=30).put(END)
    assert "ended" in reports.next(ContainersStale).reason
    reports.next(ContainersListed)
    assert attempts == [0, 1, 2, 0]


def test_the_backoff_is_capped() -> None:
    delays = [backoff_delay(a) for a in range(12)]
    assert delays[:3] == [1, 2, 4] and max(delays) == MAX_BACKOFF_S == delays[-1]


def test_stop_ends_a_watch_waiting_out_its_backoff() -> None:
    engine = FakeEngine()
    engine.refuse = 10**6
    reports = Reports()
    watch = ContainerWatch(lambda: engine, reports, backoff=lambda a: 3600.0)  # type: ignore[arg-type, return-value]
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    reports.next(ContainersStale)
    watch.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_wake_tries_again_before_the_backoff_ends() -> None:
    engine = FakeEngine(info("a"))
    engine.refuse = 1
    reports = Reports()
    watch = ContainerWatch(lambda: engine, reports, backoff=lambda a: 3600.0)  # type: ignore[arg-type, return-value]
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    try:
        reports.next(ContainersStale)
        assert watch.stale
        watch.wake()  # the host reconnected
        reports.next(ContainersListed)
        assert not watch.stale
    finally:
        watch.stop()
        thread.join(10)


def test_apply_change_replaces_adds_and_removes_by_id_in_list_order() -> None:
    infos = [info("a"), info("b"), info("z", ours=False)]
    renamed = replace(info("b"), name="c")
    changed = apply_change(infos, ContainersChanged((renamed, info("new")), ("id-a",)))
    assert [i.name for i in changed] == ["c", "new", "z"]


# ---------------------------------------------------------------- the TUI's state


class Sink:
    def __getattr__(self, name: str) -> Any:
        return lambda *args: None


def make_state() -> FleetState:
    Inventory.load().add(Host(name="gpu-a", hostname="10.0.0.6", user="alice"))
    return FleetState(Sink(), lambda cb: Fleet.build(Inventory.load(), cb), connect=False)  # type: ignore[arg-type]


def test_the_state_marks_a_stale_list_on_the_fleet_and_clears_it_on_relisting() -> None:
    state = make_state()
    model = state.models["gpu-a"]
    stale = ContainersStale(datetime.now(UTC), "the Docker event stream ended", 2.0)
    assert state.apply_container_change("gpu-a", stale)
    # Nothing listed yet: an error with its reason, as the Fleet showed before.
    assert (model.extra["containers"], model.containers_error) == ("error", stale.reason)
    assert state.apply_container_change("gpu-a", ContainersListed([info("a"), info("b", "exited")]))
    assert model.containers_stale is None and model.containers_error is None
    assert model.extra["containers"] == "1/2 up"
    assert state.apply_container_change("gpu-a", ContainersChanged((info("b"),), ()))
    assert model.extra["containers"] == "2/2 up"
    assert state.apply_container_change("gpu-a", stale)
    assert model.containers_stale == stale and model.extra["containers"] == "2/2 stale"
    # A relist after an action shows the engine's answer but not a live list: still stale.
    assert state.apply_containers("gpu-a", [info("a", "exited"), info("b")], None)
    assert model.containers_stale == stale and model.extra["containers"] == "1/2 stale"
    assert not state.apply_container_change("nope", stale)
