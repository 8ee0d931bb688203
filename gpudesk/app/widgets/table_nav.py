"""Sorting, filtering and j/k for every table of the TUI: one piece of code, reused by each.

:class:`SortFilter` is the pure part (no Textual): which column sorts, which way, and the ``/``
filter (a case-insensitive regex over the row's text; a leading ``!`` inverts it; a regex that
does not compile filters nothing and says so). :class:`NavTable` is a DataTable that uses it:
``j``/``k`` move, ``>``/``<`` pick the next/previous sort column, ``S`` reverses, and the header
of the sort column carries ▲ or ▼ (the k9s/nvitop habit). The Fleet's own host list uses
:class:`SortFilter` and the same keys through :data:`SORT_BINDINGS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

Cell = Text | str
SortValue = float | int | str | None

SORT_BINDINGS = [
    Binding("greater_than_sign", "sort_next", "Sort →", key_display=">", show=False),
    Binding("less_than_sign", "sort_prev", "Sort ←", key_display="<", show=False),
    Binding("S", "sort_reverse", "Reverse sort", show=False),
]
CURSOR_BINDINGS = [
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
]


@dataclass(frozen=True)
class Row:
    """One row: its key, its cells, and (optionally) what each column sorts by.

    Without ``sort_values`` a column sorts by its cell's text; numeric columns (CPU %, memory,
    step) pass numbers so 10 sorts after 9. ``None`` sorts last whichever the direction.
    """

    key: str
    cells: Sequence[Cell]
    sort_values: Sequence[SortValue] | None = None

    def text(self) -> str:
        return " ".join(c.plain if isinstance(c, Text) else str(c) for c in self.cells)

    def sort_value(self, column: int) -> SortValue:
        if self.sort_values is not None:
            return self.sort_values[column]
        cell = self.cells[column]
        return cell.plain if isinstance(cell, Text) else str(cell)


@dataclass
class SortFilter:
    """A table's sort column and direction and its filter; ``sort`` None keeps the given order."""

    labels: list[str]
    sort: int | None = None
    reverse: bool = False
    filter_text: str = ""
    _compiled: tuple[str, re.Pattern[str] | None, str | None] = field(
        default=("", None, None), repr=False
    )

    # ------------------------------------------------------------------ sorting

    def cycle(self, step: int) -> None:
        """Sort by the next (``step`` 1) or previous (-1) column; past the last, unsorted.

        The direction stays when moving between columns (k9s keeps it too).
        """
        count = len(self.labels)
        position = count if self.sort is None else self.sort
        position = (position + step) % (count + 1)
        self.sort = None if position == count else position
        if self.sort is None:
            self.reverse = False  # unsorted is the natural order, never reversed

    def flip(self) -> None:
        self.reverse = not self.reverse
        if self.sort is None:
            self.sort = 0

    def label(self, column: int) -> str:
        """The header of ``column``: its label, with ▲/▼ when the table sorts by it."""
        text = self.labels[column]
        if column == self.sort:
            text += " ▼" if self.reverse else " ▲"
        return text

    def describe(self) -> str:
        """ "sorted by CPU % ▼", or "" when unsorted, for a screen's status line."""
        if self.sort is None:
            return ""
        return f"sorted by {self.label(self.sort)}"

    # ------------------------------------------------------------------ filtering

    def _pattern(self) -> tuple[bool, re.Pattern[str] | None, str | None]:
        invert = self.filter_text.startswith("!")
        source = self.filter_text[1:] if invert else self.filter_text
        if self._compiled[0] != source:
            try:
                self._compiled = (source, re.compile(source, re.IGNORECASE), None)
            except re.error as exc:
                self._compiled = (source, None, str(exc))
        return invert, self._compiled[1], self._compiled[2]

    @property
    def filter_error(self) -> str | None:
        """Why the filter is not a valid regex (then nothing is filtered), or None."""
        if not self.filter_text:
            return None
        return self._pattern()[2]

    def matches(self, text: str) -> bool:
        if not self.filter_text:
            return True
        invert, regex, _error = self._pattern()
        if regex is None:
            return True  # an invalid regex hides nothing; filter_error says why
        return (regex.search(text) is not None) != invert

    def describe_filter(self, shown: int, total: int) -> str:
        """One line about the filter: how many rows it keeps, or that it is not valid."""
        if not self.filter_text:
            return ""
        error = self.filter_error
        if error is not None:
            return f"filter {self.filter_text!r} is not a valid regex ({error}); showing all"
        return f"filter {self.filter_text!r}: {shown} of {total}"

    # ------------------------------------------------------------------ both

    def apply(self, rows: Sequence[Row]) -> list[Row]:
        """The rows the table shows: filtered, then sorted (stable, so ties keep their order)."""
        kept = [r for r in rows if self.matches(r.text())]
        if self.sort is None:
            return kept
        column = self.sort
        present = [r for r in kept if r.sort_value(column) is not None]
        missing = [r for r in kept if r.sort_value(column) is None]
        present.sort(key=lambda r: _order_key(r.sort_value(column)), reverse=self.reverse)
        return present + missing


