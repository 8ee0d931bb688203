"""Child processes that a test interrupts with SIGINT, as Ctrl+C would.

pytest-xdist's workers ignore SIGINT, and an ignored signal stays ignored across fork and exec,
so a gpudesk started from a worker would never see KeyboardInterrupt. :func:`interruptible`
wraps a command so that it runs (same pid, through exec) with SIGINT at its default, as a shell
gives it to a foreground command. (No ``preexec_fn``: the test process has threads.)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

_RESET_AND_EXEC = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def interruptible(argv: Sequence[str]) -> list[str]:
    """``argv`` (its first item a path) run with SIGINT at its default disposition."""
    return [sys.executable, "-c", _RESET_AND_EXEC, *argv]
