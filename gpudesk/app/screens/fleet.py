"""The Fleet screen: one row per host with its state, latency and engine, live."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input

from gpudesk.app.desk import Desk, HostView, desk_of, show_notice
from gpudesk.app.idle_stop import offer_stop_idle
from gpudesk.app.messages import ActionDone, Notice
from gpudesk.app.modals.add_host import AddHostModal
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.host_key import HostKeyModal
from gpudesk.app.widgets.host_list import COLUMNS, HostList, Line, fit_widths, join_cells
from gpudesk.app.widgets.host_table import host_cells, host_sort_values
from gpudesk.app.widgets.table_nav import SORT_BINDINGS, Row, SortActions, SortFilter
from gpudesk.core.config import Host
from gpudesk.core.ssh import ConnState

FLUSH_INTERVAL = 0.15


class FleetScreen(SortActions, HostView, Screen[None]):
    BINDINGS = [
        Binding("a", "add_host", "Add host"),
        Binding("enter", "open_host", "Open", show=True),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("r", "retry", "Reconnect"),
        Binding("R", "runs", "Runs"),
        Binding("ctrl+d", "remove_host", "Remove host"),
        Binding("X", "stop_idle", "Stop idle", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        *SORT_BINDINGS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view = SortFilter([label for _, label, _ in COLUMNS])
        self._asked_keys: set[str] = set()
        self._pending: set[str] = set()
        self._flush_scheduled = False

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Line(id="fleet-summary")
        yield Line(self._header(), id="hosts-header")
        yield HostList(id="hosts")
        yield Input(placeholder="filter hosts (regex; ! inverts)", id="filter", classes="hidden")
        yield Footer()

    def on_mount(self) -> None:
        self.rebuild()
        # The fleet-wide line sums every host: once a second is fresh enough, and keeps a
        # busy fleet's per-sample cost independent of its size.
        self.set_interval(1.0, self.update_summary)
        self.query_one(HostList).focus()

    # ------------------------------------------------------------------ rendering

    @property
    def filter_text(self) -> str:
        return self.view.filter_text

    def _labels(self) -> list[Text | str]:
        return [self.view.label(i) for i in range(len(COLUMNS))]

    def _header(self) -> Text:
        widths = self.query_one(HostList).widths if self.is_mounted else None
        return join_cells(self._labels(), "bold", widths)

    def _row(self, name: str) -> Row:
        model = self.desk.state.models[name]
        return Row(name, host_cells(model), host_sort_values(model))

    def _matches(self, name: str) -> bool:
        return not self.filter_text or self.view.matches(self._row(name).text())

    def rebuild(self) -> None:
        self._pending.clear()
        hosts = self.query_one(HostList)
        shown = self.view.apply([self._row(n) for n in self.desk.state.models])
        hosts.set_rows([row.key for row in shown])
        for row in shown:
            hosts.show(row.key, list(row.cells))
        self.fit_columns()
        self.update_summary()

    def fit_columns(self) -> None:
        """Size the columns to their content and the screen's width (narrow: drop some)."""
        hosts = self.query_one(HostList)
        width = hosts.scrollable_content_region.width - 2  # the rows' padding
        if width <= 0:
            return
        rows = [self._labels(), *(row.cells for row in hosts.rows.values() if row.cells)]
        if hosts.set_widths(fit_widths(rows, width)):
            self.query_one("#hosts-header", Line).set(self._header())

    def on_resize(self, event: events.Resize) -> None:
        self.call_after_refresh(self.fit_columns)

    def host_changed(self, name: str) -> None:
        """Note that a host changed; rows are redrawn together a few times a second.

        Many hosts streaming at 1 Hz would otherwise each cost a screen update of their own.
        """
        model = self.desk.state.models.get(name)
        if model is None or (name in self.query_one(HostList).rows) != self._matches(name):
            self.rebuild()  # a host came or went: at once
            return
        self._pending.add(name)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.set_timer(FLUSH_INTERVAL, self.flush)
        if (
            model.status.state is ConnState.HOST_KEY_UNKNOWN
            and name not in self._asked_keys
            and self.app.screen is self
        ):
            self._asked_keys.add(name)
            self.ask_host_key(name)

    def flush(self) -> None:
        self._flush_scheduled = False
        if self.view.sort is not None:
            self.rebuild()  # a changed cell may move its row
            return
        pending, self._pending = self._pending, set()
        with self.app.batch_update():
            for name in pending:
                self.show_host(name)
            self.fit_columns()

    def show_host(self, name: str) -> None:
        hosts = self.query_one(HostList)
        model = self.desk.state.models.get(name)
        if model is None or (name in hosts.rows) != self._matches(name):
            self.rebuild()
        elif name in hosts.rows:
            hosts.show(name, host_cells(model))

    def update_summary(self) -> None:
        models = list(self.desk.state.models.values())
        connected = sum(m.status.state is ConnState.CONNECTED for m in models)
        attention = sum(m.status.state.needs_user for m in models)
        parts = [f"{len(models)} hosts", f"{connected} connected"]
        summaries = [m.gpu_summary for m in models if m.gpu_summary is not None]
        if summaries:
            free = sum(s.free for s in summaries)
            total = sum(s.count for s in summaries)
            parts.append(f"free GPUs: {free}/{total}")
            if any(m.gpu is not None and m.gpu.simulated for m in models):
                parts.append("SIMULATED")
        idle = sum(len(m.gpu_idle.idle()) for m in models)
        if idle:
            parts.append(f"idle containers: {idle} (X stops one)")
        if attention:
            parts.append(f"{attention} need attention")
        if self.view.filter_error is not None:
            parts.append(f"filter {self.filter_text!r} is not a valid regex; showing all")
        elif self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        if self.view.sort is not None:
            parts.append(self.view.describe())
        self.query_one("#fleet-summary", Line).set(" · ".join(parts))

    # ------------------------------------------------------------------ actions

    def _selected(self) -> str | None:
        return self.query_one(HostList).cursor

    def action_add_host(self) -> None:
        self.app.push_screen(AddHostModal(self.desk.state.inventory), self._added)

    def _added(self, host: Host | None) -> None:
        if host is not None:
            self.desk.add_host(host)

    def on_host_list_opened(self, event: HostList.Opened) -> None:
        self.action_open_host()

    def action_open_host(self) -> None:
        name = self._selected()
        if name is None:
            return
        model = self.desk.state.models[name]
        if model.status.state is ConnState.HOST_KEY_UNKNOWN:
            self.ask_host_key(name)
            return
        self.desk.open_host(name)

    def ask_host_key(self, name: str) -> None:
        model = self.desk.state.models[name]

        def answered(accepted: bool | None) -> None:
            if accepted:
                self.desk.state.accept_host_key(name)

        self.app.push_screen(HostKeyModal(model.host, model.status), answered)

    def action_stop_idle(self) -> None:
        """Offer to stop the selected host's longest idle container."""
        name = self._selected()
        if name is not None:
            offer_stop_idle(self, name)

    def on_notice(self, message: Notice) -> None:
        show_notice(self, message)

    def on_action_done(self, message: ActionDone) -> None:
        show_notice(self, message)

    def action_runs(self) -> None:
        self.desk.open_runs()

    def action_retry(self) -> None:
        name = self._selected()
        if name is not None:
            self.desk.state.retry_host(name)
            self.notify(f"Reconnecting to {name}…")

    def action_remove_host(self) -> None:
        name = self._selected()
        if name is None:
            return
        model = self.desk.state.models[name]
        if model.host.builtin:
            self.notify(f"{name} is built in and cannot be removed.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.desk.remove_host(name)

        self.app.push_screen(
            ConfirmModal(
                f"Remove host {name} ({model.host.destination}) from gpudesk?",
                "Only the inventory entry goes; containers, workspaces and runs on the host stay.",
                confirm="Remove",
            ),
            answered,
        )

    def _resorted(self) -> None:
        self.query_one("#hosts-header", Line).set(self._header())
        self.rebuild()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("hidden")
        box.value = self.filter_text
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.view.filter_text = event.value
            self.rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.query_one(HostList).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.add_class("hidden")
        self.view.filter_text = ""
        self.rebuild()
        self.query_one(HostList).focus()
