"""Reads run folders on the GPU host: lists them all, or shows/follows one run's log.

Shipped by gpudesk (``core/runs/discovery.py`` and ``core/logs.py``) like the GPU agent: its
source is piped into ``python3 - SPEC`` on the host over SSH, nothing is installed there.
Standard library only and Python 3.8 compatible (modern typing syntax only in annotations), so
it runs with whatever Python the host has.

Everything in a run folder was written by a container and is hostile: this runs as the SSH user
(often root), so a ``train.log`` that is a symlink to ``/etc/shadow``, a FIFO, or a device must
never be read. Every path below the trusted root (the workspace the operator chose) is opened
one component at a time relative to its parent with ``O_NOFOLLOW`` (directories with
``O_DIRECTORY``, files with ``O_NONBLOCK`` and a regular-file check before and after the open),
so nothing outside the run folder is reached; every read is bounded in bytes, and a listing
ends itself after ``deadline`` seconds.

``SPEC`` is JSON, one of:

* listing: ``workspaces`` (host paths), ``detail`` (run names whose whole metrics and log tail
  are wanted), ``tail_bytes``, ``detail_bytes``, ``log_lines`` and ``deadline``. Output:
  ``{"now": <host time>, "runs": [<one object per run folder with a run.json>], "skipped": N}``.
* log: ``{"log": {"root": DIR, "path": [COMPONENT, ...], "lines": N, "max_bytes": B,
  "follow": BOOL}}``: the last ``lines`` lines (from at most ``max_bytes`` bytes) of the
  regular file ``root/path...``, then, when following, whatever is appended (following
  truncation and rotation, as ``tail -F``) until the reader on the other end goes away. The
  output is framed, so nothing in the file can pass for a message from here: ``D`` + 4-byte
  length + data; ``E`` + 4-byte length + a one-sentence error, after which it exits; ``Z`` +
  four zero bytes when a read without following is complete.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import stat
import struct
import sys
import time
from typing import Any

LOG_TAIL_BYTES = 65536
RECORD_BYTES = 256 * 1024  # run.json; pid, exit_code and the like are far smaller
SMALL_BYTES = 4096
MAX_RUN_FOLDERS = 10_000  # per workspace; more are reported as skipped
OUTPUT_BUDGET = 64 * 2**20  # bytes of file contents in one listing
DEFAULT_DEADLINE = 20
CHUNK = 256 * 1024
POLL_S = 0.1
POLL_BUSY_S = 0.005
REOPEN_S = 1.0

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | _CLOEXEC


class Refused(Exception):
    """A container-written path that is not what it must be (a symlink, FIFO, device...)."""


def _component(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise Refused(f"{name!r} is not a plain file name")
    return name


def open_dir(name: str, dir_fd: int) -> int:
    """The directory ``name`` inside ``dir_fd``; a symlink or anything else is refused."""
    try:
        return os.open(_component(name), _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise Refused(f"{name} is not a folder") from exc
        raise


def open_regular(name: str, dir_fd: int) -> int:
    """The regular file ``name`` inside ``dir_fd``, opened without following a symlink and
    without blocking on a FIFO; anything but a regular file is refused, checked before the
    open (a device is never opened) and again on what was opened (the name may have changed)."""
    before = os.stat(_component(name), dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(before.st_mode):
        raise Refused(f"{name} is not a regular file")
    fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise Refused(f"{name} is not a regular file")
    return fd


def open_path(root: str, parts: list[str]) -> int:
    """``root/parts...``: ``root`` is trusted (the operator's choice), every part below it is
    checked; the last part is a regular file."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    try:
        for part in parts[:-1]:
            inner = open_dir(part, fd)
            os.close(fd)
            fd = inner
        return open_regular(parts[-1], fd)
    finally:
        os.close(fd)


def read_fd(fd: int, limit: int) -> bytes:
    """The first ``limit`` bytes of an open regular file."""
    return os.pread(fd, limit, 0)


def tail_fd(fd: int, limit: int) -> bytes:
    """The last ``limit`` bytes of an open regular file, starting at a line boundary."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, limit, max(0, size - limit))
    if size > limit:
        data = data.split(b"\n", 1)[-1]
    return data


class Folder:
    """One run folder, opened without following symlinks; its files are read through it."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, name: str, limit: int, tail: bool = False) -> tuple[str | None, float | None]:
        """The file's text (its first, or with ``tail`` last, ``limit`` bytes) and its mtime;
        (None, None) if it is missing or refused."""
        try:
            fd = open_regular(name, self.fd)
        except (OSError, Refused):
            return None, None
        try:
            data = tail_fd(fd, limit) if tail else read_fd(fd, limit)
            return data.decode("utf-8", "replace"), os.fstat(fd).st_mtime
        except OSError:
            return None, None
        finally:
            os.close(fd)

    def has(self, name: str) -> bool:
        try:
            os.stat(_component(name), dir_fd=self.fd, follow_symlinks=False)
        except (OSError, Refused):
            return False
        return True


def _run_names(runs_fd: int) -> tuple[list[str], int]:
    names: list[str] = []
    skipped = 0
    with os.scandir(runs_fd) as entries:
        for entry in entries:
            if len(names) < MAX_RUN_FOLDERS:
                names.append(entry.name)
            else:
                skipped += 1
    return sorted(names), skipped


def read_runs(spec: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every run folder's contents, and how many were skipped (over the limits)."""
    out: list[dict[str, Any]] = []
    skipped = 0
    budget = OUTPUT_BUDGET
    for ws in spec["workspaces"]:
        base = os.path.expanduser(ws)
        root = os.path.join(base, "runs")
        try:
            ws_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
        except OSError:
            continue
        try:
            runs_fd = open_dir("runs", ws_fd)
        except (OSError, Refused):
            continue
        finally:
            os.close(ws_fd)
        try:
            names, over = _run_names(runs_fd)
            skipped += over
            for name in names:
                if budget <= 0:
                    skipped += 1
                    continue
                try:
                    folder = Folder(open_dir(name, runs_fd))
                except (OSError, Refused):
                    continue
                try:
                    item = _read_run(folder, spec, ws, os.path.join(root, name), name)
                finally:
                    os.close(folder.fd)
                if item is not None:
                    budget -= sum(len(v) for v in item.values() if isinstance(v, str))
                    budget -= sum(len(line) for line in item.get("log") or [])
                    out.append(item)
        finally:
            os.close(runs_fd)
    return out, skipped


def _read_run(
    folder: Folder, spec: dict[str, Any], ws: str, path: str, name: str
) -> dict[str, Any] | None:
    meta, _ = folder.read("run.json", RECORD_BYTES)
    if meta is None:
        return None
    detail = name in spec.get("detail", [])
    limit = int(spec["detail_bytes"] if detail else spec["tail_bytes"])
    exit_code, ended = folder.read("exit_code", SMALL_BYTES)
    item: dict[str, Any] = {
        "workspace": ws,
        "dir": path,
        "name": name,
        "run": meta,
        "pid": folder.read("pid", SMALL_BYTES)[0],
        "exit_code": exit_code,
        "ended": ended,
        "stopped": folder.has("stopped"),
        "metrics": folder.read("metrics.jsonl", limit, tail=True)[0],
    }
    if detail:
        log = folder.read("train.log", LOG_TAIL_BYTES, tail=True)[0] or ""
        item["log"] = log.splitlines()[-int(spec["log_lines"]) :]
    return item


# ---------------------------------------------------------------------- one log


def _frame(kind: bytes, data: bytes) -> None:
    view = memoryview(kind + struct.pack(">I", len(data)) + data)
    while view:
        view = view[os.write(1, view) :]


def _send(data: bytes) -> None:
    for start in range(0, len(data), CHUNK):
        _frame(b"D", data[start : start + CHUNK])


def last_lines(fd: int, lines: int, max_bytes: int) -> tuple[bytes, int]:
    """The last ``lines`` lines of the file (from at most its last ``max_bytes`` bytes) and
    the offset where reading goes on."""
    size = os.fstat(fd).st_size
    start = max(0, size - max_bytes)
    data = os.pread(fd, size - start, start)
    end = len(data)
    if lines <= 0:
        return b"", start + end
    idx = end - 1 if data.endswith(b"\n") else end
    for _ in range(lines):
        idx = data.rfind(b"\n", 0, idx)
        if idx < 0:
            break
    return data[idx + 1 :] if idx >= 0 else data, start + end


def _reader_gone() -> bool:
    """True once the other end of stdout is closed (the operator stopped following)."""
    poller = select.poll()
    poller.register(1, 0)  # only the conditions always reported: error and hang-up
    return any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, ev in poller.poll(0))


def _identity(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _drain(fd: int, pos: int) -> int:
    """Sends what was appended to ``fd`` since ``pos`` (from the start if it was truncated)."""
    if os.fstat(fd).st_size < pos:
        pos = 0
    while True:
        data = os.pread(fd, CHUNK, pos)
        if not data:
            return pos
        _send(data)
        pos += len(data)


def show_log(spec: dict[str, Any]) -> int:
    root, parts = str(spec["root"]), [str(p) for p in spec["path"]]
    shown = "/".join(parts)
    follow = bool(spec.get("follow"))
    fd: int | None = None
    pos = 0
    try:
        fd = open_path(root, parts)
    except FileNotFoundError:
        if not follow:
            _frame(b"Z", b"")
            return 0  # no log yet: nothing to show
    except Refused:
        _frame(
            b"E",
            f"{shown} is not a regular file inside the run folder (a symlink, FIFO or"
            " device); gpudesk does not read it.".encode(),
        )
        return 3
    except OSError as exc:
        _frame(b"E", f"Cannot open {shown} on the host: {exc.strerror or exc}.".encode())
        return 3
    if fd is not None:
        data, pos = last_lines(fd, int(spec["lines"]), int(spec["max_bytes"]))
        _send(data)
    if not follow:
        _frame(b"Z", b"")
        return 0
    last_check = time.monotonic()
    delay = POLL_S
    while not _reader_gone():
        moved = False
        if fd is not None:
            before, pos = pos, _drain(fd, pos)
            moved = pos != before
        if fd is None or time.monotonic() - last_check >= REOPEN_S:
            last_check = time.monotonic()
            # Follow the name, as tail -F: a rotated log is read to its end, then the new one.
            try:
                new = open_path(root, parts)
            except (FileNotFoundError, NotADirectoryError):
                new = None
            except Refused:
                _frame(
                    b"E",
                    f"{shown} stopped being a regular file inside the run folder; gpudesk"
                    " does not follow it.".encode(),
                )
                return 3
            if new is not None and fd is not None and _identity(new) == _identity(fd):
                os.close(new)
            elif new is not None:
                if fd is not None:
                    _drain(fd, pos)
                    os.close(fd)
                fd, pos = new, 0
        # A log being written is polled again soon (tail -F hears of a write at once through
        # inotify); a quiet one backs off to POLL_S.
        delay = POLL_BUSY_S if moved else min(POLL_S, delay * 2)
        time.sleep(delay)
    return 0


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    try:
        if "log" in spec:
            return show_log(spec["log"])
        # Whatever the host's disks do, a listing ends: the default action of SIGALRM is to
        # exit, so a read stuck on a network file system cannot outlive the operator's wait.
        signal.alarm(int(spec.get("deadline") or DEFAULT_DEADLINE))
        runs, skipped = read_runs(spec)
        sys.stdout.write(json.dumps({"now": time.time(), "runs": runs, "skipped": skipped}))
    except BrokenPipeError:
        return 0  # the operator went away
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
