"""Reading a file below a run folder on the GPU host through the payload's ``run_reader.py``.

The reader is piped into ``python3 -`` over one exec channel; it opens the file one path
component at a time without following symlinks, refuses anything but a regular file, reads a
bounded tail and, when following, what is appended until the channel closes. Its output is
framed (``D``ata, ``E``rror, ``Z`` done, each with a 4-byte length), so the file's contents can
never pass for its messages; :class:`Deframer` turns the frames back into the file's bytes.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from gpudesk.core import shell
from gpudesk.core.errors import GpudeskError
from gpudesk.core.service import Service

# What the host-side reader may send at once (it sends 256 KiB frames); more is a broken stream.
MAX_FRAME_BYTES = 4 * 2**20
# The most lines a tail asks for; a bigger -n means "all", which the byte bound limits anyway.
MAX_TAIL_LINES = 10**9
RUN_LOG_DEPTH = 3  # runs/<name>/train.log below the workspace


class LogError(GpudeskError):
    """A log could not be followed; the message is one sentence for the user."""


def log_spec(
    path: str, lines: int, follow: bool, depth: int = 1, *, max_bytes: int, max_line: int
) -> dict[str, Any]:
    """The host-side reader's request for ``path``: its last ``depth`` components are checked
    one by one on the host (no symlinks, a regular file at the end), the folder above them is
    the trusted root. The bytes read are bounded: at most ``lines`` lines of at most
    ``max_line`` bytes each (longer lines are cut by the follower anyway), never over
    ``max_bytes``."""
    parts = PurePosixPath(path).parts
    if len(parts) <= depth or parts[0] != "/":
        raise LogError(f"{path} is not an absolute path of a file in a folder on the GPU host.")
    lines = min(max(0, lines), MAX_TAIL_LINES)
    return {
        "root": str(PurePosixPath(*parts[:-depth])),
        "path": list(parts[-depth:]),
        "lines": lines,
        "max_bytes": min(max_bytes, (lines + 1) * (max_line + 1)),
        "follow": follow,
    }


def log_command(spec: dict[str, Any]) -> str:
    return shell.command(["python3", "-", json.dumps({"log": spec})])


class Deframer:
    """The host-side reader's frames in, the file's bytes out; its error frame raises
    :class:`LogError`, and ``finished`` says whether it said it was done."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.finished = False

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf
        buf += chunk
        out: list[bytes] = []
        start = 0
        while len(buf) - start >= 5:
            kind = bytes(buf[start : start + 1])
            (size,) = struct.unpack_from(">I", buf, start + 1)
            if kind not in (b"D", b"E", b"Z") or size > MAX_FRAME_BYTES:
                raise LogError("The host's log reader sent something unreadable; try again.")
            if len(buf) - start - 5 < size:
                break
            body = bytes(buf[start + 5 : start + 5 + size])
            start += 5 + size
            if kind == b"D":
                out.append(body)
            elif kind == b"E":
                raise LogError(body.decode("utf-8", "replace"))
            else:
                self.finished = True
        del buf[:start]
        return out


class _FramedStream:
    """The reader's channel as raw ``chunks()`` of the file's bytes, with ``close()``."""

    def __init__(self, stream: Any, follow: bool) -> None:
        self._stream = stream
        self._follow = follow

    def chunks(self) -> Iterator[bytes]:
        deframer = Deframer()
        for chunk in self._stream.chunks():
            yield from deframer.feed(chunk)
        if not self._follow and not deframer.finished:
            raise LogError("The log could not be read on the GPU host; is python3 there?")

    def close(self) -> None:
        self._stream.close()


@contextlib.contextmanager
def framed(service: Service, spec: dict[str, Any]) -> Iterator[_FramedStream]:
    from gpudesk.core.runs.discovery import reader_source

    with service.conn.open_lines(log_command(spec), stdin=reader_source()) as stream:
        yield _FramedStream(stream, bool(spec["follow"]))
