"""A host's own screen: its connection, engine and (as they land) GPUs and containers."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from gpudesk.app.widgets.gpu_panel import GpuPanel, GpuProcessTable

if TYPE_CHECKING:
    from gpudesk.app.app import GpudeskApp


class HostScreen(Screen[None]):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("r", "retry", "Reconnect"),
    ]

    def __init__(self, name: str) -> None:
        super().__init__()
        self.host_name = name
        self.sub_title = name

    @property
    def gapp(self) -> GpudeskApp:
        return cast("GpudeskApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="host-body"):
            yield Static(id="host-info")
            yield GpuPanel(id="gpu-panel")
            yield GpuProcessTable(id="gpu-processes")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_host(self.host_name)

    def refresh_host(self, name: str) -> None:
        if name != self.host_name:
            return
        model = self.gapp.models.get(name)
        info = self.query_one("#host-info", Static)
        if model is None:
            info.update(f"{name} was removed.")
            return
        status = model.status
        lines = [
            f"[b]{model.host.name}[/b]  {model.host.destination}",
            f"state    {status.state.value}" + (f"  ({status.message})" if status.message else ""),
        ]
        if status.latency_ms is not None and model.host.hostname:
            lines.append(f"latency  {status.latency_ms:.1f} ms")
        if model.engine is not None:
            e = model.engine
            runtime = "NVIDIA runtime" if e.gpu_runtime else "no NVIDIA runtime"
            lines.append(f"docker   {e.version} (API {e.api_version}) on {e.os}, {runtime}")
        elif model.engine_error:
            lines.append(f"docker   {model.engine_error}")
        if model.gpu_note:
            lines.append(f"gpus     {model.gpu_note}")
        info.update("\n".join(lines))
        if model.gpu is not None:
            self.query_one(GpuPanel).show(model.gpu, model.gpu_history)
            self.query_one(GpuProcessTable).show(model.gpu)

    def action_retry(self) -> None:
        self.gapp.retry_host(self.host_name)
