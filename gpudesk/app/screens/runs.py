"""Training runs across every connected host, rebuilt from their run folders."""

from __future__ import annotations

import contextlib
import re
from typing import TYPE_CHECKING, Protocol, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Static

from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.core.logs import LogTarget
from gpudesk.core.runs import (
    Run,
    RunState,
    StopResult,
    get_run,
    list_runs,
    rerun,
    run_cells,
    stop_run,
)
from gpudesk.core.ssh import ConnState

if TYPE_CHECKING:
    from gpudesk.app.app import GpudeskApp

POLL_INTERVAL = 3.0
STOP_GRACE = 10.0
# Fixed widths keep the columns still while the numbers change every poll.
COLUMNS = {"name": 20, "host/container": 20, "script": 9, "state": 11, "step": 11, "loss": 7,
           "tokens/s": 8, "elapsed": 7, "ETA": 6}  # fmt: skip
STATE_STYLE = {
    RunState.STARTING: "yellow",
    RunState.RUNNING: "bold cyan",
    RunState.SUCCEEDED: "green",
    RunState.FAILED: "bold red",
    RunState.STOPPED: "magenta",
    RunState.LOST: "red",
}


class RunSource(Protocol):
    """Where the runs views get their runs; tests inject a recorded one."""

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]: ...

    def run(self, host: str, name: str, container: str) -> Run: ...

    def stop(self, run: Run, grace: float) -> StopResult: ...

    def rerun(self, run: Run) -> Run: ...


class FleetRunSource:
    """Asks every connected host of the app's fleet (called from worker threads only)."""

    def __init__(self, app: GpudeskApp) -> None:
        self.app = app

    def _hosts(self, host: str | None) -> list[str]:
        names = [host] if host else list(self.app.models)
        return [
            n
            for n in names
            if n in self.app.models and self.app.models[n].status.state is ConnState.CONNECTED
        ]

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]:
        runs: list[Run] = []
        errors: list[str] = []
        for name in self._hosts(host):
            try:
                runs += list_runs(self.app.fleet.get(name))
            except Exception as exc:  # one broken host must not hide the others' runs
                errors.append(f"{name}: {exc}")
        return runs, errors

    def run(self, host: str, name: str, container: str) -> Run:
        return get_run(self.app.fleet.get(host), name, container=container or None)

    def stop(self, run: Run, grace: float) -> StopResult:
        return stop_run(self.app.fleet.get(run.host), run, grace=grace)

    def rerun(self, run: Run) -> Run:
        return rerun(self.app.fleet.get(run.host), run)


class RunsLoaded(Message):
    def __init__(self, runs: list[Run], errors: list[str]) -> None:
        super().__init__()
        self.runs = runs
        self.errors = errors


def run_key(run: Run) -> str:
    return "/".join(run.key)


