"""Following a run's log or a container's output with bounded memory.

A followed file is read by ``tail -n N -F`` on the GPU host through one exec channel of the
host's connection (``-F`` follows truncation and rotation and never reads the whole file); a
container's output comes from the Docker API's log stream with ``tail=N``. Lines land in a ring
buffer (:class:`collections.deque` with ``maxlen``), so memory stays bounded whatever the log's
size; a counter keeps the total number of lines seen.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gpudesk.core import shell
from gpudesk.core.errors import GpudeskError
from gpudesk.core.service import Service

DEFAULT_TAIL = 200
DEFAULT_MAX_LINES = 10_000
FLUSH_INTERVAL = 0.05
FLUSH_LINES = 2_000

BatchCallback = Callable[[list[str], int], None]


class LogError(GpudeskError):
    """A log could not be followed; the message is one sentence for the user."""


class TargetKind(StrEnum):
    RUN = "run"
    CONTAINER = "container"
    FILE = "file"


@dataclass(frozen=True)
class LogTarget:
    """What to follow: a run (by name), a container's output, or a file on the GPU host."""

    kind: TargetKind
    name: str
    path: str = ""  # the file on the GPU host, for runs (once resolved) and files
    in_container: str = ""  # for runs: which container, when several have one of that name

    @classmethod
    def run(cls, name: str, path: str = "", container: str = "") -> LogTarget:
        return cls(TargetKind.RUN, name, path, container)

    @classmethod
    def container(cls, name: str) -> LogTarget:
        """A container's own output (its main process's stdout and stderr)."""
        return cls(TargetKind.CONTAINER, name)

    @classmethod
    def file(cls, path: str) -> LogTarget:
        return cls(TargetKind.FILE, path, path)

    @property
    def title(self) -> str:
        return f"{self.kind.value} {self.name}"


def tail_command(path: str, lines: int, follow: bool = True) -> str:
    argv = ["tail", "-n", str(max(0, lines))]
    if follow:
        argv.append("-F")
    return shell.command([*argv, "--", path])


class LineBuffer:
    """The last ``maxlen`` lines and how many were ever added; safe to share between threads."""

    def __init__(self, maxlen: int = DEFAULT_MAX_LINES) -> None:
        self.lines: deque[str] = deque(maxlen=maxlen)
        self.total = 0
        self.lock = threading.Lock()

    @property
    def maxlen(self) -> int:
        return self.lines.maxlen or 0

    def extend(self, lines: Iterable[str]) -> None:
        batch = list(lines)
        with self.lock:
            self.lines.extend(batch)
            self.total += len(batch)

    def add(self, line: str) -> None:
        with self.lock:
            self.lines.append(line)
            self.total += 1

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.lines)

    def clear(self) -> None:
        with self.lock:
            self.lines.clear()


