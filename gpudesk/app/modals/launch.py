"""`L` / `J`: the launch form for an SSH or Jupyter dev container, with sensible defaults."""

from __future__ import annotations

import secrets

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from gpudesk.core.containers import InvalidGpuSpecError, parse_gpus
from gpudesk.core.devcontainers import LaunchRequest
from gpudesk.core.flavours import DEFAULT_BASE_IMAGE, Flavour, InvalidNameError, validate_name


class LaunchModal(ModalScreen[LaunchRequest | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        host: str,
        flavour: Flavour,
        taken: set[str],
        free_gpus: list[int] | None,
        gpu_runtime: bool,
    ) -> None:
        super().__init__()
        self.host = host
        self.flavour = flavour
        self.taken = taken
        self.free_gpus = free_gpus
        self.gpu_runtime = gpu_runtime

    def default_name(self) -> str:
        return f"{self.flavour.value}-{secrets.token_hex(2)}"

    def gpu_hint(self) -> str:
        if not self.gpu_runtime:
            return "GPUs: none (this host's Docker has no NVIDIA runtime; CPU only)"
        if self.free_gpus:
            return (
                f"GPUs: 'all', a count, or indices (free now: {','.join(map(str, self.free_gpus))})"
            )
        return "GPUs: 'all', a count like 2, or indices like 0,2 (empty: CPU only)"

    def compose(self) -> ComposeResult:
        kind = "SSH" if self.flavour is Flavour.SSH else "Jupyter"
        suggested = ",".join(map(str, self.free_gpus[:1])) + "," if self.free_gpus else ""
        with Vertical(classes="dialog", id="launch-dialog"):
            yield Static(
                f"[b]Launch a {kind} dev container on {self.host}[/b]", classes="dialog-title"
            )
            yield Label("Name")
            yield Input(value=self.default_name(), id="name")
            yield Label(self.gpu_hint())
            yield Input(value=suggested if self.gpu_runtime else "", id="gpus",
                        disabled=not self.gpu_runtime)  # fmt: skip
            yield Label("Workspace on the host (mounted at /workspace)")
            yield Input(placeholder="~/gpudesk/<name>", id="workspace")
            yield Label("Image (empty: build gpudesk's image on the host if missing)")
            yield Input(placeholder="gpudesk/" + self.flavour.value + ":<hash>", id="image")
            yield Label("Base image")
            yield Input(value=DEFAULT_BASE_IMAGE, id="base")
            yield Label("Memory limit (empty: none)")
            with Horizontal(id="launch-memory-row"):
                yield Input(placeholder="64g", id="memory")
                # Off by default: without it, sudo in the container is refused.
                yield Checkbox("passwordless sudo", id="sudo")
            yield Static("", id="launch-error", classes="error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch", variant="primary", id="launch")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def _v(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value.strip()

    def request(self) -> LaunchRequest:
        name = self._v("name")
        validate_name(name)
        if name in self.taken:
            raise InvalidNameError(f"A container named {name} already exists on {self.host}.")
        gpus = self._v("gpus") or None
        parse_gpus(gpus)
        return LaunchRequest(
            flavour=self.flavour,
            name=name,
            gpus=gpus,
            workspace=self._v("workspace") or None,
            image=self._v("image") or None,
            base_image=self._v("base") or DEFAULT_BASE_IMAGE,
            memory=self._v("memory") or None,
            sudo=self.query_one("#sudo", Checkbox).value,
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        error = self.query_one("#launch-error", Static)
        try:
            self.request()
            error.update("")
        except (InvalidNameError, InvalidGpuSpecError) as exc:
            error.update(str(exc))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        try:
            request = self.request()
        except (InvalidNameError, InvalidGpuSpecError) as exc:
            self.query_one("#launch-error", Static).update(str(exc))
            return
        self.dismiss(request)

    def action_cancel(self) -> None:
        self.dismiss(None)
