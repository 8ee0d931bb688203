"""Training runs across every connected host, rebuilt from their run folders."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static

from gpudesk.app.desk import Desk, desk_of, show_notice
from gpudesk.app.messages import ActionDone, Notice, RunsLoaded
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.plain import cell, plain
from gpudesk.app.run_source import FleetRunSource, RunSource
from gpudesk.app.screens.logs import LogScreen
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.app.widgets.run_state import STATE_STYLE
from gpudesk.app.widgets.table_nav import NavTable, Row
from gpudesk.core.logs import LogTarget
from gpudesk.core.runs import Run, default_grace, run_cells

POLL_INTERVAL = 3.0
# Fixed widths keep the columns still while the numbers change every poll; the name column
# (None: as wide as its content) fits the longest name shown (a default name is 23 characters;
# cutting them at 20 hid which run is which).
COLUMNS: dict[str, int | None] = {"name": None, "host/container": 20, "script": 9, "state": 11, "step": 11, "loss": 7,
           "tokens/s": 8, "elapsed": 7, "ETA": 6}  # fmt: skip


def run_key(run: Run) -> str:
    return "/".join(run.key)


def run_row(run: Run) -> Row:
    """A run's cells, its state coloured, and numbers to sort the numeric columns by."""
    texts = run_cells(run)
    # Names and containers come from the run's folder: Text, never read as markup.
    cells: list[str | Text] = [cell(c) for c in texts]
    cells[3] = cell(texts[3], style=STATE_STYLE.get(run.state, ""))
    m = run.metrics
    values = [*texts[:4], m.step, m.loss, m.tokens_per_s, run.elapsed, run.eta]
    return Row(run_key(run), cells, values)


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
        self.loaded = False
        self._timer: Timer | None = None
        self.sub_title = f"runs on {host}" if host else "runs on every connected host"

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def run_source(self) -> RunSource:
        if self.source is None:
            self.source = FleetRunSource(self.desk.state)
        return self.source

    def compose(self) -> ComposeResult:
        yield Header()
        yield NavTable(
            [(column, column) for column in COLUMNS],
            id="runs-table",
            widths=list(COLUMNS.values()),
            zebra_stripes=True,
        )
        yield Static("Loading runs…", id="runs-note")
        yield Input(placeholder="filter (regex over every column)", id="runs-filter")
        yield Footer()

    @property
    def table(self) -> NavTable:
        return self.query_one("#runs-table", NavTable)

    def on_mount(self) -> None:
        self.table.focus()
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

    def render_table(self) -> None:
        table = self.table
        table.show_rows([run_row(r) for r in self.runs.values()])
        note = self.query_one("#runs-note", Static)
        lines: list[Text] = []
        if not self.runs:
            lines.append(Text("No runs yet. Submit one from a container (R on the host screen) or"
                              " with `gpudesk submit`."))  # fmt: skip
        else:
            status = [table.view.describe_filter(table.row_count, len(self.runs)),
                      table.view.describe()]  # fmt: skip
            if any(status):
                lines.append(Text(" · ".join(p for p in status if p)))
        lines += [plain(e, style="red") for e in self.errors]
        note.update(Text("\n").join(lines))

    def on_nav_table_resorted(self, event: NavTable.Resorted) -> None:
        self.render_table()

    def selected_key(self) -> str | None:
        return self.table.selected_key

    def selected(self) -> Run | None:
        key = self.selected_key()
        return self.runs.get(key) if key else None

    # ------------------------------------------------------------------ actions

    def action_back(self) -> None:
        field = self.query_one("#runs-filter", Input)
        if field.has_class("shown"):
            field.remove_class("shown")
            field.value = ""
            self.table.view.filter_text = ""
            self.table.refilter()
            self.render_table()
            self.table.focus()
            return
        self.app.pop_screen()

    def action_filter(self) -> None:
        field = self.query_one("#runs-filter", Input)
        field.add_class("shown")
        field.focus()

    @on(Input.Changed, "#runs-filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.table.view.filter_text = event.value
        self.table.refilter()
        self.render_table()

    @on(Input.Submitted, "#runs-filter")
    def filter_done(self) -> None:
        self.table.focus()

    @on(NavTable.RowSelected)
    def row_selected(self) -> None:
        self.action_detail()

    def action_detail(self) -> None:
        run = self.selected()
        if run is not None:
            self.app.push_screen(
                RunDetailScreen(run.host, run.name, run.container, source=self.run_source())
            )

    def action_log(self) -> None:
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
                f" checkpoint, then SIGKILL if it is still running after"
                f" {default_grace(run):.0f} s."
                " The run folder, its log and checkpoints stay.",
                confirm="Stop run",
            ),
            answered,
        )

    @work(thread=True, exit_on_error=False, group="runs-action")
    def stop(self, run: Run) -> None:
        grace = default_grace(run)
        self.post_message(Notice(f"Stopping {run.name}: SIGTERM now, SIGKILL after {grace:.0f} s."))
        try:
            result = self.run_source().stop(run, grace)
        except Exception as exc:
            self.post_message(Notice(str(exc), error=True))
            return
        self.post_message(ActionDone(result.message))

    def action_rerun(self) -> None:
        run = self.selected()
        if run is not None:
            self.do_rerun(run)

    @work(thread=True, exit_on_error=False, group="runs-action")
    def do_rerun(self, run: Run) -> None:
        try:
            new = self.run_source().rerun(run)
        except Exception as exc:
            self.post_message(Notice(str(exc), error=True))
            return
        self.post_message(ActionDone(f"Started {new.name} with the arguments of {run.name}."))

    def on_notice(self, message: Notice) -> None:
        show_notice(self, message)

    def on_action_done(self, message: ActionDone) -> None:
        show_notice(self, message)
        self.refresh_now()