class LogFollower:
    """Follows one stream into a :class:`LineBuffer`; ``run()`` blocks, ``stop()`` ends it.

    ``open_stream`` returns a context manager yielding an iterable of lines with ``close()``
    (as ``conn.open_lines`` does). ``on_batch`` is called, from a helper thread, with the lines
    that arrived since the previous call (at most the buffer's size) and the running total.
    """

    def __init__(
        self,
        open_stream: Callable[[], Any],
        on_batch: BatchCallback | None = None,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.open_stream = open_stream
        self.on_batch = on_batch
        self.buffer = LineBuffer(max_lines)
        self.flush_interval = flush_interval
        self._pending: deque[str] = deque(maxlen=max_lines)
        self._pending_lock = threading.Lock()
        self._stop = threading.Event()
        self._stream: Any = None
        self._stream_lock = threading.Lock()
        self.ended = threading.Event()
        self.error: str | None = None

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    @property
    def total(self) -> int:
        return self.buffer.total

    def lines(self) -> list[str]:
        return self.buffer.snapshot()

    def run(self) -> None:
        flusher = threading.Thread(target=self._flush_loop, name="gpudesk-log-flush", daemon=True)
        flusher.start()
        try:
            with self.open_stream() as stream:
                with self._stream_lock:
                    self._stream = stream
                if self._stop.is_set():
                    stream.close()
                    return
                self._consume(stream)
        except Exception as exc:
            if not self._stop.is_set():
                self.error = str(exc) or type(exc).__name__
                raise
        finally:
            with self._stream_lock:
                self._stream = None
            self.ended.set()
            flusher.join(timeout=2)
            self._flush()

    def _consume(self, stream: Iterable[str]) -> None:
        buffer, pending = self.buffer, self._pending
        for line in stream:
            if self._stop.is_set():
                return
            with buffer.lock:
                buffer.lines.append(line)
                buffer.total += 1
            with self._pending_lock:
                pending.append(line)

    def _flush_loop(self) -> None:
        while not self.ended.wait(self.flush_interval):
            self._flush()

    def _flush(self) -> None:
        with self._pending_lock:
            if not self._pending:
                return
            batch = list(self._pending)
            self._pending.clear()
        if self.on_batch is not None:
            self.on_batch(batch, self.buffer.total)

    def stop(self) -> None:
        """End :meth:`run` from any thread by closing its channel."""
        self._stop.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()

    def wait(self, timeout: float | None = None) -> bool:
        return self.ended.wait(timeout)


class _DockerLines:
    """Docker's log stream as lines, with ``close()``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[str]:
        partial = b""
        for chunk in self._stream:
            data = partial + (chunk if isinstance(chunk, bytes) else str(chunk).encode())
            *complete, partial = data.split(b"\n")
            for raw in complete:
                yield raw.decode("utf-8", "replace").rstrip("\r")
        if partial:
            yield partial.decode("utf-8", "replace").rstrip("\r")

    def close(self) -> None:
        self._stream.close()


class _Opened:
    """A context manager around an already opened line stream."""

    def __init__(self, lines: _DockerLines) -> None:
        self.lines = lines

    def __enter__(self) -> _DockerLines:
        return self.lines

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.lines.close()


def file_opener(service: Service, path: str, lines: int, follow: bool = True) -> Callable[[], Any]:
    """Open ``tail -n N [-F] path`` on the GPU host as one exec channel."""
    cmd = tail_command(path, lines, follow)
    return lambda: service.conn.open_lines(cmd)


def container_opener(
    service: Service, name: str, lines: int, follow: bool = True
) -> Callable[[], Any]:
    def open_() -> _Opened:
        import docker.errors

        try:
            container = service.docker().containers.get(name)
            stream = container.logs(stream=True, follow=follow, tail=lines)
        except docker.errors.NotFound as exc:
            raise LogError(f"There is no container named {name} on this host.") from exc
        except Exception as exc:
            raise LogError(f"Could not read the output of {name}: {exc}.") from exc
        return _Opened(_DockerLines(stream))

    return open_


def resolve(service: Service, target: LogTarget) -> LogTarget:
    """Fill in a run target's log path (on the GPU host) from its run folder."""
    if target.kind is not TargetKind.RUN or target.path:
        return target
    from gpudesk.core.runs import get_run

    run = get_run(service, target.name, container=target.in_container or None, detail=False)
    return LogTarget.run(run.name, run.log_path, run.container)


def follower(
    service: Service,
    target: LogTarget,
    on_batch: BatchCallback | None = None,
    *,
    tail: int = DEFAULT_TAIL,
    follow: bool = True,
    max_lines: int = DEFAULT_MAX_LINES,
) -> LogFollower:
    """A follower for ``target`` on ``service``'s host; resolve run targets first."""
    if target.kind is TargetKind.CONTAINER:
        opener = container_opener(service, target.name, tail, follow)
    else:
        if not target.path:
            target = resolve(service, target)
        opener = file_opener(service, target.path, tail, follow)
    return LogFollower(opener, on_batch, max_lines=max(max_lines, tail))


def read_tail(service: Service, target: LogTarget, lines: int = DEFAULT_TAIL) -> list[str]:
    """The last ``lines`` lines, once, without following."""
    result = follower(service, target, tail=lines, follow=False, max_lines=max(1, lines))
    result.run()
    return result.lines()
