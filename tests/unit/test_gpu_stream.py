"""GpuStream: restarts with backoff, stop() at any moment, local subprocess line source."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator

import pytest

from gpudesk.core import shell
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import (
    AgentExitedError,
    GpuStream,
    StreamState,
    agent_command,
    agent_source,
    backoff_delay,
    local_lines,
)

WAIT = 30.0  # generous upper bound for events; tests finish as soon as they fire


def line(seq: int) -> str:
    return json.dumps({"schema": 1, "seq": seq, "ts": 1000.0 + seq, "gpus": [{"index": 0}]})


class Recorder:
    def __init__(self) -> None:
        self.samples: list[GpuSample] = []
        self.states: list[tuple[StreamState, str]] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def on_sample(self, sample: GpuSample) -> None:
        with self.changed:
            self.samples.append(sample)
            self.changed.notify_all()

    def on_state(self, state: StreamState, message: str) -> None:
        with self.changed:
            self.states.append((state, message))
            self.changed.notify_all()

    def wait_for(self, predicate: object) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout=WAIT)  # type: ignore[arg-type]

    def kinds(self) -> list[StreamState]:
        return [state for state, _ in self.states]


def start(stream: GpuStream) -> threading.Thread:
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- command


def test_agent_command() -> None:
    assert agent_command() == "python3 -u - --interval 1"
    cmd = agent_command(0.25, simulate=8)
    assert shell.split(cmd) == ["python3", "-u", "-", "--interval", "0.25", "--simulate", "8"]
    for bad in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError):
            agent_command(bad)
    with pytest.raises(ValueError):
        agent_command(1.0, simulate=0)


def test_agent_source_is_the_agent() -> None:
    source = agent_source()
    assert b"def container_id_from_cgroup" in source
    compile(source, "agent.py", "exec")


def test_backoff_is_capped() -> None:
    assert [backoff_delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 20, 20]
    assert backoff_delay(10_000) == 20


# --------------------------------------------------------------------------- restarts


def test_restarts_with_backoff_and_resets_after_success() -> None:
    rec = Recorder()
    attempts: list[int] = []
    opened: list[tuple[str, bytes]] = []
    stream: GpuStream

    @contextlib.contextmanager
    def open_lines(command: str, stdin: bytes) -> Iterator[Iterable[str]]:
        opened.append((command, stdin))
        n = len(opened)
        if n <= 3:
            raise OSError(f"boom {n}")
        if n == 4:
            yield [line(0), "garbage", line(1)]  # then the stream ends
            return
        stream.stop()
        yield []

    def backoff(attempt: int) -> float:
        attempts.append(attempt)
        return 0.0

    stream = GpuStream(open_lines, rec.on_sample, rec.on_state, interval=0.5, backoff=backoff)
    thread = start(stream)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert attempts == [0, 1, 2, 0]  # three failures, then a success resets the backoff
    assert [s.seq for s in rec.samples] == [0, 1]
    assert opened[0] == (agent_command(0.5), agent_source())
    kinds = rec.kinds()
    assert kinds[-1] is StreamState.STOPPED
    assert kinds.count(StreamState.RESTARTING) == 4
    assert StreamState.RUNNING in kinds and StreamState.WARNING in kinds
    restarting = [msg for state, msg in rec.states if state is StreamState.RESTARTING]
    assert "boom 1" in restarting[0]
    assert stream.restarts == 4


def test_stop_interrupts_backoff_wait_at_once() -> None:
    rec = Recorder()

    @contextlib.contextmanager
    def open_lines(command: str, stdin: bytes) -> Iterator[Iterable[str]]:
        raise ConnectionError("host unreachable")
        yield []  # pragma: no cover

    stream = GpuStream(open_lines, rec.on_sample, rec.on_state, backoff=lambda n: 3600.0)
    thread = start(stream)
    rec.wait_for(lambda: StreamState.RESTARTING in rec.kinds())
    stream.stop()
    thread.join(WAIT)  # would take an hour if the wait ignored stop()
    assert not thread.is_alive()
    assert rec.kinds()[-1] is StreamState.STOPPED


class BlockingLines:
    """A line source that blocks until closed, like a silent SSH channel."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[str]:
        self.closed.wait(WAIT)
        return iter(())

    def close(self) -> None:
        self.closed.set()


def test_stall_watchdog_closes_a_silent_stream() -> None:
    rec = Recorder()
    sources: list[BlockingLines] = []
    stream: GpuStream

    @contextlib.contextmanager
    def open_lines(command: str, stdin: bytes) -> Iterator[Iterable[str]]:
        if sources:
            stream.stop()
        sources.append(BlockingLines())
        yield sources[-1]

    stream = GpuStream(
        open_lines, rec.on_sample, rec.on_state, stall_timeout=0.2, backoff=lambda n: 0.0
    )
    thread = start(stream)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert sources[0].closed.is_set()
    assert StreamState.RESTARTING in rec.kinds()


# --------------------------------------------------------------------------- local agent


def test_local_agent_end_to_end_and_stop_interrupts_read() -> None:
    rec = Recorder()
    # a long interval: after the first sample the agent is silent, so stop() must
    # interrupt the blocked read by killing the local process
    stream = GpuStream(local_lines, rec.on_sample, rec.on_state, interval=3600, simulate=3)
    thread = start(stream)
    rec.wait_for(lambda: len(rec.samples) >= 1)
    stream.stop()
    thread.join(WAIT)
    assert not thread.is_alive()
    (sample,) = rec.samples
    assert sample.simulated and len(sample.gpus) == 3
    assert rec.kinds()[:2] == [StreamState.STARTING, StreamState.RUNNING]
    assert rec.kinds()[-1] is StreamState.STOPPED
    assert StreamState.RESTARTING not in rec.kinds()


def test_local_stream_several_samples() -> None:
    rec = Recorder()
    stream = GpuStream(local_lines, rec.on_sample, rec.on_state, interval=0.05, simulate=2)
    thread = start(stream)
    rec.wait_for(lambda: len(rec.samples) >= 3)
    stream.stop()
    thread.join(WAIT)
    assert [s.seq for s in rec.samples[:3]] == [0, 1, 2]


def test_local_lines_reports_agent_failure() -> None:
    with (
        pytest.raises(AgentExitedError, match="unrecognized arguments"),
        local_lines("python3 -u - --bogus", agent_source()) as lines,
    ):
        list(lines)
