"""The host-side run reader (payload/run_reader.py), run the way gpudesk runs it: `python3 -`."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

from gpudesk.core.runs.discovery import reader_source


def _read(spec: dict[str, object]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-", json.dumps(spec)],
        input=reader_source(),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_reads_run_folders_and_tails_from_a_line_boundary(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"name": "a"}')
    (run / "pid").write_text("42\n")
    (run / "exit_code").write_text("0\n")
    lines = [json.dumps({"step": i}) for i in range(100)]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (run / "train.log").write_text("".join(f"line {i}\n" for i in range(10)))
    (tmp_path / "runs" / "no-record").mkdir()  # no run.json: not a run
    spec = {
        "workspaces": [str(tmp_path), str(tmp_path / "missing")],
        "detail": ["a"],
        "tail_bytes": 50,
        "detail_bytes": 50,
        "log_lines": 3,
    }
    result = _read(spec)
    runs = result["runs"]
    assert isinstance(runs, list) and len(runs) == 1
    item = runs[0]
    assert item["name"] == "a" and item["pid"] == "42\n" and item["exit_code"] == "0\n"
    assert item["stopped"] is False and isinstance(item["ended"], float)
    # The tail drops the torn first line: every line left is whole and the last ones are kept.
    tail = item["metrics"].splitlines()
    assert tail and tail[-1] == lines[-1]
    assert all(line in lines for line in tail)
    assert len(item["metrics"].encode()) <= 50
    assert item["log"] == ["line 7", "line 8", "line 9"]


def test_without_detail_there_is_no_log(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "b"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    (run / "stopped").write_text("1")
    spec = {
        "workspaces": [str(tmp_path)],
        "detail": [],
        "tail_bytes": 10,
        "detail_bytes": 10,
        "log_lines": 3,
    }
    (item,) = _read(spec)["runs"]  # type: ignore[misc]
    assert "log" not in item and item["stopped"] is True and item["metrics"] is None
    assert item["pid"] is None and item["ended"] is None


def _hostile_run(tmp_path: Path, secret: Path) -> Path:
    run = tmp_path / "runs" / "evil"
    run.mkdir(parents=True)
    (run / "run.json").write_text('{"name": "evil"}')
    (run / "train.log").symlink_to(secret)
    os.mkfifo(run / "metrics.jsonl")
    (run / "pid").symlink_to("/dev/zero")
    (run / "exit_code").symlink_to(secret)
    return run


def test_symlinks_fifos_and_devices_in_a_run_folder_are_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    _hostile_run(tmp_path / "ws", secret)
    # A whole run folder, and a runs folder, that point elsewhere are not runs at all.
    elsewhere = tmp_path / "elsewhere" / "runs" / "other"
    elsewhere.mkdir(parents=True)
    (elsewhere / "run.json").write_text('{"name": "other"}')
    (tmp_path / "ws" / "runs" / "linked").symlink_to(elsewhere)
    (tmp_path / "ws2").mkdir()
    (tmp_path / "ws2" / "runs").symlink_to(elsewhere.parent)
    spec = {
        "workspaces": [str(tmp_path / "ws"), str(tmp_path / "ws2")],
        "detail": ["evil"],
        "tail_bytes": 50,
        "detail_bytes": 50,
        "log_lines": 3,
    }
    started = time.monotonic()
    result = _read(spec)
    assert time.monotonic() - started < 30  # the FIFO did not block (it would, forever)
    (item,) = result["runs"]  # type: ignore[misc]
    assert item["name"] == "evil"
    assert item["log"] == [] and item["metrics"] is None
    assert item["pid"] is None and item["exit_code"] is None and item["ended"] is None
    assert "SECRET" not in json.dumps(result)


def _log(spec: dict[str, object]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-", json.dumps({"log": spec})],
        input=reader_source(),
        capture_output=True,
        timeout=60,
        check=False,
    )


def _frames(out: bytes) -> list[tuple[bytes, bytes]]:
    frames = []
    while out:
        (size,) = struct.unpack(">I", out[1:5])
        frames.append((out[:1], out[5 : 5 + size]))
        out = out[5 + size :]
    return frames


def test_a_log_is_tailed_from_a_regular_file_and_a_symlink_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    run = _hostile_run(tmp_path, secret)
    (run / "ok.log").write_text("".join(f"line {i}\n" for i in range(100)))
    spec = {"root": str(tmp_path), "lines": 2, "max_bytes": 1 << 20, "follow": False}
    done = _log({**spec, "path": ["runs", "evil", "ok.log"]})
    assert done.returncode == 0
    frames = _frames(done.stdout)
    assert frames[-1] == (b"Z", b"")
    assert b"".join(body for kind, body in frames if kind == b"D") == b"line 98\nline 99\n"
    for name in ("train.log", "metrics.jsonl", "pid"):  # a symlink, a FIFO, a link to a device
        refused = _log({**spec, "path": ["runs", "evil", name]})
        assert refused.returncode == 3
        ((kind, body),) = _frames(refused.stdout)
        assert kind == b"E" and b"not a regular file" in body and b"SECRET" not in body
    # `..` or a symlinked folder on the way cannot lead out of the run folder either.
    (tmp_path / "runs" / "linked").symlink_to(run)
    for path in (["runs", "linked", "ok.log"], ["runs", "..", "secret"]):
        assert _log({**spec, "path": path}).returncode == 3
