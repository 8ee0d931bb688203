"""A host's own screen: connection and engine, live GPU panel, and its dev containers."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Header, Input, Static

from gpudesk.app.desk import HostView, show_notice
from gpudesk.app.idle_stop import offer_stop_idle
from gpudesk.app.messages import ActionDone, ForwardOpened, InspectLoaded, Notice
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.forwards import ForwardChoice, ForwardShown, ForwardsModal
from gpudesk.app.modals.include_question import ask_ssh_include
from gpudesk.app.modals.inspect import InspectModal
from gpudesk.app.modals.launch import LaunchModal
from gpudesk.app.modals.submit_run import SubmitRunModal
from gpudesk.app.plain import plain, visible
from gpudesk.app.run_source import RunSource
from gpudesk.app.screens.gpu_processes import RUNS_POLL_INTERVAL, GpuProcessScreen, Killer
from gpudesk.app.screens.launch_progress import LaunchProgressScreen
from gpudesk.app.screens.logs import LogScreen
from gpudesk.app.widgets import container_table
from gpudesk.app.widgets.container_table import COLUMNS, container_row
from gpudesk.app.widgets.gpu_panel import GpuPanel, GpuProcessTable
from gpudesk.app.widgets.table_nav import NavTable
from gpudesk.core import sshconfig
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.containers.stats import gpu_memory_by_container
from gpudesk.core.containers.watch import ContainersStale
from gpudesk.core.devcontainers import LaunchRequest, Reach
from gpudesk.core.flavours import SSH_HOST_PREFIX, Flavour
from gpudesk.core.gpu.sample import free_gpu_indices
from gpudesk.core.logs import LogTarget


class HostScreen(HostView, GpuProcessScreen):
    DEFAULT_CSS = """
    HostScreen #containers-filter { dock: bottom; margin-bottom: 1; }
    """
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("L", "launch('ssh')", "Launch SSH"),
        # The footer shows the daily keys; ? lists every one (80 columns hold no more).
        Binding("J", "launch('jupyter')", "Launch Jupyter", show=False),
        Binding("s", "shell", "Shell"),
        Binding("o", "open_jupyter", "Open Jupyter", show=False),
        Binding("f", "forwards", "Forwards", show=False),
        Binding("l", "logs", "Logs"),
        Binding("R", "submit_run", "Submit run"),
        Binding("u", "act('start')", "Start", show=False),
        Binding("x", "act('stop')", "Stop", show=False),
        Binding("X", "stop_idle", "Stop idle", show=False),
        Binding("r", "act('restart')", "Restart", show=False),
        Binding("ctrl+d", "remove", "Remove", show=False),
        Binding("i", "inspect", "Inspect", show=False),
        Binding("a", "toggle_all", "All containers", show=False),
        Binding("c", "reconnect", "Reconnect", show=False),
    ]

    def __init__(
        self, name: str, *, runs: RunSource | None = None, killer: Killer | None = None
    ) -> None:
        """``runs`` and ``killer`` default to the fleet's; tests pass recorded ones."""
        super().__init__(name, runs=runs, killer=killer)
        self.sub_title = name
        self.show_all = False
        self._containers_shown: tuple[object, ...] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="host-body"):
            yield Static(id="host-info")
            yield GpuPanel(id="gpu-panel")
            yield GpuProcessTable(id="gpu-processes")
            yield Static("", id="containers-title")
            yield NavTable(COLUMNS, id="containers")
        yield Input(placeholder="filter containers (regex; ! inverts)", id="containers-filter",
                    classes="hidden")  # fmt: skip
        yield Footer()

    def on_mount(self) -> None:
        self.show_host()
        self.table.focus()
        self.poll_runs()
        self.set_interval(RUNS_POLL_INTERVAL, self.poll_runs)
        # UP is computed when drawn; redraw it (and nothing else) once a second.
        self.set_interval(1.0, self.redraw_containers)

    def on_unmount(self) -> None:
        # Leaving the screen ends its container stats streams.
        self.desk.state.stop_container_stats(self.host_name)

    @property
    def table(self) -> NavTable:
        return self.query_one("#containers", NavTable)

    # ------------------------------------------------------------------ rendering

    def host_changed(self, name: str) -> None:
        if name == self.host_name:
            self.show_host()

    def show_host(self) -> None:
        name = self.host_name
        model = self.desk.state.models.get(name)
        info = self.query_one("#host-info", Static)
        if model is None:
            info.update(f"{name} was removed.")
            return
        status = model.status
        # Messages, versions and OS names come from the host: plain text, never markup.
        lines = [
            f"{model.host.name} · {model.host.destination}",
            f"state    {status.state.value}"
            + (f"  ({visible(status.message)})" if status.message else ""),
        ]
        if status.latency_ms is not None and model.host.hostname:
            lines.append(f"latency  {status.latency_ms:.1f} ms")
        if model.engine is not None:
            e = model.engine
            runtime = "NVIDIA runtime" if e.gpu_runtime else "no NVIDIA runtime"
            lines.append(
                visible(f"docker   {e.version} (API {e.api_version}) on {e.os}, {runtime}")
            )
        elif model.engine_error:
            lines.append(visible(f"docker   {model.engine_error}"))
        if model.gpu_note:
            lines.append(visible(f"gpus     {model.gpu_note}"))
        text = plain("\n".join(lines))
        text.stylize("bold", 0, len(model.host.name))
        info.update(text)
        if model.gpu is not None:
            self.query_one(GpuPanel).show(model.gpu, model.gpu_history, model.gpu_summary)
            self.query_one(GpuProcessTable).show(model.gpu, self.run_names(model.gpu))
        shown = (
            model.containers,
            model.containers_error,
            model.containers_stale,
            self.show_all,
            model.container_usage,
            gpu_memory_by_container(model.gpu),
            tuple(c.name for c in model.gpu_idle.idle()),
        )
        if shown != self._containers_shown:
            # GPU samples arrive every second; the container table changes only on engine
            # events, stats ticks and the UP column's own once-a-second redraw.
            self._containers_shown = shown
            self.show_containers(model.containers, model.containers_error)

    def show_stale(self, stale: ContainersStale, listed: bool) -> None:
        """Say the list is not live, since when, and why (plain text: the reason is remote)."""
        since = stale.since.astimezone().strftime("%H:%M:%S")
        what = f"stale since {since}" if listed else "no list yet"
        self.query_one("#containers-title", Static).update(
            Text.assemble(
                ("Containers", "bold"),
                " · ",
                (f"{what}, reconnecting…", "bold yellow"),
                plain(f" ({stale.reason}; next try within {stale.retry_in:.0f} s)"),
            )
        )

    def redraw_containers(self) -> None:
        model = self.desk.state.models.get(self.host_name)
        if model is not None:
            self.show_containers(model.containers, model.containers_error)

    def listed(self, infos: list[ContainerInfo]) -> list[ContainerInfo]:
        """The containers the table lists: gpudesk's, or all of them after ``a``."""
        return [i for i in infos if self.show_all or i.is_gpudesk]

    def show_containers(self, infos: list[ContainerInfo] | None, error: str | None) -> None:
        title = self.query_one("#containers-title", Static)
        table = self.table
        scope = "all containers" if self.show_all else "gpudesk containers"
        model = self.desk.state.models.get(self.host_name)
        stale = model.containers_stale if model is not None else None
        if stale is not None:
            # A list that is not live says so whatever redraws it (the UP column's tick too).
            self.show_stale(stale, infos is not None)
        if infos is None or model is None:
            if stale is None:
                title.update(
                    Text.assemble(("Containers", "bold"), plain(f" · {error or 'loading…'}"))
                )
            return
        shown = self.listed(infos)
        gpu_memory = gpu_memory_by_container(model.gpu)
        now = container_table.clock()
        idle = model.gpu_idle
        rows = [
            container_row(
                i, model.container_usage.get(i.name), gpu_memory.get(i.name), now, idle.get(i.name)
            )
            for i in shown
        ]
        with self.app.batch_update():
            table.show_rows(rows)
        # Watch exactly the running containers on screen, in the table's order: past the
        # stream cap the first ones stream and the rest are polled, so sorting or filtering
        # brings the containers that matter into the streamed ones.
        running = {i.name for i in shown if i.state == "running"}
        self.desk.state.watch_container_stats(
            self.host_name, [key for key in table.shown_keys if key in running]
        )
        parts = [f"{len(shown)} {scope}"]
        if idle.idle():  # X offers to stop the selected (or longest) idle one
            parts.append(f"{len(idle.idle())} idle ({idle.policy.describe()}) · X stop idle")
        view = table.view
        if view.filter_text:
            parts.append(view.describe_filter(table.row_count, len(shown)))
        if view.sort is not None:
            parts.append(view.describe())
        parts.append("L launch SSH · J launch Jupyter · a toggle all · / filter · < > S sort")
        if stale is None:
            title.update(Text.assemble(("Containers", "bold"), " · " + " · ".join(parts)))

    # ------------------------------------------------------------------ helpers

    def selected(self) -> ContainerInfo | None:
        model = self.desk.state.models.get(self.host_name)
        key = self.table.selected_key
        if model is None or not model.containers or key is None:
            self.notify("No container selected.", severity="warning")
            return None
        for info in model.containers:
            if info.name == key:
                return info
        return None

    # ------------------------------------------------------------------ actions

    def action_back(self) -> None:
        box = self.query_one("#containers-filter", Input)
        if not box.has_class("hidden"):
            box.value = ""
            box.add_class("hidden")
            self.table.view.filter_text = ""
            self.table.refilter()
            self.redraw_containers()
            self.table.focus()
            return
        self.app.pop_screen()

    def action_filter(self) -> None:
        box = self.query_one("#containers-filter", Input)
        box.remove_class("hidden")
        box.value = self.table.view.filter_text
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "containers-filter":
            self.table.view.filter_text = event.value
            self.table.refilter()
            self.redraw_containers()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "containers-filter":
            self.table.focus()

    def on_nav_table_resorted(self, event: NavTable.Resorted) -> None:
        self.redraw_containers()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self.show_host()

    def action_reconnect(self) -> None:
        self.desk.state.retry_host(self.host_name)

    def action_launch(self, flavour: str) -> None:
        model = self.desk.state.models.get(self.host_name)
        if model is None:
            return
        free = free_gpu_indices(model.gpu) if model.gpu is not None else None
        taken = {i.name for i in model.containers or []}
        runtime = bool(model.engine and model.engine.gpu_runtime)
        modal = LaunchModal(self.host_name, Flavour(flavour), taken, free, runtime)
        self.app.push_screen(modal, self._launch)

    def _launch(self, request: LaunchRequest | None) -> None:
        if request is not None:
            self.app.push_screen(LaunchProgressScreen(self.host_name, request), self._launched)

    def _launched(self, reach: Reach | None) -> None:
        if reach is not None and reach.flavour is Flavour.SSH and reach.ssh_alias:
            ask_ssh_include(self.app, self.desk.state.paths, reach.ssh_alias)

    def action_shell(self) -> None:
        info = self.selected()
        if info is None:
            return
        if info.flavour is not Flavour.SSH:
            self.notify(
                f"{info.name} is not an SSH container; use l for its logs.", severity="warning"
            )
            return
        home = self.desk.state.paths.home
        if not any(e.name == info.name for e in sshconfig.entries(home)):
            self.notify(
                f"No ssh entry for {info.name}; was it launched by gpudesk here?", severity="error"
            )
            return
        ssh = shutil.which("ssh")
        if ssh is None:
            self.notify("The OpenSSH client `ssh` is not installed here.", severity="error")
            return
        argv = [ssh, "-F", str(sshconfig.config_path(home)), SSH_HOST_PREFIX + info.name]
        try:
            with self.app.suspend():
                subprocess.run(argv, check=False)
        except Exception as exc:
            self.notify(f"Cannot open a shell from here: {exc}", severity="error")

    def action_open_jupyter(self) -> None:
        info = self.selected()
        if info is None:
            return
        if info.flavour is not Flavour.JUPYTER:
            self.notify(f"{info.name} is not a Jupyter container.", severity="warning")
            return
        self.desk.open_jupyter(self.host_name, info.name)

    def action_forwards(self) -> None:
        info = self.selected()
        if info is None:
            return
        state = self.desk.state
        shown = [
            ForwardShown(port, forward.url)
            for port, forward in sorted(state.forwards_of(self.host_name, info.name).items())
        ]

        def chosen(choice: ForwardChoice | None) -> None:
            if choice is None:
                return
            if choice.action == "close":
                closed = state.close_forward(self.host_name, info.name, choice.port)
                if closed is not None:
                    self.notify(f"stopped forwarding {closed.url} -> {info.name}:{choice.port}")
            else:
                self.open_forward(info.name, choice.port, choice.local_port)

        self.app.push_screen(ForwardsModal(self.host_name, info.name, shown), chosen)

    @work(thread=True, group="forward", exit_on_error=False)
    def open_forward(self, name: str, port: int, local_port: int | None) -> None:
        try:
            forward = self.desk.state.open_forward(self.host_name, name, port, local_port)
        except Exception as exc:
            self.post_message(Notice(str(exc), error=True, timeout=10))
            return
        self.post_message(ForwardOpened(forward.url, f"{forward.url} -> {name}:{port}"))

    def on_forward_opened(self, message: ForwardOpened) -> None:
        self.app.copy_to_clipboard(message.url)
        self.notify(f"{message.text}\n(copied to the clipboard)", timeout=10)

    def action_act(self, verb: str) -> None:
        info = self.selected()
        if info is not None:
            self.notify(f"{verb} {info.name}…")
            self.act_on_container(verb, info.name)

    @work(thread=True, group="container-action", exit_on_error=False)
    def act_on_container(self, verb: str, name: str) -> None:
        try:
            result = self.desk.state.devcontainers(self.host_name).act(verb, name)
        except Exception as exc:
            self.post_message(Notice(str(exc), error=True, timeout=10))
            return
        done = "removed (workspace kept)" if verb == "rm" else getattr(result, "status", verb)
        self.post_message(ActionDone(f"{name}: {done}"))

    def on_notice(self, message: Notice) -> None:
        show_notice(self, message)

    def on_action_done(self, message: ActionDone) -> None:
        self.on_notice(message)
        self.desk.refresh_containers(self.host_name)

    def action_remove(self) -> None:
        info = self.selected()
        if info is None:
            return
        detail = (
            f"The container goes (stopped first if running). Its workspace folder "
            f"{info.workspace or '(none)'} on {self.host_name} and everything in it stay."
        )
        if info.flavour is Flavour.SSH:
            detail += f" The ssh entry {SSH_HOST_PREFIX}{info.name} is removed."

        def answered(yes: bool | None) -> None:
            if yes:
                self.act_on_container("rm", info.name)

        self.app.push_screen(
            ConfirmModal(f"Remove container {info.name}?", detail, confirm="Remove"), answered
        )

    def action_stop_idle(self) -> None:
        offer_stop_idle(self, self.host_name, self.table.selected_key)

    def action_inspect(self) -> None:
        info = self.selected()
        if info is not None:
            self.load_inspect(info.name)

    @work(thread=True, group="inspect", exit_on_error=False)
    def load_inspect(self, name: str) -> None:
        try:
            data: Any = self.desk.state.devcontainers(self.host_name).engine().inspect(name)
        except Exception as exc:
            self.post_message(Notice(str(exc), error=True))
            return
        self.post_message(InspectLoaded(name, json.dumps(data, indent=2, default=str)))

    def on_inspect_loaded(self, message: InspectLoaded) -> None:
        self.app.push_screen(InspectModal(message.name, message.text))

    def action_logs(self) -> None:
        info = self.selected()
        if info is None:
            return
        self.app.push_screen(LogScreen(self.host_name, LogTarget.container(info.name)))

    def action_submit_run(self) -> None:
        info = self.selected()
        if info is None:
            return
        if info.state != "running":
            self.notify(f"{info.name} is {info.state}; start it first (u).", severity="warning")
            return
        self.app.push_screen(SubmitRunModal(self.host_name, info.name))
