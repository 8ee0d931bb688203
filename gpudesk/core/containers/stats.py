"""Live CPU and memory of a host's running containers, as ``docker stats`` computes them.

Docker's stats call waits for the engine's next collection (``stream=false``: two of them,
about 2 s; ``one-shot``: one, up to 1 s, measured on dockerd 20.10), so a table of twenty
containers cannot ask in turn each second. :class:`StatsWatch` keeps one stats *stream* per
container instead, each on a thread of its own, and coalesces what they say into one report per
host per tick (at most one a second).

Each stream holds one HTTP connection to the engine while it runs. On a remote host that is a
``docker system dial-stdio`` session channel of the host's one SSH connection; sshd allows
``MaxSessions`` (10 by default) of those, gpudesk budgets 8 per host
(:data:`gpudesk.core.ssh.MAX_SESSION_CHANNELS`) and already holds 3 to 5 of them (GPU agent,
event watch, the Docker pool's kept connections; a followed log takes one more). So streams
are capped per host: :data:`STREAMS_SSH` over SSH, :data:`STREAMS_LOCAL` on the local socket
(no channels; threads only). The containers past the cap take turns on the watch's own thread:
one ``one-shot`` request per turn through the Docker pool's kept connection (no extra channel),
CPU % taken between a container's two last polls. The screen lists the containers in its
table's order, so the top rows (after a sort or a filter) are the streamed ones.

Bounds per host: threads 1 + streams; extra session channels: the streams (at most
:data:`STREAMS_SSH`). Freshness: streamed containers every second, polled ones every
(polled count) seconds or so. Measured for 20 running containers over the test bed's sshd
(tests/integration/test_tui_container_stats.py, docs/benchmarks.md).

The parsing functions are pure and follow the docker CLI (cli/command/container/stats_helpers.go).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from gpudesk.core.gpu.sample import GpuSample

STREAMS_SSH = 2
STREAMS_LOCAL = 16
TICK_S = 1.0
# A stream that failed (the container stopped, the engine went away) is not reopened sooner.
REOPEN_S = 5.0
# Between two polls when the last one failed at once (no engine wait to pace the loop).
POLL_GAP_S = 0.1


@dataclass(frozen=True)
class Usage:
    """One container's resources; ``None`` where the engine did not say (yet)."""

    cpu_percent: float | None
    mem_used: int | None
    mem_limit: int | None


# ---------------------------------------------------------------------- parsing (pure)


def _num(obj: Any, *path: str) -> float | None:
    """The number at ``path`` in nested dicts, or None: a hostile engine may send anything."""
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    if isinstance(obj, bool) or not isinstance(obj, int | float):
        return None
    return float(obj)


def cpu_percent(cpu: Any, previous: Any) -> float | None:
    """CPU % between two ``cpu_stats`` readings, as ``docker stats``: 100 is one full CPU.

    cpu_delta / system_delta x online_cpus x 100; None without two readings to compare.
    """
    total, before = (
        _num(cpu, "cpu_usage", "total_usage"),
        _num(previous, "cpu_usage", "total_usage"),
    )
    system, system_before = _num(cpu, "system_cpu_usage"), _num(previous, "system_cpu_usage")
    if total is None or before is None or system is None or system_before is None:
        return None
    cpus = _num(cpu, "online_cpus")
    if not cpus:
        percpu = cpu.get("cpu_usage", {}).get("percpu_usage") if isinstance(cpu, Mapping) else None
        cpus = float(len(percpu)) if isinstance(percpu, list) and percpu else None
    if cpus is None:
        return None
    cpu_delta, system_delta = total - before, system - system_before
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * cpus * 100.0
    return 0.0


