"""A braille line chart of one numeric series (loss, an eval metric, throughput)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

# Braille dot bits by (column, row) within one 2x4 cell.
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
_AXIS_WIDTH = 9


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-2:
        return f"{value:.2e}"
    return f"{value:.4g}"


def braille_rows(
    values: Sequence[float], width: int, height: int
) -> tuple[list[str], float, float]:
    """The chart as ``height`` strings of ``width`` braille cells, plus the y range drawn."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite or width <= 0 or height <= 0:
        return [" " * max(width, 0)] * max(height, 0), 0.0, 0.0
    low, high = min(finite), max(finite)
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    cols, rows = width * 2, height * 4
    grid = [[0] * width for _ in range(height)]
    n = len(values)
    previous: int | None = None
    for x in range(cols):
        # Short series are interpolated between samples, long ones subsampled.
        position = x * (n - 1) / max(cols - 1, 1) if n > 1 else 0.0
        index = min(n - 1, int(position))
        value = values[index]
        if index + 1 < n and math.isfinite(value) and math.isfinite(values[index + 1]):
            value += (values[index + 1] - value) * (position - index)
        if not math.isfinite(value):
            previous = None
            continue
        y = round((value - low) / (high - low) * (rows - 1))
        span = range(min(y, previous), max(y, previous) + 1) if previous is not None else (y,)
        for dot_y in span:
            row = rows - 1 - dot_y
            grid[row // 4][x // 2] |= _DOTS[x % 2][row % 4]
        previous = y
    text = ["".join(chr(0x2800 + bits) if bits else " " for bits in line) for line in grid]
    return text, low, high


class LossChart(Widget):
    """Shows what it is given with :meth:`show`; never fetches anything."""

    DEFAULT_CSS = """
    LossChart {
        height: 8;
        min-height: 4;
        border: round $primary-darken-2;
        padding: 0 1;
    }
    """

    def __init__(self, title: str = "", *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.values: list[float] = []
        self.caption = ""
        self.border_title = title

    def show(self, values: Sequence[float], title: str | None = None, caption: str = "") -> None:
        self.values = list(values)
        if title is not None:
            self.border_title = title
        self.caption = caption
        self.border_subtitle = caption
        self.refresh()

    def render(self) -> Text:
        width = max(1, self.content_size.width - _AXIS_WIDTH)
        height = max(1, self.content_size.height)
        if not self.values:
            return Text("no data yet", style="dim")
        rows, low, high = braille_rows(self.values, width, height)
        out = Text()
        for i, row in enumerate(rows):
            if i == 0:
                axis = _label(high)
            elif i == len(rows) - 1:
                axis = _label(low)
            else:
                axis = ""
            out.append(f"{axis:>{_AXIS_WIDTH - 1}} ", style="dim")
            out.append(row, style="bold green")
            if i < len(rows) - 1:
                out.append("\n")
        return out
