"""Shows an unknown host key's fingerprint and asks whether to trust it."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from gpudesk.app.plain import plain
from gpudesk.core.config import Host
from gpudesk.core.ssh import ConnStatus


class HostKeyModal(ModalScreen[bool]):
    BINDINGS = [Binding("escape", "reject", "Reject")]

    def __init__(self, host: Host, status: ConnStatus) -> None:
        super().__init__()
        self.host = host
        self.status = status

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="host-key-dialog"):
            # The key type and fingerprint come from the remote host: plain text.
            yield Static(
                Text(f"Unknown host key for {self.host.name}", style="bold"),
                classes="dialog-title",
            )
            yield Static(
                Text.assemble(
                    f"{self.host.destination} presented a key gpudesk has never seen:\n\n  ",
                    plain(
                        f"{self.status.key_type or '?'}  {self.status.fingerprint or '?'}", "bold"
                    ),
                    "\n\nCompare it with the host's own (`ssh-keygen -lf "
                    "/etc/ssh/ssh_host_*_key.pub` there). Accept only if they match; gpudesk then "
                    "remembers it in its known_hosts.",
                ),
                classes="dialog-detail",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Accept key", variant="warning", id="accept")
                yield Button("Reject", id="reject")

    def on_mount(self) -> None:
        self.query_one("#reject", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "accept")

    def action_reject(self) -> None:
        self.dismiss(False)
