"""Deadlines for waiting on training runs, derived from the speed the run shows.

A fixed deadline tuned on one CPU fails on a slower or busier one (bf16 on CPU ran 28x slower
on another machine of the same kind). Instead, a wait fails only when the run stops making
progress: until the first progress it may take ``startup`` seconds (process start, torch
import, data loading, all of which vary with the machine); after that, a stall is
``factor`` times the longest gap seen between two progress marks, never less than ``floor``.
A run that keeps moving, however slowly, is never failed by this; the test's pytest timeout
is the outer bound.
"""

from __future__ import annotations

import time
from collections.abc import Hashable

STARTUP_S = 300.0
FACTOR = 10.0
FLOOR_S = 60.0


class Pace:
    def __init__(
        self, startup: float = STARTUP_S, factor: float = FACTOR, floor: float = FLOOR_S
    ) -> None:
        self.startup, self.factor, self.floor = startup, factor, floor
        self.started = self.last_change = time.monotonic()
        self.marks = 0
        self.longest_gap = 0.0
        self._last: Hashable = object()

    def saw(self, mark: Hashable) -> None:
        """Record what the run shows now (a step number, a line count); a change is progress."""
        if mark == self._last:
            return
        now = time.monotonic()
        if self.marks:
            self.longest_gap = max(self.longest_gap, now - self.last_change)
        self._last, self.last_change = mark, now
        self.marks += 1

    def allowance(self) -> float:
        if self.marks < 2:  # no gap measured yet
            return self.startup
        return max(self.floor, self.factor * self.longest_gap)

    def stalled(self) -> bool:
        return time.monotonic() - self.last_change > self.allowance()

    def describe(self) -> str:
        idle = time.monotonic() - self.last_change
        return (
            f"no progress for {idle:.0f} s (allowed {self.allowance():.0f} s: "
            f"{self.marks} progress marks, longest gap {self.longest_gap:.1f} s)"
        )


# One remote operation that shows no progress of its own (a submit, the first engine listing)
# on a loaded 2-core machine: seen here at a few seconds, allowed many times that.
SLOW_OP_S = 180.0