def memory_used(memory: Any) -> int | None:
    """Memory in use without the reclaimable page cache, as ``docker stats`` shows it.

    cgroup v1 reports ``total_inactive_file``, v2 ``inactive_file``; either is subtracted from
    ``usage`` when it is smaller.
    """
    usage = _num(memory, "usage")
    if usage is None:
        return None
    v1 = _num(memory, "stats", "total_inactive_file")
    if v1 is not None:
        return int(usage - v1) if v1 < usage else int(usage)
    v2 = _num(memory, "stats", "inactive_file")
    if v2 is not None and v2 < usage:
        return int(usage - v2)
    return int(usage)


def usage_of(raw: Any, previous_cpu: Any = None) -> Usage | None:
    """A stats document as :class:`Usage`; None when it is not one.

    A streamed document carries its own previous reading (``precpu_stats``); a one-shot one
    does not, so the caller passes the ``cpu_stats`` of its last poll as ``previous_cpu``.
    """
    if not isinstance(raw, Mapping):
        return None
    cpu = raw.get("cpu_stats")
    previous = raw.get("precpu_stats") if previous_cpu is None else previous_cpu
    memory = raw.get("memory_stats")
    limit = _num(memory, "limit")
    return Usage(
        cpu_percent(cpu, previous),
        memory_used(memory),
        int(limit) if limit is not None and limit > 0 else None,
    )


def gpu_memory_by_container(sample: GpuSample | None) -> dict[str, int]:
    """Bytes of GPU memory used by each container's processes, by container name.

    The GPU agent maps each process to its container (cgroup → id → name); processes without a
    container or without a memory figure are left out.
    """
    used: dict[str, int] = {}
    if sample is None:
        return used
    for process in sample.processes:
        if process.container_name and process.used_memory is not None:
            name = process.container_name
            used[name] = used.get(name, 0) + process.used_memory
    return used


# ---------------------------------------------------------------------- the watch


