"""The host-side run reader (payload/run_reader.py), run the way gpudesk runs it: `python3 -`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from gpudesk.core.runs.discovery import reader_source


def _read(spec: dict[str, object]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-", json.dumps(spec)],
        input=reader_source(),
        capture_output=True,
        check=True,
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
