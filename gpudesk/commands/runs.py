"""``gpudesk submit|runs|logs|stop-run``: training runs and their logs."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Adds this group's subcommands to the top-level parser."""
