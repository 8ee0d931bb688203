"""The one typed handle screens, modals and the palette get on the app: :class:`Desk`.

Screens never import :mod:`gpudesk.app.app` (that is what made app/ an import circle) and never
touch the app's attributes beyond this protocol: they read the headless :class:`FleetState`
and ask the app for the few things that need Textual (workers, screens, notifications).
"""

from __future__ import annotations

from typing import Protocol, cast

from textual.message_pump import MessagePump
from textual.widget import Widget

from gpudesk.app.messages import Notice
from gpudesk.app.state import FleetState
from gpudesk.core.config import Host


class Desk(Protocol):
    """What :class:`~gpudesk.app.app.GpudeskApp` offers its screens."""

    state: FleetState

    def open_host(self, name: str) -> None: ...

    def open_runs(self) -> None: ...

    def open_jupyter(self, host: str, name: str, browser: bool = True) -> None: ...

    def refresh_containers(self, name: str) -> None: ...

    def add_host(self, host: Host) -> None: ...

    def remove_host(self, name: str) -> None: ...

    def set_gpu_interval(self, seconds: float) -> None: ...

    def toggle_exporter(self) -> None: ...

    @property
    def exporter_address(self) -> str | None: ...

    def action_help(self) -> None: ...

    async def action_quit(self) -> None: ...


def desk_of(node: MessagePump) -> Desk:
    """The app ``node`` belongs to, as the screens see it (a GpudeskApp, checked in its module)."""
    return cast(Desk, node.app)


def show_notice(widget: Widget, message: Notice) -> None:
    """A worker's Notice as a notification (every screen's ``on_notice``)."""
    widget.notify(
        message.text, severity="error" if message.error else "information", timeout=message.timeout
    )


class HostView:
    """A screen that shows hosts. When the state changed what it shows about a host, the app calls
    :meth:`host_changed` on every such screen on the stack, on the UI thread.

    A typed call, not a message: a ``HostChanged`` message per screen per GPU sample doubled the
    app's CPU per sample (bench/fleet_gpu.py, 32 hosts: 8.2 against 4.0 ms per sample).
    """

    def host_changed(self, name: str) -> None:
        raise NotImplementedError
