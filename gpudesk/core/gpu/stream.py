"""Operator side of the GPU stream: the agent's command, a restarting reader, and history.

``GpuStream`` is transport-agnostic: it is given ``open_lines(command, stdin)``, a context
manager factory that starts ``command`` on the GPU host, feeds it ``stdin`` (the agent's
source) and yields the lines it prints.  :func:`local_lines` does this with a local
subprocess; an SSH exec channel works the same way.  If the iterable that ``open_lines``
yields has a ``close()`` method, :meth:`GpuStream.stop` (and the stall watchdog) call it
from another thread to unblock a pending read.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import math
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum

from gpudesk.core import shell
from gpudesk.core.gpu.sample import GpuSample, SampleError, parse_sample

OpenLines = Callable[[str, bytes], AbstractContextManager[Iterable[str]]]

MAX_BACKOFF_S = 20.0


def agent_source() -> bytes:
    """The agent's source code, to be piped into ``python3 -u -`` on the GPU host."""
    return importlib.resources.files("gpudesk.payload").joinpath("gpu_agent.py").read_bytes()


def agent_command(
    interval: float = 1.0,
    simulate: int | None = None,
    python: str = "python3",
    sim_processes: tuple[str, ...] = (),
) -> str:
    """The command line that runs the agent read from stdin, with ``python``.

    ``sim_processes`` (``NAME@GPU``, only with ``simulate``) put a real container's process
    on an idle fake GPU (the agent's ``--simulate-process``).
    """
    if not interval > 0 or math.isinf(interval):
        raise ValueError(f"interval must be a positive number of seconds, not {interval!r}")
    argv = [python, "-u", "-", "--interval", f"{interval:g}"]
    if simulate is not None:
        if simulate < 1:
            raise ValueError(f"simulate needs at least one GPU, not {simulate!r}")
        argv += ["--simulate", str(simulate)]
        for spec in sim_processes:
            argv += ["--simulate-process", spec]
    return shell.command(argv)


def backoff_delay(attempt: int) -> float:
    """Seconds to wait before restart number ``attempt`` (0-based): 1, 2, 4, ... capped at 20."""
    return float(min(2 ** min(attempt, 10), MAX_BACKOFF_S))


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class HistoryPoint:
    ts: float
    util: float | None  # GPU utilisation %, None at a gap
    mem: float | None  # memory used %, None at a gap
    gap: bool = False  # True: data stopped here (stream restart or missing samples)


