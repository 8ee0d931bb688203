"""``gpudesk ps|launch|start|stop|restart|rm|ssh|jupyter``: dev containers on hosts."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Adds this group's subcommands to the top-level parser."""
