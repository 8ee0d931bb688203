"""A yes/no question that says exactly what will happen; escape answers no.

The question and detail often carry names from a host (containers, runs, commands), so they
are shown as plain text, never read as markup.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gpudesk.app.plain import plain


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "no", "Cancel"), Binding("y", "yes", "Yes", show=False)]

    def __init__(
        self, question: str, detail: str = "", confirm: str = "Yes", *, default_yes: bool = False
    ) -> None:
        """``default_yes`` focuses the confirm button, so enter answers yes: only for
        questions whose yes is both safe and what the user most likely wants."""
        super().__init__()
        self.question = question
        self.detail = detail
        self.confirm = confirm
        self.default_yes = default_yes

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(plain(self.question, style="bold"), classes="dialog-title")
            if self.detail:
                yield Static(plain(self.detail), classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    self.confirm, variant="primary" if self.default_yes else "error", id="yes"
                )
                yield Button("Cancel", id="no")

    def on_mount(self) -> None:
        self.query_one("#yes" if self.default_yes else "#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)
