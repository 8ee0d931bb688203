"""Container CPU/memory as `docker stats` computes them, and the watch that streams them.

The documents in tests/fixtures/docker are real: ``stats_stream_v1.jsonl`` was recorded from the
test bed's dockerd 20.10 (cgroup v1) with ``curl --unix-socket … /containers/ID/stats`` while
the container burnt one CPU after reading a 48 MiB file (so its page cache is not zero),
``stats_oneshot_v1.jsonl`` with ``?stream=false&one-shot=true``, a second apart. The cgroup v2
memory section below is written by hand in the shape cgroup v2 engines send (no ``total_*``).
The reference below is a transcription of the docker CLI's own Go code
(cli/command/container/stats_helpers.go: calculateCPUPercentUnix, calculateMemUsageUnixNoCache),
written apart from the code under test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core.containers.stats import (
    StatsWatch,
    Usage,
    cpu_percent,
    gpu_memory_by_container,
    memory_used,
    usage_of,
)
from gpudesk.core.gpu.sample import GpuProcess, GpuSample

FIXTURES = Path(__file__).parents[1] / "fixtures/docker"
STREAM = [
    json.loads(line) for line in (FIXTURES / "stats_stream_v1.jsonl").read_text().splitlines()
]
ONESHOT = [
    json.loads(line) for line in (FIXTURES / "stats_oneshot_v1.jsonl").read_text().splitlines()
]
V2_MEMORY = {
    "usage": 60_000_000,
    "limit": 8_000_000_000,
    "stats": {"anon": 9_000_000, "file": 50_000_000, "active_file": 1_000_000,
              "inactive_file": 49_000_000},
}  # fmt: skip


def reference_cpu(v: dict[str, Any], previous: dict[str, Any]) -> float:
    cpu_delta = float(v["cpu_stats"]["cpu_usage"]["total_usage"]) - float(
        previous["cpu_usage"]["total_usage"]
    )
    system_delta = float(v["cpu_stats"].get("system_cpu_usage", 0)) - float(
        previous.get("system_cpu_usage", 0)
    )
    online = float(v["cpu_stats"].get("online_cpus", 0))
    if online == 0.0:
        online = float(len(v["cpu_stats"]["cpu_usage"].get("percpu_usage") or []))
    if system_delta > 0.0 and cpu_delta > 0.0:
        return (cpu_delta / system_delta) * online * 100.0
    return 0.0


def reference_memory(mem: dict[str, Any]) -> float:
    stats = mem.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < mem["usage"]:
        return float(mem["usage"] - stats["total_inactive_file"])
    if stats.get("inactive_file", 0) < mem["usage"]:
        return float(mem["usage"] - stats.get("inactive_file", 0))
    return float(mem["usage"])


def test_recorded_stream_matches_the_docker_cli() -> None:
    assert len(STREAM) >= 3
    busy = []
    for doc in STREAM[1:]:  # the first frame has no previous reading
        usage = usage_of(doc)
        assert usage is not None and usage.cpu_percent is not None
        assert usage.cpu_percent == pytest.approx(reference_cpu(doc, doc["precpu_stats"]))
        assert usage.mem_used == reference_memory(doc["memory_stats"])
        assert usage.mem_limit == doc["memory_stats"]["limit"]
        busy.append(usage.cpu_percent)
    # The recording burnt one CPU: the figures say so (not a zero-everywhere parse).
    assert max(busy) > 50.0


def test_one_shot_polls_take_cpu_between_two_polls() -> None:
    first, second = ONESHOT[0], ONESHOT[1]
    alone = usage_of(first, previous_cpu={})
    assert alone is not None and alone.cpu_percent is None and alone.mem_used
    usage = usage_of(second, previous_cpu=first["cpu_stats"])
    assert usage is not None
    assert usage.cpu_percent == pytest.approx(reference_cpu(second, first["cpu_stats"]))
    assert usage.cpu_percent is not None and usage.cpu_percent > 50.0


def test_page_cache_is_left_out_on_cgroup_v1_and_v2() -> None:
    v1 = STREAM[-1]["memory_stats"]
    assert memory_used(v1) == reference_memory(v1)
    assert v1["stats"]["total_inactive_file"] > 0 and memory_used(v1) != v1["usage"]
    assert memory_used(V2_MEMORY) == reference_memory(V2_MEMORY) == 11_000_000


@pytest.mark.parametrize(
    "doc",
    [None, "x", [], {}, {"cpu_stats": "no"}, {"memory_stats": {"usage": "1"}},
     {"cpu_stats": {"cpu_usage": {"total_usage": True}}, "precpu_stats": {}}],
)  # fmt: skip
def test_hostile_documents_give_nothing_rather_than_crash(doc: Any) -> None:
    usage = usage_of(doc)
    assert usage is None or (usage.cpu_percent is None and usage.mem_used is None)


def test_zero_deltas_are_zero_percent_not_a_division() -> None:
    cpu = {"cpu_usage": {"total_usage": 5}, "system_cpu_usage": 9, "online_cpus": 4}
    assert cpu_percent(cpu, cpu) == 0.0
    assert memory_used({"usage": 10, "stats": {"inactive_file": 20}}) == 10


def test_gpu_memory_sums_each_containers_processes() -> None:
    sample = GpuSample(
        schema=1, seq=1, ts=0.0,
        processes=(
            GpuProcess(0, 10, 2 << 30, container_name="train-a"),
            GpuProcess(1, 11, 1 << 30, container_name="train-a"),
            GpuProcess(0, 12, 5 << 30),
            GpuProcess(0, 13, None, container_name="notebook"),
        ),
    )  # fmt: skip
    assert gpu_memory_by_container(sample) == {"train-a": 3 << 30}
    assert gpu_memory_by_container(None) == {}


# ---------------------------------------------------------------------- the watch


class FakeResponse:
    """A stats stream: documents pushed by the test; close() ends it like a closed channel."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any] | None] = []
        self.cond = threading.Condition()
        self.closed = False

    def push(self, doc: dict[str, Any] | None) -> None:
        with self.cond:
            self.docs.append(doc)
            self.cond.notify_all()

    def close(self) -> None:
        self.closed = True
        self.push(None)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            with self.cond:
                self.cond.wait_for(lambda: bool(self.docs))
                doc = self.docs.pop(0)
            if doc is None:
                return
            yield doc