class GpuHistory:
    """Recent (ts, util %, mem %) per GPU, bounded in points and in time.

    Covers ``window_s`` at any sampling interval: samples closer together than
    ``window_s / max_points`` replace the previous point instead of adding one.  Gaps are
    explicit points (``gap=True``), added when samples stop arriving for longer than
    ``gap_after_s``, when the agent restarts (its ``seq`` goes back), or by :meth:`mark_gap`.
    """

    def __init__(
        self, window_s: float = 300.0, max_points: int = 600, gap_after_s: float = 5.0
    ) -> None:
        if window_s <= 0 or max_points < 2:
            raise ValueError("window_s must be positive and max_points at least 2")
        self.window_s = window_s
        self.max_points = max_points
        self.gap_after_s = gap_after_s
        self._resolution = window_s / max_points
        self._points: dict[int, deque[HistoryPoint]] = {}
        self._last_ts: float | None = None
        self._last_seq: int | None = None
        self._pending_gap = False

    @property
    def last_ts(self) -> float | None:
        return self._last_ts

    def gpu_indices(self) -> list[int]:
        return sorted(self._points)

    def points(self, index: int) -> tuple[HistoryPoint, ...]:
        return tuple(self._points.get(index, ()))

    def mark_gap(self) -> None:
        """The stream broke (e.g. restarting): the next sample starts a new segment."""
        self._pending_gap = True

    def add(self, sample: GpuSample) -> None:
        ts = sample.ts
        gap = self._pending_gap
        if self._last_ts is not None:
            if ts - self._last_ts > self.gap_after_s:
                gap = True
            if ts < self._last_ts:
                # Clock went back: drop what no longer fits in time order.
                gap = True
                for points in self._points.values():
                    while points and points[-1].ts >= ts:
                        points.pop()
        if self._last_seq is not None and sample.seq <= self._last_seq:
            gap = True  # agent restarted
        self._pending_gap = False
        self._last_seq = sample.seq
        self._last_ts = ts
        for gpu in sample.gpus:
            points = self._points.setdefault(gpu.index, deque(maxlen=self.max_points))
            if gap and points and not points[-1].gap:
                points.append(HistoryPoint(points[-1].ts, None, None, gap=True))
            point = HistoryPoint(ts, gpu.util_gpu, gpu.mem_percent)
            last = points[-1] if points else None
            if last is not None and not last.gap and ts - last.ts < self._resolution:
                points[-1] = HistoryPoint(
                    last.ts, _max(last.util, point.util), _max(last.mem, point.mem)
                )
            else:
                points.append(point)
            while points and points[0].ts < ts - self.window_s:
                points.popleft()
            while points and points[0].gap:
                points.popleft()

    def series(
        self, index: int, width: int, attr: str = "util", now: float | None = None
    ) -> list[float | None]:
        """``width`` time buckets covering the window up to ``now`` (default: last sample).

        Each bucket is the max of its points, or ``None`` where there is no data: before
        the history starts, across gaps and after samples stopped arriving.
        """
        if width <= 0:
            return []
        end = now if now is not None else self._last_ts
        out: list[float | None] = [None] * width
        if end is None:
            return out
        start = end - self.window_s
        step = self.window_s / width
        points = self._points.get(index, ())
        for point in points:
            if point.gap or point.ts < start or point.ts > end:
                continue
            value = point.util if attr == "util" else point.mem
            if value is None:
                continue
            bucket = min(width - 1, int((point.ts - start) / step))
            current = out[bucket]
            out[bucket] = value if current is None else max(current, value)
        # Short gaps between consecutive points in a segment are not gaps: fill them.
        prev: HistoryPoint | None = None
        for point in points:
            if prev is not None and not prev.gap and not point.gap:
                value = prev.util if attr == "util" else prev.mem
                if value is not None and point.ts - prev.ts <= self.gap_after_s:
                    lo = max(0, int((prev.ts - start) / step) + 1)
                    hi = min(width, int((point.ts - start) / step))
                    for bucket in range(lo, hi):
                        if out[bucket] is None:
                            out[bucket] = value
            prev = point
        return out


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


# --------------------------------------------------------------------------- stream


class StreamState(StrEnum):
    STARTING = "starting"  # launching the agent
    RUNNING = "running"  # samples are arriving
    WARNING = "warning"  # a bad line was skipped; still running
    RESTARTING = "restarting"  # the stream died; waiting before the next try
    STOPPED = "stopped"  # stop() was called; run() returns


