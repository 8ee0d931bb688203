"""The one shell command that creates a run (``START_SCRIPT``), run here with a real sh.

A run exists with its run.json and its process, or not at all; the name is a lock; an empty
folder an old interrupted submit left is taken over; files are not readable by others.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from gpudesk.core.runs import START_SCRIPT, derive_state, wrapper_script
from gpudesk.core.runs.model import ABANDON_AFTER, RunState


def start(root: Path, name: str, cmd: list[str]) -> subprocess.CompletedProcess[str]:
    record = json.dumps({"name": name})
    wrapper = wrapper_script(cmd, {"GPUDESK_RUN": name})
    return subprocess.run(
        ["sh", "-c", START_SCRIPT, "sh", str(root / "runs"), str(root / "staging"), name,
         record, wrapper],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.02)  # a file another process writes; nothing to wait on
    raise AssertionError(f"{path} never appeared")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_run_is_created_whole_with_private_modes(tmp_path: Path) -> None:
    done = start(tmp_path, "r1", ["sh", "-c", "echo hello; echo data > out.txt"])
    assert done.returncode == 0, done.stderr
    run = tmp_path / "runs" / "r1"
    assert json.loads((run / "run.json").read_text()) == {"name": "r1"}
    assert wait_for(run / "exit_code") == "0"
    assert (run / "train.log").read_text() == "hello\n"
    assert int(wait_for(run / "pid")) > 1
    assert mode(run) == 0o750
    for name in ("run.json", "train.log", "pid", "exit_code", "out.txt"):
        assert mode(run / name) & 0o007 == 0, name  # nothing for other accounts
    assert mode(run / "run.json") == 0o640
    # Nothing is left in staging: the folder was renamed into place.
    assert list((tmp_path / "staging").iterdir()) == []


def test_the_name_is_a_lock_and_an_empty_leftover_is_taken_over(tmp_path: Path) -> None:
    assert start(tmp_path, "r1", ["true"]).returncode == 0
    wait_for(tmp_path / "runs" / "r1" / "exit_code")
    again = start(tmp_path, "r1", ["touch", "second"])
    assert again.returncode == 17
    assert not (tmp_path / "runs" / "r1" / "second").exists()
    assert list((tmp_path / "staging").iterdir()) == []

    # An empty folder (what an interrupted submit of an older gpudesk left) blocks nothing.
    (tmp_path / "runs" / "r2").mkdir()
    assert start(tmp_path, "r2", ["true"]).returncode == 0
    assert wait_for(tmp_path / "runs" / "r2" / "exit_code") == "0"


def test_a_stop_before_the_pid_keeps_the_run_from_starting(tmp_path: Path) -> None:
    # stop-run writes `stopped` first; a wrapper that starts after that must not run the job.
    runs = tmp_path / "runs"
    (runs / "r3").mkdir(parents=True)
    (runs / "r3" / "stopped").write_text("1\n")
    wrapper = wrapper_script(["touch", "ran"], {})
    subprocess.run(["sh", "-c", wrapper], cwd=runs / "r3", check=True, timeout=30)
    assert (runs / "r3" / "pid").exists() and not (runs / "r3" / "ran").exists()


@pytest.mark.parametrize(
    ("waited", "expected"),
    [(None, RunState.STARTING), (1.0, RunState.STARTING), (ABANDON_AFTER + 1, RunState.ABANDONED)],
)
def test_a_run_without_a_pid_is_abandoned_after_a_while(
    waited: float | None, expected: RunState
) -> None:
    def state(stopped: bool) -> RunState:
        return derive_state(
            exit_code=None,
            stopped=stopped,
            alive=None,
            container_running=True,
            has_pid=False,
            waited=waited,
        )

    assert state(stopped=False) is expected
    # stop-run's marker turns an abandoned (or a not yet started) run into a stopped one.
    assert state(stopped=True) is RunState.STOPPED


def test_staging_leftovers_are_cleaned_only_when_old(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    old, fresh = staging / "x.old", staging / "y.new"
    old.mkdir(parents=True)
    fresh.mkdir()
    an_hour_ago = time.time() - 2 * 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    assert start(tmp_path, "r4", ["true"]).returncode == 0
    assert not old.exists() and fresh.exists()