class FakeApi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.streams: dict[str, FakeResponse] = {}
        self.opened = threading.Semaphore(0)
        self.polls: list[str] = []

    def _url(self, template: str, name: str) -> str:
        return template.format(name)

    def _get(self, url: str, params: Any, stream: bool) -> FakeResponse:
        name = url.split("/")[2]
        response = FakeResponse()
        with self.lock:
            self.streams[name] = response
        self.opened.release()
        return response

    def _raise_for_status(self, response: FakeResponse) -> None:
        return None

    def _stream_helper(self, response: FakeResponse, decode: bool) -> Iterator[dict[str, Any]]:
        return iter(response)

    def stats(self, name: str, stream: bool, one_shot: bool) -> dict[str, Any]:
        assert stream is False and one_shot is True
        with self.lock:
            self.polls.append(name)
            count = self.polls.count(name)
        if count > len(ONESHOT):
            raise ConnectionError("the recording ends here")  # the watch keeps the last figure
        return ONESHOT[count - 1]


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeApi()


def test_watch_streams_up_to_the_cap_polls_the_rest_and_stops_everything() -> None:
    client = FakeClient()
    reports: list[dict[str, Usage]] = []
    reported = threading.Condition()

    def report(usage: dict[str, Usage]) -> None:
        with reported:
            reports.append(usage)
            reported.notify_all()

    threads: list[threading.Thread] = []

    def spawn(target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        threads.append(thread)
        thread.start()

    watch = StatsWatch(lambda: client, report, max_streams=2, tick=0.05, spawn=spawn)
    runner = threading.Thread(target=watch.run, daemon=True)
    runner.start()
    watch.watch(["a", "b", "c"])
    for _ in range(2):
        assert client.api.opened.acquire(timeout=10)
    assert sorted(client.api.streams) == ["a", "b"]
    assert len(threads) == 2  # one thread per stream, never more than the cap
    client.api.streams["a"].push(STREAM[1])
    client.api.streams["b"].push(STREAM[2])

    def complete() -> bool:
        last = reports[-1] if reports else {}
        c = last.get("c")
        return {"a", "b"} <= set(last) and c is not None and c.cpu_percent is not None

    with reported:
        assert reported.wait_for(complete, timeout=10)
    last = reports[-1]
    assert last["a"] == usage_of(STREAM[1]) and last["b"] == usage_of(STREAM[2])
    # c, past the cap, is polled one-shot; its CPU % is taken between two polls.
    assert last["c"] == usage_of(ONESHOT[1], previous_cpu=ONESHOT[0]["cpu_stats"])

    # Dropping a container closes its stream; stopping closes the rest and ends every thread.
    watch.watch(["b"])
    with reported:
        assert reported.wait_for(lambda: set(reports[-1]) == {"b"}, timeout=10)
    assert client.api.streams["a"].closed and not client.api.streams["b"].closed
    watch.stop()
    runner.join(10)
    for thread in threads:
        thread.join(10)
    assert not runner.is_alive() and not any(t.is_alive() for t in threads)
    assert client.api.streams["b"].closed
