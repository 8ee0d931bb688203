"""`a`: the add-host form, validated as you type with the same rules as `gpudesk hosts add`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Input, Label

from gpudesk.app.modals.form import FormModal
from gpudesk.core.config import ConfigError, Host, Inventory, validate_name
from gpudesk.core.destinations import host_from_destination


class AddHostModal(FormModal[Host]):
    DIALOG_ID = "add-host-dialog"
    ERROR_ID = "add-host-error"
    SUBMIT_ID = "add"
    SUBMIT_LABEL = "Add"

    def __init__(self, inventory: Inventory) -> None:
        super().__init__()
        self.inventory = inventory

    def form_title(self) -> str:
        return "Add a GPU host"

    def fields(self) -> ComposeResult:
        yield Label("Name")
        yield Input(placeholder="gpu1", id="name")
        yield Label("Destination: ssh://user@host[:port] or a ~/.ssh/config alias")
        yield Input(placeholder="ssh://alice@10.0.0.5", id="dest")
        yield Label("Identity file (optional)")
        yield Input(placeholder="~/.ssh/id_ed25519", id="identity")
        yield Label("Jump host (optional): a host name or destination")
        yield Input(placeholder="bastion", id="jump")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def validate_form(self) -> Host:
        name = self.value("name")
        if not name:
            raise ConfigError("Give the host a name.")
        validate_name(name)
        if name in self.inventory.names():
            raise ConfigError(f"A host named {name!r} already exists; pick another name.")
        dest = self.value("dest")
        if not dest:
            raise ConfigError("Give a destination, like ssh://user@host or an ssh config alias.")
        return host_from_destination(
            name, dest, identity=self.value("identity") or None, jump=self.value("jump") or None
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        try:
            if self.value("name") or self.value("dest"):
                self.validate_form()
            self.show_error("")
        except ConfigError as exc:
            self.show_error(str(exc))

    def submit(self) -> None:
        try:
            host = self.validate_form()
        except ConfigError as exc:
            self.show_error(str(exc))
            return
        self.dismiss(host)
