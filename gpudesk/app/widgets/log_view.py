"""A log pane that renders only its visible lines from a ring buffer of the last N lines."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from gpudesk.app.plain import last_frame, visible

DEFAULT_MAX_LINES = 10_000
_MATCH = Style(reverse=True, bold=True)
_HIT = Style(underline=True)


class LogView(ScrollView, can_focus=True):
    """Auto-follows the end until the user scrolls up; then counts the lines that arrive."""

    DEFAULT_CSS = """
    LogView {
        height: 1fr;
        background: $surface;
    }
    """

    following: reactive[bool] = reactive(True)
    unseen: reactive[int] = reactive(0)

    def __init__(self, max_lines: int = DEFAULT_MAX_LINES, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: deque[str] = deque(maxlen=max_lines)
        self.total = 0
        self._widest = 0
        self.search = ""
        self.match: int | None = None  # index into self.lines
        self._programmatic = False

    @property
    def first_line_number(self) -> int:
        """1-based number, in the whole log, of the oldest line still held."""
        return self.total - len(self.lines) + 1

    def append(self, lines: Iterable[str], total: int | None = None) -> None:
        """Add lines; ``total`` is the source's own count, which includes any lines it dropped."""
        # A log is the container's: a progress bar's line keeps its last frame (as a terminal
        # shows it) and every control character is drawn visibly, never sent to the terminal.
        batch = [visible(last_frame(line).expandtabs(4)) for line in lines]
        if not batch:
            return
        arrived = max(len(batch), total - self.total) if total is not None else len(batch)
        maxlen = self.lines.maxlen or len(batch)
        dropped = max(0, len(self.lines) + len(batch) - maxlen)
        self.lines.extend(batch)
        self.total += arrived
        self._widest = max(self._widest, *(len(line) for line in batch[-maxlen:]))
        if self.match is not None:
            self.match = self.match - dropped if self.match >= dropped else None
        self.virtual_size = Size(self._widest, len(self.lines))
        if self.following:
            self._scroll_to_end()
        else:
            self.unseen += arrived
            if dropped:
                # Keep the lines the reader is looking at in place as old ones fall out.
                self._set_y(max(0.0, self.scroll_y - dropped))
        self.refresh()

    def _set_y(self, y: float) -> None:
        self._programmatic = True
        try:
            self.scroll_to(y=y, animate=False, immediate=True, force=True)
        finally:
            self._programmatic = False

    def _scroll_to_end(self) -> None:
        self._set_y(max(0, len(self.lines) - self.scrollable_content_region.height))

    class Changed(Message):
        """Following stopped or resumed, or lines arrived while paused."""

    def watch_following(self) -> None:
        self.post_message(self.Changed())

    def watch_unseen(self) -> None:
        self.post_message(self.Changed())

    def follow(self) -> None:
        self.following = True
        self.unseen = 0
        self._scroll_to_end()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._programmatic:
            return
        at_end = new >= self.max_scroll_y
        if at_end and not self.following:
            self.following = True
            self.unseen = 0
        elif not at_end and new < old:
            self.following = False

    def find(self, text: str, forward: bool = False) -> int | None:
        """Select the next line containing ``text`` (case-insensitive), searching up by default."""
        self.search = text
        if not text or not self.lines:
            self.match = None
            self.refresh()
            return None
        needle = text.lower()
        n = len(self.lines)
        start = self.match if self.match is not None else (n if not forward else -1)
        order = range(1, n + 1)
        for step in order:
            i = (start + step) % n if forward else (start - step) % n
            if needle in self.lines[i].lower():
                self.match = i
                self.following = False
                self._set_y(max(0, i - self.scrollable_content_region.height // 2))
                self.refresh()
                return i
        self.match = None
        self.refresh()
        return None

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        line = self.lines[index]
        style = self.rich_style
        if index == self.match:
            style = style + _MATCH
        elif self.search and self.search.lower() in line.lower():
            style = style + _HIT
        strip = Strip([Segment(line, style)], len(line))
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def text(self) -> str:
        return "".join(f"{line}\n" for line in self.lines)
