"""The dialog skeleton the form modals share: a title, the form's fields, one error line, and a
primary button with Cancel. ``enter`` in a field or the primary button calls :meth:`submit`;
``escape`` or Cancel dismisses with None.
"""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from gpudesk.app.plain import plain

ResultT = TypeVar("ResultT")


class FormModal(ModalScreen[ResultT | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DIALOG_ID = ""  # the dialog container's id, for app.tcss
    ERROR_ID = ""  # the error line's id
    SUBMIT_ID = ""  # the primary button's id
    SUBMIT_LABEL = ""

    def form_title(self) -> str:
        """The dialog's title (plain text: it may name a host's container)."""
        raise NotImplementedError

    def fields(self) -> ComposeResult:
        """The form's labels and inputs, between the title and the error line."""
        raise NotImplementedError

    def submit(self) -> None:
        """Check the form and dismiss with its result, or show what is wrong."""
        raise NotImplementedError

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id=self.DIALOG_ID):
            yield Static(plain(self.form_title(), style="bold"), classes="dialog-title")
            yield from self.fields()
            yield Static("", id=self.ERROR_ID, classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button(self.SUBMIT_LABEL, variant="primary", id=self.SUBMIT_ID)
                yield Button("Cancel", id="cancel")

    def value(self, field: str) -> str:
        """The stripped text of the Input with id ``field``."""
        return self.query_one(f"#{field}", Input).value.strip()

    def show_error(self, text: str) -> None:
        self.query_one(f"#{self.ERROR_ID}", Static).update(plain(text))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == self.SUBMIT_ID:
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