def _order_key(value: SortValue) -> tuple[int, float, str]:
    # Numbers before text, so a column mixing "-" and numbers still sorts without a TypeError.
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value).lower())


class SortActions:
    """The sort keys' actions (SORT_BINDINGS) for anything with a :class:`SortFilter` view."""

    view: SortFilter

    def action_sort_next(self) -> None:
        self.view.cycle(1)
        self._resorted()

    def action_sort_prev(self) -> None:
        self.view.cycle(-1)
        self._resorted()

    def action_sort_reverse(self) -> None:
        self.view.flip()
        self._resorted()

    def _resorted(self) -> None:
        """Show the new order."""
        raise NotImplementedError


class NavTable(SortActions, DataTable[Cell]):
    """A row-cursor DataTable with j/k, sorting by any column and the filter of its SortFilter.

    The screen hands it every row with :meth:`show_rows` (on each change); the table keeps the
    cursor on the same key across re-sorts and updates cells in place when the order holds.
    """

    BINDINGS = [*CURSOR_BINDINGS, *SORT_BINDINGS]

    class Resorted(Message):
        """The user changed the sort; the screen may say so in its status line."""

    def __init__(
        self,
        columns: Sequence[tuple[str, str]],
        *,
        id: str | None = None,
        widths: Sequence[int | None] | None = None,
        zebra_stripes: bool = False,
    ) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=zebra_stripes)
        self.column_keys = [key for key, _ in columns]
        self.view = SortFilter([label for _, label in columns])
        self._widths = list(widths) if widths is not None else [None] * len(columns)
        self._all: list[Row] = []
        self._shown: list[Row] = []

    def on_mount(self) -> None:
        if not self.columns:
            for index, key in enumerate(self.column_keys):
                self.add_column(self.view.label(index), key=key, width=self._widths[index])

    @property
    def total(self) -> int:
        return len(self._all)

    @property
    def shown_keys(self) -> list[str]:
        """The keys of the rows shown, filtered and in their sorted order."""
        return [row.key for row in self._shown]

    @property
    def selected_key(self) -> str | None:
        if self.row_count == 0:
            return None
        row = max(0, min(self.cursor_row, self.row_count - 1))
        return self._shown[row].key if row < len(self._shown) else None

    def show_rows(self, rows: Sequence[Row]) -> None:
        """Show ``rows`` through the sort and filter; cheap when only cells changed."""
        if not self.columns:
            self.on_mount()
        self._all = list(rows)
        shown = self.view.apply(self._all)
        old_keys = [r.key for r in self._shown]
        new_keys = [r.key for r in shown]
        if old_keys == new_keys and len(self.rows) == len(shown):
            for old, new in zip(self._shown, shown, strict=True):
                for column, before, after in zip(
                    self.column_keys, old.cells, new.cells, strict=True
                ):
                    if before != after:
                        self.update_cell(new.key, column, after, update_width=True)
            self._shown = shown
            return
        current, cursor = self.selected_key, self.cursor_row
        self.clear()
        for row in shown:
            self.add_row(*row.cells, key=row.key)
        self._shown = shown
        if current in new_keys:
            self.move_cursor(row=new_keys.index(current))
        elif shown:
            self.move_cursor(row=min(cursor, len(shown) - 1))

    def refilter(self) -> None:
        """Apply a changed sort or filter to the rows last shown."""
        self._relabel()
        self.show_rows(self._all)

    def _relabel(self) -> None:
        for index, key in enumerate(self.column_keys):
            column = self.columns.get(key)  # type: ignore[call-overload]
            if column is not None:
                column.label = Text(self.view.label(index))
        self._require_update_dimensions = True
        self.refresh()

    def _resorted(self) -> None:
        self.refilter()
        self.post_message(self.Resorted())
