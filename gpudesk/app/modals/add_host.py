"""`a`: the add-host form, validated as you type with the same rules as `gpudesk hosts add`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from gpudesk.core.config import ConfigError, Host, Inventory, host_from_destination, validate_name


class AddHostModal(ModalScreen[Host | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, inventory: Inventory) -> None:
        super().__init__()
        self.inventory = inventory

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="add-host-dialog"):
            yield Static("[b]Add a GPU host[/b]", classes="dialog-title")
            yield Label("Name")
            yield Input(placeholder="gpu1", id="name")
            yield Label("Destination: ssh://user@host[:port] or a ~/.ssh/config alias")
            yield Input(placeholder="ssh://alice@10.0.0.5", id="dest")
            yield Label("Identity file (optional)")
            yield Input(placeholder="~/.ssh/id_ed25519", id="identity")
            yield Label("Jump host (optional): a host name or destination")
            yield Input(placeholder="bastion", id="jump")
            yield Static("", id="add-host-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Add", variant="primary", id="add")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def validate_form(self) -> Host:
        name = self._value("name")
        if not name:
            raise ConfigError("Give the host a name.")
        validate_name(name)
        if name in self.inventory.names():
            raise ConfigError(f"A host named {name!r} already exists; pick another name.")
        dest = self._value("dest")
        if not dest:
            raise ConfigError("Give a destination, like ssh://user@host or an ssh config alias.")
        return host_from_destination(
            name, dest, identity=self._value("identity") or None, jump=self._value("jump") or None
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        error = self.query_one("#add-host-error", Static)
        try:
            if self._value("name") or self._value("dest"):
                self.validate_form()
            error.update("")
        except ConfigError as exc:
            error.update(str(exc))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "add":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        try:
            host = self.validate_form()
        except ConfigError as exc:
            self.query_one("#add-host-error", Static).update(str(exc))
            return
        self.dismiss(host)

    def action_cancel(self) -> None:
        self.dismiss(None)
