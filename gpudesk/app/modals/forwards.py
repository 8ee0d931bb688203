"""`f` on a container: its port forwards (listed, closable) and a field to forward another."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from gpudesk.app.plain import plain


@dataclass(frozen=True)
class ForwardShown:
    port: int  # in the container
    url: str  # here


@dataclass(frozen=True)
class ForwardChoice:
    action: str  # "add" or "close"
    port: int
    local_port: int | None = None


def _port(text: str) -> int | None:
    text = text.strip()
    if text.isdigit() and 0 < int(text) < 65536:
        return int(text)
    return None


class ForwardsModal(ModalScreen[ForwardChoice | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Close"),
        # Above the inputs' own ctrl+d, so it always stops the highlighted forward.
        Binding("ctrl+d", "close_selected", "Stop", priority=True),
    ]

    def __init__(self, host: str, name: str, shown: list[ForwardShown]) -> None:
        super().__init__()
        self.host = host
        self.container = name
        self.shown = shown

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="forwards-dialog"):
            yield Static(
                plain(f"Port forwards of {self.container} on {self.host}", style="bold"),
                classes="dialog-title",
            )
            options = [
                Option(plain(f"{f.port} -> {f.url}"), id=str(f.port)) for f in self.shown
            ] or [Option(Text("none yet"), disabled=True)]
            yield OptionList(*options, id="forward-list")
            yield Label("Forward a container port (e.g. 6006 for TensorBoard)")
            with Horizontal(id="forward-row"):
                yield Input(placeholder="port in the container", id="port")
                yield Input(placeholder="local port (default: last time's)", id="local")
            yield Static("", id="forward-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Forward", variant="primary", id="add")
                yield Button("Stop selected", id="close", disabled=not self.shown)
                yield Button("Done", id="done")

    def on_mount(self) -> None:
        self.query_one("#port", Input).focus()

    def choice(self) -> ForwardChoice:
        port = _port(self.query_one("#port", Input).value)
        local_text = self.query_one("#local", Input).value.strip()
        local = _port(local_text)
        if port is None or (local_text and local is None):
            raise ValueError("Ports are numbers from 1 to 65535.")
        return ForwardChoice("add", port, local)

    def submit(self) -> None:
        try:
            self.dismiss(self.choice())
        except ValueError as exc:
            self.query_one("#forward-error", Static).update(plain(str(exc)))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add":
            self.submit()
        elif event.button.id == "close":
            self.action_close_selected()
        else:
            self.dismiss(None)

    def action_close_selected(self) -> None:
        listing = self.query_one("#forward-list", OptionList)
        index = listing.highlighted
        if index is None or not self.shown:
            return
        option_id = listing.get_option_at_index(index).id
        if option_id is not None:
            self.dismiss(ForwardChoice("close", int(option_id)))

    def action_cancel(self) -> None:
        self.dismiss(None)
