"""Following a run's log or a container's output with bounded memory.

A run's log (or another file on the GPU host) is read by the payload's host-side reader through
one exec channel of the host's connection (:mod:`gpudesk.core.logread`: no symlinks, regular
files only, a bounded tail, then truncation and rotation followed as ``tail -F`` does); a
container's output comes from the Docker API's log stream with ``tail=N``. The stream is read in
large chunks and split into lines in bulk, as bytes; lines are decoded only when read. They land
in a ring buffer bounded in lines and in bytes (and single lines are cut at 64 KiB, saying so),
so memory stays bounded whatever the log holds; a counter keeps the total number of lines seen.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from gpudesk.core import logread
from gpudesk.core.errors import GpudeskError
from gpudesk.core.logread import LogError
from gpudesk.core.service import Service

DEFAULT_TAIL = 200
DEFAULT_MAX_LINES = 10_000
DEFAULT_MAX_BYTES = 16 * 2**20  # a follower's buffer, whatever its lines' lengths
MAX_LINE_BYTES = 64 * 1024  # longer lines are cut, with a note saying so
FLUSH_INTERVAL = 0.05
FLUSH_LINES = 2_000

BatchCallback = Callable[[list[str], int], None]


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


def decode_lines(raw: list[bytes]) -> list[str]:
    """Raw lines to text in one pass (one decode for the batch, not one per line)."""
    if not raw:
        return []
    text = (b"\n".join(raw) + b"\n").decode("utf-8", "replace")
    return text.replace("\r\n", "\n").split("\n")[:-1]


class LineSplitter:
    """Byte chunks in, complete lines out, split in bulk; partial lines wait for the rest.

    A line longer than ``max_line`` bytes (a progress bar redrawn with ``\\r`` for hours, a
    binary dumped to stdout) is kept as its first ``max_line`` bytes plus a note saying it was
    cut there; the rest of it is skipped as it arrives, so memory stays bounded.
    """

    def __init__(self, max_line: int = MAX_LINE_BYTES) -> None:
        self.max_line = max_line
        self.cut_note = f" [... line cut at {max_line:,} bytes]".encode()
        self._partial = b""
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if self._skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                return []
            chunk = chunk[newline + 1 :]
            self._skipping = False
        data = self._partial + chunk if self._partial else chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(data) > self.max_line and max(map(len, lines), default=0) > self.max_line:
            lines = [self._cut(line) for line in lines]
        if len(self._partial) > self.max_line:
            lines.append(self._cut(self._partial))
            self._partial = b""
            self._skipping = True
        return lines

    def end(self) -> list[bytes]:
        """The last line, if the stream ended without a newline."""
        rest, self._partial = self._partial, b""
        return [self._cut(rest)] if rest else []

    def _cut(self, line: bytes) -> bytes:
        return line if len(line) <= self.max_line else line[: self.max_line] + self.cut_note


class LineBuffer:
    """The last lines, at most ``maxlen`` of them and ``max_bytes`` in all (the newest line
    always stays), and how many were ever added; kept as bytes, in the batches they arrived
    in, and decoded when read. Safe to share between threads."""

    def __init__(self, maxlen: int = DEFAULT_MAX_LINES, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        # Whole batches, so that a flood is evicted a batch at a time, not line by line.
        self._batches: deque[tuple[list[bytes], int]] = deque()
        self._maxlen = max(1, maxlen)
        self.max_bytes = max_bytes
        self._count = 0
        self.bytes = 0
        self.total = 0
        self.lock = threading.Lock()

    @property
    def maxlen(self) -> int:
        return self._maxlen

    def __len__(self) -> int:
        return self._count

    def extend_raw(self, batch: list[bytes]) -> None:
        if not batch:
            return
        with self.lock:
            self.total += len(batch)
            if len(batch) >= self._maxlen:  # a flood: only its tail can stay
                batch = batch[-self._maxlen :]
                self._batches.clear()
                self._count = self.bytes = 0
            size = sum(map(len, batch))
            self._batches.append((batch, size))
            self._count += len(batch)
            self.bytes += size
            self._evict()

    def _over(self, lines: int, size: int) -> bool:
        return lines > self._maxlen or (size > self.max_bytes and lines > 1)

    def _evict(self) -> None:
        batches = self._batches
        while self._over(self._count, self.bytes):
            old, old_size = batches[0]
            if len(batches) > 1 and (
                self._count - len(old) >= self._maxlen or self.bytes - old_size > self.max_bytes
            ):  # all of the oldest batch must go
                batches.popleft()
                self._count -= len(old)
                self.bytes -= old_size
                continue
            cut = dropped = 0
            while cut < len(old) and self._over(self._count - cut, self.bytes - dropped):
                dropped += len(old[cut])
                cut += 1
            self._count -= cut
            self.bytes -= dropped
            if cut == len(old):
                batches.popleft()
            else:
                batches[0] = (old[cut:], old_size - dropped)

    def _raw(self) -> list[bytes]:
        return [line for batch, _ in self._batches for line in batch]

    def extend(self, lines: Iterable[str]) -> None:
        self.extend_raw([line.encode("utf-8", "replace") for line in lines])

    def add(self, line: str) -> None:
        self.extend((line,))

    def snapshot(self) -> list[str]:
        with self.lock:
            raw = self._raw()
        return decode_lines(raw)

    def take(self) -> list[str]:
        """The lines held, emptied out (for handing on what arrived since the last take)."""
        with self.lock:
            raw = self._raw()
            self._batches.clear()
            self._count = self.bytes = 0
        return decode_lines(raw)

    def clear(self) -> None:
        with self.lock:
            self._batches.clear()
            self._count = self.bytes = 0


class LogFollower:
    """Follows one stream into a :class:`LineBuffer`; ``run()`` blocks, ``stop()`` ends it.

    ``open_stream`` returns a context manager yielding the stream: one with ``chunks()`` (raw
    bytes, as ``conn.open_lines`` gives) is split into lines in bulk, any other iterable is
    taken as lines of text; either has ``close()``. ``on_batch`` is called, from a helper
    thread, with the lines that arrived since the previous call (at most the buffer's size)
    and the running total.
    """

    def __init__(
        self,
        open_stream: Callable[[], Any],
        on_batch: BatchCallback | None = None,
        *,
        max_lines: int = DEFAULT_MAX_LINES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        flush_interval: float = FLUSH_INTERVAL,
    ) -> None:
        self.open_stream = open_stream
        self.on_batch = on_batch
        self.buffer = LineBuffer(max_lines, max_bytes)
        self.flush_interval = flush_interval
        self._pending = LineBuffer(max_lines, max_bytes)
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
        except GpudeskError as exc:
            # A failure with a message for the user (a refused file, a missing container) is
            # the follower's result, read from ``error``; it is not a crash of its thread.
            if not self._stop.is_set():
                self.error = str(exc) or type(exc).__name__
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

    def _consume(self, stream: Any) -> None:
        if not callable(getattr(stream, "chunks", None)):
            for line in stream:
                if self._stop.is_set():
                    return
                self._add([line.encode("utf-8", "replace")])
            return
        splitter = LineSplitter()
        for chunk in stream.chunks():
            if self._stop.is_set():
                return
            lines = splitter.feed(chunk)
            if lines:
                self._add(lines)
        self._add(splitter.end())

    def _add(self, lines: list[bytes]) -> None:
        if lines:
            self.buffer.extend_raw(lines)
            self._pending.extend_raw(lines)

    def _flush_loop(self) -> None:
        while not self.ended.wait(self.flush_interval):
            self._flush()

    def _flush(self) -> None:
        if not len(self._pending):
            return
        batch = self._pending.take()
        if batch and self.on_batch is not None:
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
    """Docker's log stream as lines (or raw ``chunks()``), with ``close()``."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def chunks(self) -> Iterator[bytes]:
        for chunk in self._stream:
            yield chunk if isinstance(chunk, bytes) else str(chunk).encode()

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


def file_opener(
    service: Service, path: str, lines: int, follow: bool = True, *, depth: int = 1
) -> Callable[[], Any]:
    """Open the host-side reader of ``path`` (see :func:`log_spec`) as one exec channel."""
    spec = logread.log_spec(
        path, lines, follow, depth, max_bytes=DEFAULT_MAX_BYTES, max_line=MAX_LINE_BYTES
    )
    return lambda: logread.framed(service, spec)


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
        # A run's log is checked from the workspace down: runs/<name>/train.log.
        depth = logread.RUN_LOG_DEPTH if target.kind is TargetKind.RUN else 1
        opener = file_opener(service, target.path, tail, follow, depth=depth)
    return LogFollower(opener, on_batch, max_lines=max(max_lines, tail))


def read_tail(service: Service, target: LogTarget, lines: int = DEFAULT_TAIL) -> list[str]:
    """The last ``lines`` lines, once, without following."""
    result = follower(service, target, tail=lines, follow=False, max_lines=max(1, lines))
    result.run()
    if result.error:
        raise LogError(result.error)
    return result.lines()
