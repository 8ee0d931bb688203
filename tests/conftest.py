"""Shared fixtures: every test gets its own GPUDESK_HOME and HOME so nothing touches the user's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis fails an example that takes over 200 ms by default: a deadline tuned to a quiet
# machine, which a loaded 2-core one (the suite's target, busy neighbour included) exceeds.
settings.register_profile("gpudesk", deadline=None)
settings.load_profile("gpudesk")


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GPUDESK_HOME", str(home / ".config" / "gpudesk"))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    yield home
