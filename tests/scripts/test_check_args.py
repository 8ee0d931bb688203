"""GPUDESK_CHECK_ARGS: a bundled script only parses its arguments (gpudesk submit's dry run)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.util import SCRIPTS, TINY, env


def check(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    cwd.mkdir()
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{script}.py"), *args],
        env={**env(), "GPUDESK_CHECK_ARGS": "1"},
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("script", sorted(TINY))
def test_valid_arguments_pass_and_nothing_runs(script: str, tmp_path: Path) -> None:
    done = check(script, ["--steps", "20", *TINY[script]], tmp_path / "cwd")
    assert done.returncode == 0, done.stderr
    assert list((tmp_path / "cwd").iterdir()) == []  # no run folder, no metrics: nothing started


@pytest.mark.parametrize(
    ("args", "last_line"),
    [
        (["--stpes", "20"], "textcls.py: error: unrecognized arguments: --stpes 20"),
        (["--precision", "fp13"], "textcls.py: error: argument --precision: invalid choice"),
        (["--steps", "0"], "error: --steps must be >= 1"),
    ],
)
def test_bad_arguments_fail_with_the_parsers_line(
    args: list[str], last_line: str, tmp_path: Path
) -> None:
    done = check("textcls", args, tmp_path / "cwd")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(last_line)
    assert list((tmp_path / "cwd").iterdir()) == []