class GpuStream:
    """Run the agent on a host and feed each sample to ``on_sample``, restarting on failure.

    ``run()`` blocks (run it in a worker thread); callbacks are called from that thread.
    When the stream ends or fails, it is restarted after ``min(2**n, 20)`` seconds (``n``
    counts consecutive failures without a sample), waiting on an event so that ``stop()``
    takes effect at once.  A stream that yields nothing for ``stall_timeout`` seconds is
    closed and restarted (only works when the line iterable has ``close()``).
    """

    def __init__(
        self,
        open_lines: OpenLines,
        on_sample: Callable[[GpuSample], None],
        on_state: Callable[[StreamState, str], None],
        interval: float = 1.0,
        simulate: int | None = None,
        *,
        stall_timeout: float | None = None,
        backoff: Callable[[int], float] = backoff_delay,
        python: str = "python3",
        sim_processes: tuple[str, ...] = (),
    ) -> None:
        self._open_lines = open_lines
        self._on_sample = on_sample
        self._on_state = on_state
        self.command = agent_command(interval, simulate, python, sim_processes)
        self._source = agent_source()
        self._stall_timeout = (
            stall_timeout if stall_timeout is not None else max(15.0, 10.0 * interval)
        )
        self._backoff = backoff
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._current: Iterable[str] | None = None
        self.restarts = 0

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Ask ``run()`` to return; interrupts a backoff wait or (if closable) a read."""
        self._stop.set()
        self._close_current()

    def _close_current(self) -> None:
        with self._lock:
            current = self._current
        close = getattr(current, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()

    def _watch(self, done: threading.Event, last_line: list[float]) -> None:
        check = min(1.0, self._stall_timeout / 4)
        while not done.wait(check):
            if time.monotonic() - last_line[0] > self._stall_timeout:
                self._close_current()
                return

    def run(self) -> None:
        attempt = 0
        try:
            while not self._stop.is_set():
                got_sample, reason = self._run_once()
                if got_sample:  # it worked for a while: the next failure starts a fresh backoff
                    attempt = 0
                if self._stop.is_set():
                    break
                delay = self._backoff(attempt)
                attempt += 1
                self.restarts += 1
                self._on_state(StreamState.RESTARTING, f"{reason}; restarting in {delay:g} s")
                if self._stop.wait(delay):
                    break
        finally:
            self._on_state(StreamState.STOPPED, "stopped")

    def _run_once(self) -> tuple[bool, str]:
        """One agent run: (whether it produced samples, why it ended)."""
        self._on_state(StreamState.STARTING, "starting GPU agent")
        got_sample = False
        reason = "agent stream ended"
        done = threading.Event()
        last_line = [time.monotonic()]
        try:
            with self._open_lines(self.command, self._source) as lines:
                with self._lock:
                    self._current = lines
                if self._stop.is_set():  # stop() came before there was anything to close
                    self._close_current()
                watchdog = threading.Thread(target=self._watch, args=(done, last_line), daemon=True)
                watchdog.start()
                for line in lines:
                    last_line[0] = time.monotonic()
                    if self._stop.is_set():
                        break
                    if not line.strip():
                        continue
                    try:
                        sample = parse_sample(line)
                    except SampleError as exc:
                        self._on_state(StreamState.WARNING, f"skipped a bad sample: {exc}")
                        continue
                    if not got_sample:
                        got_sample = True
                        self._on_state(StreamState.RUNNING, "receiving GPU samples")
                    self._on_sample(sample)
        except Exception as exc:
            reason = f"agent failed: {exc}" if str(exc) else f"agent failed: {type(exc).__name__}"
        finally:
            done.set()
            with self._lock:
                self._current = None
        return got_sample, reason


# --------------------------------------------------------------------------- local


class AgentExitedError(RuntimeError):
    """The local agent process ended with an error."""


class _ProcessLines:
    """Lines from a subprocess' stdout; ``close()`` (any thread) kills the process."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._stderr: deque[str] = deque(maxlen=20)
        self._closed = False
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()

    def _read_stderr(self) -> None:
        if self._proc.stderr is None:
            return
        for raw in self._proc.stderr:
            self._stderr.append(raw.decode("utf-8", "replace").rstrip())

    def __iter__(self) -> Iterator[str]:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
        rc = self._proc.wait()
        self._drain.join(timeout=2)
        if rc != 0 and not self._closed:
            tail = " | ".join(self._stderr)[-400:]
            raise AgentExitedError(f"agent exited with status {rc}" + (f": {tail}" if tail else ""))

    def close(self) -> None:
        self._closed = True
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.kill()


@contextlib.contextmanager
def local_lines(command: str, stdin: bytes) -> Iterator[_ProcessLines]:
    """Run ``command`` locally (no shell), write ``stdin`` to it, yield its output lines."""
    argv = shell.split(command)
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    lines = _ProcessLines(proc)
    try:
        assert proc.stdin is not None
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        yield lines
    finally:
        lines.close()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(Exception):
                    pipe.close()
