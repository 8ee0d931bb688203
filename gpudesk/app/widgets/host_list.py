"""The Fleet's host list: one small widget per host, so a host's update repaints one line.

A DataTable repaints every visible cell whenever any cell changes (its render cache is keyed
on a table-wide update counter); with many hosts streaming GPU samples at 1 Hz that cost
grows with hosts times columns. Here each row renders itself, and rows scrolled out of view are
not rendered at all.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.events import Click
from textual.message import Message
from textual.widget import Widget

# (key, header, width): the widths used until the screen fits them to its content and size.
COLUMNS: list[tuple[str, str, int]] = [
    ("name", "HOST", 13),
    ("dest", "DESTINATION", 20),
    ("state", "STATE", 22),
    ("latency", "LATENCY", 10),
    ("docker", "DOCKER", 13),
    ("gpus", "GPUS", 28),
    ("containers", "CONTAINERS", 11),
]
# The most a column grows to fit its longest cell (one space of gap included).
MAX_WIDTH = {"name": 25, "dest": 48, "state": 23, "latency": 11, "docker": 40, "gpus": 32,
             "containers": 40}  # fmt: skip
# Long cells are cut down to these widths: the optional columns' first, before any column
# goes; the essential ones' only after the optional columns have gone.
SHORTENED = {"dest": 16, "docker": 16, "state": 17, "gpus": 22, "containers": 12}
OPTIONAL = ("dest", "docker")
# On a narrow terminal these go, in this order; the host, its state, GPUs and containers stay.
DROP_ORDER = ("latency", "dest", "docker")
# Who gets room back first when cut columns can grow again.
GROW_ORDER = ("containers", "gpus", "state", "docker", "dest", "name")


def _width(cell: Text | str) -> int:
    return cell_len(cell) if isinstance(cell, str) else cell.cell_len


def fit_widths(rows: list[list[Text | str]], total: int) -> list[int]:
    """Column widths for ``rows`` (header included) in ``total`` cells.

    Each column is as wide as its longest cell (capped). If that is too wide: the optional
    columns are cut to :data:`SHORTENED`, then dropped (width 0) in :data:`DROP_ORDER`, then
    the essential ones cut, then the widest shortened; room left goes back in GROW_ORDER.
    """
    keys = [key for key, _, _ in COLUMNS]
    natural = [
        min(MAX_WIDTH[key], max(_width(r[n]) for r in rows) + 1) for n, key in enumerate(keys)
    ]
    widths = list(natural)

    def shorten(which: tuple[str, ...]) -> None:
        for key in which:
            if sum(widths) > total:
                n = keys.index(key)
                widths[n] = min(widths[n], SHORTENED[key])

    shorten(OPTIONAL)
    for key in DROP_ORDER:
        if sum(widths) <= total:
            break
        widths[keys.index(key)] = 0
    shorten(("state", "gpus", "containers"))
    while sum(widths) > total:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= 6:
            break  # the line's own ellipsis cuts what still does not fit
        widths[widest] -= 1
    for key in GROW_ORDER:  # give cut columns back what room is left
        n = keys.index(key)
        if widths[n]:
            widths[n] += max(0, min(natural[n] - widths[n], total - sum(widths)))
    return widths


def join_cells(cells: list[Text | str], style: str = "", widths: list[int] | None = None) -> Text:
    line = Text(style=style, no_wrap=True, overflow="ellipsis")
    sizes = widths or [width for _, _, width in COLUMNS]
    for width, cell in zip(sizes, cells, strict=True):
        if width <= 0:
            continue
        text = cell.copy() if isinstance(cell, Text) else Text(cell)
        text.truncate(width - 1, overflow="ellipsis")
        text.pad_right(width - text.cell_len)
        line.append_text(text)
    return line


class Line(Widget):
    """One line of text of fixed height: changing it repaints the line, with no layout pass."""

    DEFAULT_CSS = """
    Line { height: 1; }
    """

    def __init__(self, text: Text | str = "", id: str | None = None) -> None:
        super().__init__(id=id)
        self._line = Text(text) if isinstance(text, str) else text

    def render(self) -> Text:
        return self._line

    def set(self, text: Text | str) -> None:
        line = Text(text) if isinstance(text, str) else text
        if line == self._line:
            return
        self._line = line
        self.refresh()

    @property
    def plain(self) -> str:
        return self._line.plain


class HostRow(Line):
    """One host's line; it only repaints when its own cells change."""

    DEFAULT_CSS = """
    HostRow { height: 1; padding: 0 1; }
    HostRow.-cursor { background: $primary 30%; }
    HostList:focus HostRow.-cursor { background: $primary 60%; }
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.host_name = name
        self.cells: list[Text | str] = []
        self.widths: list[int] | None = None

    def show(self, cells: list[Text | str], widths: list[int] | None = None) -> None:
        self.cells = cells
        if widths is not None:
            self.widths = widths
        self.set(join_cells(cells, widths=self.widths))

    def on_click(self, event: Click) -> None:
        parent = self.parent
        if isinstance(parent, HostList):
            parent.select(self.host_name, open_it=event.chain >= 2)


class HostList(VerticalScroll, can_focus=True):
    """Rows keyed by host name, with a cursor; enter or a double click opens the host."""

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("home", "cursor_to(0)", "Top", show=False),
        Binding("end", "cursor_to(-1)", "Bottom", show=False),
    ]
    DEFAULT_CSS = """
    HostList { height: 1fr; }
    """

    class Opened(Message):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def __init__(self, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: dict[str, HostRow] = {}
        self.cursor: str | None = None
        self.widths: list[int] | None = None

    # ------------------------------------------------------------------ rows

    def set_rows(self, names: list[str]) -> None:
        """Keep exactly ``names``, in this order, creating and removing rows as needed."""
        if list(self.rows) == names:
            return
        for gone in [n for n in self.rows if n not in names]:
            self.rows.pop(gone).remove()
        fresh = [HostRow(n) for n in names if n not in self.rows]
        for row in fresh:
            self.rows[row.host_name] = row
        if fresh:
            self.mount(*fresh)
        ordered = {n: self.rows[n] for n in names}
        self.rows = ordered
        for index, row in enumerate(ordered.values()):
            if self.children[index] is not row:
                self.move_child(row, before=index)
        if self.cursor not in self.rows:
            self.cursor = names[0] if names else None
        self._mark_cursor()

    def show(self, name: str, cells: list[Text | str]) -> None:
        row = self.rows.get(name)
        if row is not None:
            row.show(cells, self.widths)

    def set_widths(self, widths: list[int]) -> bool:
        """Lay every row out in ``widths`` (see :func:`fit_widths`); False if unchanged."""
        if widths == self.widths:
            return False
        self.widths = widths
        for row in self.rows.values():
            row.show(row.cells, widths)
        return True

    def row_names(self) -> list[str]:
        return list(self.rows)

    def cells(self, name: str) -> list[str]:
        return [str(c) for c in self.rows[name].cells]

    # ------------------------------------------------------------------ cursor

    def _mark_cursor(self) -> None:
        for name, row in self.rows.items():
            row.set_class(name == self.cursor, "-cursor")

    def select(self, name: str, open_it: bool = False) -> None:
        if name in self.rows:
            self.cursor = name
            self._mark_cursor()
            self.rows[name].scroll_visible()
            if open_it:
                self.post_message(self.Opened(name))

    def action_cursor(self, step: int) -> None:
        names = list(self.rows)
        if not names:
            return
        index = names.index(self.cursor) if self.cursor in names else 0
        self.select(names[max(0, min(len(names) - 1, index + step))])

    def action_cursor_to(self, index: int) -> None:
        names = list(self.rows)
        if names:
            self.select(names[index])
