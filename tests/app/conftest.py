"""What every app test shares."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gpudesk.app.widgets import container_table
from tests.app.test_host_containers import STARTED


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """UP is computed when drawn: pin the clock 5h07m after the recorded containers started,
    so a screen drawn today and one drawn next month are the same."""
    monkeypatch.setattr(container_table, "clock", lambda: STARTED + timedelta(hours=5, minutes=7))
