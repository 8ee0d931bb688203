"""Shared training runs for the bundled-script tests: a test that only needs a trained and
exported model of a task reuses one run per session instead of training its own."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.scripts.util import STEPS, run_script

Trained = tuple[Path, subprocess.CompletedProcess[str]]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Under `pytest -n 2 --dist loadgroup` (scripts/test) the tests sharing the runs go to one
    # worker, so each run is still made once.
    for item in items:
        if "trained_and_exported" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("trained-and-exported"))


@pytest.fixture(scope="session")
def trained_and_exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Trained]:
    """The out folder and process of one tiny run per task: trained at the default precision
    (fp32 on CPU), evaluated and checkpointed at its last step, then exported."""
    runs: dict[str, Trained] = {}

    def get(task: str) -> Trained:
        if task not in runs:
            out = tmp_path_factory.mktemp(f"trained-{task}") / "run"
            steps = str(STEPS[task])
            r = run_script(
                task, out, "--steps", steps, "--log-every", "1", "--eval-every", steps,
                "--ckpt-every", steps, "--export", "--lr", "2e-3",
            )  # fmt: skip
            runs[task] = (out, r)
        return runs[task]

    return get
