"""Build-if-needed, run and wait, with every step and build line visible; esc cancels."""

from __future__ import annotations

import threading
from dataclasses import replace

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Log, Static

from gpudesk.app.desk import Desk, HostView, desk_of
from gpudesk.app.plain import last_frame, plain, visible
from gpudesk.core.containers import BaseImageMissingError, NoGpuRuntimeError
from gpudesk.core.devcontainers import LaunchRequest, Reach
from gpudesk.core.flavours import Flavour


class LaunchProgressScreen(HostView, ModalScreen[Reach | None]):
    BINDINGS = [
        Binding("escape", "cancel", "Cancel / close"),
        Binding("enter", "close", "Close", show=False),
    ]

    class Line(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Finished(Message):
        def __init__(
            self,
            reach: Reach | None,
            error: str | None,
            no_gpu: bool = False,
            no_base: bool = False,
        ) -> None:
            super().__init__()
            self.reach = reach
            self.error = error
            self.no_gpu = no_gpu
            self.no_base = no_base

    def __init__(self, host: str, request: LaunchRequest) -> None:
        super().__init__()
        self.host = host
        self.request = request
        self.cancel = threading.Event()
        self.reach: Reach | None = None
        self.running = False

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="launch-progress"):
            yield Static(
                plain(
                    f"Launching {self.request.name} ({self.request.flavour.value}) on {self.host}",
                    style="bold",
                ),
                classes="dialog-title",
            )
            yield Log(id="launch-log", max_lines=2000)
            yield Static("working…", id="launch-status")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Launch CPU-only", id="cpu", classes="hidden")
                yield Button("Pull base image and launch", id="pull", classes="hidden")
                yield Button("Cancel", id="close")

    def on_mount(self) -> None:
        self.start()

    def start(self) -> None:
        self.running = True
        self.query_one("#cpu", Button).add_class("hidden")
        self.query_one("#pull", Button).add_class("hidden")
        self.query_one("#close", Button).label = "Cancel"
        self.run_launch(self.request)

    @work(thread=True, exit_on_error=False, group="launch")
    def run_launch(self, request: LaunchRequest) -> None:
        try:
            _, reach = self.desk.state.devcontainers(self.host).launch(
                request,
                on_progress=self.progress,
                cancel=self.cancel,
            )
        except NoGpuRuntimeError as exc:
            self.post_message(self.Finished(None, str(exc), no_gpu=True))
        except BaseImageMissingError as exc:
            self.post_message(self.Finished(None, str(exc), no_base=not request.image))
        except Exception as exc:
            self.post_message(self.Finished(None, str(exc)))
        else:
            self.post_message(self.Finished(reach, None))

    def progress(self, line: str) -> None:
        """One line of launch progress, from the worker thread."""
        self.post_message(self.Line(line))

    def on_launch_progress_screen_line(self, message: Line) -> None:
        # Build output is the host's: progress bars keep their last frame, controls show.
        self.query_one("#launch-log", Log).write_line(visible(last_frame(message.text)))

    def on_launch_progress_screen_finished(self, message: Finished) -> None:
        self.running = False
        status = self.query_one("#launch-status", Static)
        self.query_one("#close", Button).label = "Close"
        if message.error:
            # The error carries the host's own words (build output, Docker's message).
            status.update(Text.assemble(("Launch failed: ", "bold red"), plain(message.error)))
            if message.no_gpu:
                self.query_one("#cpu", Button).remove_class("hidden")
            if message.no_base:
                self.query_one("#pull", Button).remove_class("hidden")
            return
        self.reach = message.reach
        assert message.reach is not None
        if message.reach.flavour is Flavour.JUPYTER:
            self.desk.open_jupyter(self.host, message.reach.name, browser=False)
            lines = ["Jupyter is ready; opening the port forward…"]
        else:
            lines = ["Ready. Reach it with:", *(f"  {x}" for x in message.reach.lines())]
        status.update(plain("\n".join(lines)))
        self.query_one("#close", Button).focus()
        self.desk.refresh_containers(self.host)

    def host_changed(self, name: str) -> None:
        url = self.reach and self.desk.state.jupyter_urls.get((self.host, self.reach.name))
        if name == self.host and url:
            self.query_one("#launch-status", Static).update(
                plain(
                    f"Jupyter is ready:\n  {url}\n(copied to the clipboard; o on the container opens it)"
                )
            )

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "pull":
            self.request = replace(self.request, pull=True)
            self.query_one("#launch-log", Log).write_line("Pulling the base image first")
            self.start()
        elif event.button.id == "cpu":
            self.request = replace(self.request, gpus=None)
            self.query_one("#launch-log", Log).write_line("Retrying without GPUs")
            self.start()
        else:
            self.action_cancel()

    def action_close(self) -> None:
        """Enter closes the dialog once the launch has ended; while it runs it does nothing,
        so a stray enter never cancels a launch."""
        if not self.running:
            self.dismiss(self.reach)

    def action_cancel(self) -> None:
        if self.running:
            self.cancel.set()
            self.query_one("#launch-status", Static).update("cancelling…")
            return
        self.dismiss(self.reach)
