"""`i`: a container's full `docker inspect`, read only."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static, TextArea

from gpudesk.app.plain import plain


class InspectModal(ModalScreen[None]):
    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, name: str, text: str) -> None:
        super().__init__()
        self.title_text = name
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="inspect-dialog"):
            yield Static(
                Text.assemble(plain(f"docker inspect {self.title_text}", "bold"), "  (esc closes)"),
                classes="dialog-title",
            )
            yield TextArea(self.text, read_only=True, language=None, id="inspect-text")

    def action_close(self) -> None:
        self.dismiss(None)