class _Stream:
    """One container's stats stream on a thread of its own; closing it ends the thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.response: Any = None
        self.closed = threading.Event()
        self.ended = threading.Event()

    def close(self) -> None:
        self.closed.set()
        response, self.response = self.response, None
        if response is not None:
            _close_response(response)


def _close_response(response: Any) -> None:
    # Over SSH the body rides a paramiko channel that urllib3 cannot interrupt; closing the
    # channel ends the blocked read. On a socket, shutting it down does the same.
    with contextlib.suppress(Exception):
        channel = getattr(response.raw._fp.fp, "channel", None)
        if channel is not None:
            channel.close()
    with contextlib.suppress(Exception):
        sock = response.raw._fp.fp.raw._sock
        sock.shutdown(2)
    with contextlib.suppress(Exception):
        response.close()


class StatsWatch:
    """Live usage of the containers it is told to watch on one engine, reported once per tick.

    ``client`` returns the host's Docker client (the one riding its SSH connection);
    ``report`` gets, at most once per ``tick`` seconds and only when something changed, the
    latest :class:`Usage` of every watched container. Call :meth:`run` on a thread; :meth:`watch`
    and :meth:`stop` from anywhere.
    """

    def __init__(
        self,
        client: Callable[[], Any],
        report: Callable[[dict[str, Usage]], None],
        *,
        max_streams: int,
        tick: float = TICK_S,
        spawn: Callable[[Callable[[], None], str], None] | None = None,
    ) -> None:
        self.client = client
        self.report = report
        self.max_streams = max_streams
        self.tick = tick
        self._spawn = spawn or _thread
        self._lock = threading.Lock()
        self._wanted: list[str] = []
        self._latest: dict[str, Usage] = {}
        self._dirty = False
        self._streams: dict[str, _Stream] = {}
        self._failed: dict[str, float] = {}
        self._previous_cpu: dict[str, Any] = {}
        self._turn = 0
        self._stop = threading.Event()
        self._wake = threading.Event()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def streaming(self) -> list[str]:
        with self._lock:
            return [n for n, s in self._streams.items() if not s.ended.is_set()]

    def watch(self, names: Iterable[str]) -> None:
        """Watch exactly ``names`` (running containers) from the next tick on."""
        wanted = list(dict.fromkeys(names))
        with self._lock:
            if wanted == self._wanted:
                return
            self._wanted = wanted
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            streams = list(self._streams.values())
            self._streams.clear()
        for stream in streams:
            stream.close()

    def run(self) -> None:
        last_report = -self.tick
        while not self._stop.is_set():
            started = time.monotonic()
            polled = self._arrange()
            answered = False
            if polled:
                # One polled container per turn, in rotation: a one-shot request waits for
                # dockerd's next collection (at most a second), so the streams' figures are
                # still reported every tick while the rest take turns.
                answered = self._poll(polled[self._turn % len(polled)])
                self._turn += 1
            if time.monotonic() - last_report >= self.tick * 0.9 and self._take_report():
                last_report = time.monotonic()
            self._wake.clear()
            # A failed poll (engine away) waits a whole tick rather than spin.
            pause = POLL_GAP_S if answered else self.tick
            self._wake.wait(max(0.0, pause - (time.monotonic() - started)))

    # ------------------------------------------------------------------ one turn

    def _arrange(self) -> list[str]:
        """Close the streams no longer wanted, open new ones up to the cap; the rest to poll."""
        with self._lock:
            wanted = list(self._wanted)
            for name in [n for n in self._streams if n not in wanted]:
                self._streams.pop(name).close()
            for name, stream in list(self._streams.items()):
                if stream.ended.is_set():
                    del self._streams[name]
            for name in [n for n in self._latest if n not in wanted]:
                del self._latest[name]
                self._dirty = True
            for name in [n for n in self._previous_cpu if n not in wanted]:
                del self._previous_cpu[name]
            now = time.monotonic()
            for name in wanted:
                if len(self._streams) >= self.max_streams:
                    break
                if name in self._streams or now - self._failed.get(name, -REOPEN_S) < REOPEN_S:
                    continue
                stream = _Stream(name)
                self._streams[name] = stream
                self._spawn(partial(self._follow, stream), f"stats:{name}")
            return [n for n in wanted if n not in self._streams]

    def _take_report(self) -> bool:
        with self._lock:
            if not self._dirty:
                return False
            self._dirty = False
            latest = dict(self._latest)
        self.report(latest)
        return True

    def _store(self, name: str, usage: Usage) -> None:
        with self._lock:
            if name in self._wanted and self._latest.get(name) != usage:
                self._latest[name] = usage
                self._dirty = True

    def _poll(self, name: str) -> bool:
        try:
            api = self.client().api
            raw = api.stats(name, stream=False, one_shot=True)
        except Exception:
            return False  # stopped meanwhile, or the engine is away: the listing says which
        cpu = raw.get("cpu_stats") if isinstance(raw, Mapping) else None
        previous = self._previous_cpu.get(name)
        self._previous_cpu[name] = cpu
        usage = usage_of(raw, previous_cpu=previous if previous is not None else {})
        if usage is not None:
            self._store(name, usage)
        return True

    def _follow(self, stream: _Stream) -> None:
        try:
            api = self.client().api
            response = api._get(
                api._url("/containers/{0}/stats", stream.name), params={"stream": True}, stream=True
            )
            api._raise_for_status(response)
            stream.response = response
            if stream.closed.is_set():
                _close_response(response)
                return
            for raw in api._stream_helper(response, decode=True):
                if stream.closed.is_set():
                    return
                usage = usage_of(raw)
                if usage is not None:
                    self._store(stream.name, usage)
        except Exception:
            # Closing the stream surfaces here as a socket error; any other failure (the
            # container stopped, the engine went away) is handled as an end, below.
            pass
        finally:
            stream.ended.set()
            if not stream.closed.is_set():
                # Not reopened for REOPEN_S; the container is polled meanwhile.
                with self._lock:
                    self._failed[stream.name] = time.monotonic()
                self._wake.set()


def _thread(target: Callable[[], None], name: str) -> None:
    threading.Thread(target=target, name=f"gpudesk-{name}", daemon=True).start()
