"""`?`: every key binding of the screen underneath and of the app, in one list."""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from gpudesk.app.plain import plain

GLOBAL_NOTES = [
    ("ctrl+p", "Command palette (also `:`)"),
    ("tab / shift+tab", "Move focus"),
    ("mouse", "Click rows and buttons; scroll with the wheel"),
]


def help_title(screen: Screen[object]) -> str:
    """A person's name for the screen (``HELP_TITLE``, else "RunDetailScreen" -> "Run detail")."""
    title = getattr(screen, "HELP_TITLE", None)
    if not title:
        words = re.findall(r"[A-Z][a-z0-9]*", type(screen).__name__.removesuffix("Screen"))
        title = " ".join(words).capitalize() or "gpudesk"
    return title


def binding_rows(screen: Screen[object]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    # The focused table's own keys (j/k, sorting) too: they work only there.
    nodes = [n for n in (screen, screen.focused, screen.app) if n is not None]
    for node in nodes:
        for binding in node.BINDINGS:
            if not isinstance(binding, Binding):
                continue
            key = binding.key_display or binding.key
            if key in seen or not binding.description:
                continue
            seen.add(key)
            rows.append((key, binding.description))
    return rows + GLOBAL_NOTES


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        rows = binding_rows(self.under)
        width = max(len(k) for k, _ in rows)
        keys = Text()
        for n, (key, description) in enumerate(rows):
            keys.append(("\n" if n else "") + key.ljust(width), style="bold")
            keys.append(f"  {description}")
        # A screen's subtitle may name a host's run or container: plain text.
        title = f"Keys: {help_title(self.under)}"
        if self.under.sub_title:
            title += f" · {self.under.sub_title}"
        with VerticalScroll(id="help-box"):
            yield Static(plain(title, style="bold") + Text("\n"), id="help-title")
            yield Static(keys, id="help-keys")
            yield Static("\n[dim]esc or ? closes this help[/dim]")

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)
