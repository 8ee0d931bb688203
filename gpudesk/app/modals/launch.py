"""`L` / `J`: the launch form for an SSH or Jupyter dev container, with sensible defaults."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Checkbox, Input, Label

from gpudesk.app.modals.form import FormModal
from gpudesk.app.modals.placement_hint import PlacementHint, gpu_count
from gpudesk.core.containers import InvalidGpuSpecError, parse_gpus
from gpudesk.core.devcontainers import LaunchRequest
from gpudesk.core.flavours import DEFAULT_BASE_IMAGE, Flavour, InvalidNameError, validate_name
from gpudesk.core.placement import HostFree


class LaunchModal(FormModal[LaunchRequest]):
    DIALOG_ID = "launch-dialog"
    ERROR_ID = "launch-error"
    SUBMIT_ID = "launch"
    SUBMIT_LABEL = "Launch"

    def __init__(
        self,
        host: str,
        flavour: Flavour,
        taken: set[str],
        free_gpus: list[int] | None,
        gpu_runtime: bool,
        *,
        placement: Sequence[HostFree] = (),
    ) -> None:
        super().__init__()
        self.placement = placement
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

    def form_title(self) -> str:
        kind = "an SSH" if self.flavour is Flavour.SSH else "a Jupyter"
        return f"Launch {kind} dev container on {self.host}"

    def fields(self) -> ComposeResult:
        suggested = ",".join(map(str, self.free_gpus[:1])) + "," if self.free_gpus else ""
        yield Label("Name")
        yield Input(value=self.default_name(), id="name")
        yield Label(self.gpu_hint())
        yield Input(value=suggested if self.gpu_runtime else "", id="gpus",
                    disabled=not self.gpu_runtime)  # fmt: skip
        yield PlacementHint(self.placement, gpu_count(suggested), id="launch-placement")
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

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def request(self) -> LaunchRequest:
        name = self.value("name")
        validate_name(name)
        if name in self.taken:
            raise InvalidNameError(f"A container named {name} already exists on {self.host}.")
        gpus = self.value("gpus") or None
        parse_gpus(gpus)
        return LaunchRequest(
            flavour=self.flavour,
            name=name,
            gpus=gpus,
            workspace=self.value("workspace") or None,
            image=self.value("image") or None,
            base_image=self.value("base") or DEFAULT_BASE_IMAGE,
            memory=self.value("memory") or None,
            sudo=self.query_one("#sudo", Checkbox).value,
        )

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "gpus":
            self.query_one(PlacementHint).show(gpu_count(event.value))
        try:
            self.request()
            self.show_error("")
        except (InvalidNameError, InvalidGpuSpecError) as exc:
            self.show_error(str(exc))

    def submit(self) -> None:
        try:
            request = self.request()
        except (InvalidNameError, InvalidGpuSpecError) as exc:
            self.show_error(str(exc))
            return
        self.dismiss(request)