class RunsScreen(Screen[None]):
    DEFAULT_CSS = """
    RunsScreen #runs-table { height: 1fr; }
    RunsScreen #runs-note { height: auto; padding: 0 1; color: $text-muted; }
    RunsScreen #runs-filter { dock: bottom; display: none; }
    RunsScreen #runs-filter.shown { display: block; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("enter", "detail", "Detail"),
        Binding("l", "log", "Log"),
        Binding("ctrl+d", "stop", "Stop run"),
        Binding("x", "rerun", "Re-run"),
        Binding("slash", "filter", "Filter", key_display="/"),
    ]

    def __init__(self, host: str | None = None, *, source: RunSource | None = None) -> None:
        super().__init__()
        self.host = host
        self.source = source
        self.runs: dict[str, Run] = {}
        self.errors: list[str] = []
        self.filter_text = ""
        self.loaded = False
        self._timer: Timer | None = None
        self.sub_title = f"runs on {host}" if host else "runs on every connected host"

    @property
    def gapp(self) -> GpudeskApp:
        return cast("GpudeskApp", self.app)

    def run_source(self) -> RunSource:
        if self.source is None:
            self.source = FleetRunSource(self.gapp)
        return self.source

    def compose(self) -> ComposeResult:
        yield Header()
        table: DataTable[str | Text] = DataTable(
            id="runs-table", cursor_type="row", zebra_stripes=True
        )
        yield table
        yield Static("Loading runs…", id="runs-note")
        yield Input(placeholder="filter (regex over every column)", id="runs-filter")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column, width in COLUMNS.items():
            table.add_column(column, key=column, width=width)
        table.focus()
        self.poll()

    @work(thread=True, exit_on_error=False, group="runs-poll", exclusive=True)
    def poll(self) -> None:
        try:
            runs, errors = self.run_source().runs(self.host)
        except Exception as exc:
            runs, errors = [], [str(exc)]
        self.post_message(RunsLoaded(runs, errors))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        self.loaded = True
        self.runs = {run_key(r): r for r in message.runs}
        self.errors = message.errors
        self.render_table()
        # The next poll is scheduled only now, so polls never overlap however slow a host is.
        if self._timer is not None:
            self._timer.stop()
        if self.is_attached:
            self._timer = self.set_timer(POLL_INTERVAL, self.poll, name="runs-poll")

    def refresh_now(self) -> None:
        """Poll at once (after a stop or re-run), replacing the scheduled poll."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self.poll()

    def _visible(self) -> list[Run]:
        runs = list(self.runs.values())
        if not self.filter_text:
            return runs
        invert = self.filter_text.startswith("!")
        pattern = self.filter_text[1:] if invert else self.filter_text
        try:
            regex = re.compile(pattern, re.IGNORECASE)
        except re.error:
            regex = re.compile(re.escape(pattern), re.IGNORECASE)
        return [r for r in runs if bool(regex.search(" ".join(run_cells(r)))) != invert]

    def render_table(self) -> None:
        table = self.query_one(DataTable)
        current = self.selected_key()
        table.clear()
        for run in self._visible():
            cells: list[str | Text] = list(run_cells(run))
            cells[3] = Text(str(cells[3]), style=STATE_STYLE.get(run.state, ""))
            table.add_row(*cells, key=run_key(run))
        if current is not None and current in self.runs:
            # RowDoesNotExist: the filter hides it now.
            with contextlib.suppress(Exception):
                table.move_cursor(row=table.get_row_index(current))
        note = self.query_one("#runs-note", Static)
        lines = []
        if not self.runs:
            lines.append("No runs yet. Submit one from a container (R on the host screen) or with"
                         " `gpudesk submit`.")  # fmt: skip
        elif self.filter_text:
            lines.append(f"filter {self.filter_text!r}: {table.row_count} of {len(self.runs)}")
        lines += [f"[red]{e}[/]" for e in self.errors]
        note.update("\n".join(lines))

    def selected_key(self) -> str | None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            return None
        return key

    def selected(self) -> Run | None:
        key = self.selected_key()
        return self.runs.get(key) if key else None

    # ------------------------------------------------------------------ actions

    def action_back(self) -> None:
        field = self.query_one("#runs-filter", Input)
        if field.has_class("shown"):
            field.remove_class("shown")
            field.value = ""
            self.filter_text = ""
            self.render_table()
            self.query_one(DataTable).focus()
            return
        self.app.pop_screen()

    def action_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        field.add_class("shown")
        field.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value
        self.render_table()

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        self.query_one(DataTable).focus()

    @on(DataTable.RowSelected)
    def row_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        from gpudesk.app.screens.run_detail import RunDetailScreen

        run = self.selected()
        if run is not None:
            self.app.push_screen(
                RunDetailScreen(run.host, run.name, run.container, source=self.run_source())
            )

    def action_log(self) -> None:
        from gpudesk.app.screens.logs import LogScreen

        run = self.selected()
        if run is not None:
            self.app.push_screen(
                LogScreen(run.host, LogTarget.run(run.name, run.log_path, run.container))
            )

    def action_stop(self) -> None:
        run = self.selected()
        if run is None:
            return
        if run.state.finished:
            self.notify(f"{run.name} already ended ({run.state_text}).")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.stop(run)

        self.app.push_screen(
            ConfirmModal(
                f"Stop run {run.name} on {run.host}/{run.container}?",
                f"gpudesk sends SIGTERM to the run's processes so the script can save a"
                f" checkpoint, then SIGKILL if it is still running after {STOP_GRACE:.0f} s."
                " The run folder, its log and checkpoints stay.",
                confirm="Stop run",
            ),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="runs-action")
    def stop(self, run: Run) -> None:
        self.app.call_from_thread(
            self.notify, f"Stopping {run.name}: SIGTERM now, SIGKILL after {STOP_GRACE:.0f} s."
        )
        try:
            result = self.run_source().stop(run, STOP_GRACE)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(self.notify, result.message)
        self.app.call_from_thread(self.refresh_now)

    def action_rerun(self) -> None:
        run = self.selected()
        if run is not None:
            self.do_rerun(run)

    @work(thread=True, exit_on_error=False, group="runs-action")
    def do_rerun(self, run: Run) -> None:
        try:
            new = self.run_source().rerun(run)
        except Exception as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error")
            return
        self.app.call_from_thread(
            self.notify, f"Started {new.name} with the arguments of {run.name}."
        )
        self.app.call_from_thread(self.refresh_now)
