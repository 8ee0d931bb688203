"""The host screen's GPU processes: which run each belongs to (enter opens it), and killing one
(``k``). A base of :class:`~gpudesk.app.screens.host.HostScreen`, kept apart to keep it small.
"""

from __future__ import annotations

from collections.abc import Callable

from textual import work
from textual.screen import Screen

from gpudesk.app.desk import Desk, desk_of
from gpudesk.app.messages import Notice, RunsLoaded
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.run_source import FleetRunSource, RunSource
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.app.widgets.gpu_panel import GpuProcessTable
from gpudesk.core.gpu.kill import DEFAULT_GRACE, KillPlan, KillResult, kill_process, plan_kill
from gpudesk.core.gpu.owners import run_of
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.runs import Run

# How often the screen re-reads the host's runs to name the GPU processes that belong to one.
RUNS_POLL_INTERVAL = 5.0

Killer = Callable[[str, KillPlan, float], KillResult]


class GpuProcessScreen(Screen[None]):
    def __init__(
        self, name: str, *, runs: RunSource | None = None, killer: Killer | None = None
    ) -> None:
        super().__init__()
        self.host_name = name
        self._run_source = runs
        self._killer = killer
        self.runs: list[Run] = []

    @property
    def desk(self) -> Desk:
        return desk_of(self)

    def show_host(self) -> None:
        raise NotImplementedError

    def run_source(self) -> RunSource:
        if self._run_source is None:
            self._run_source = FleetRunSource(self.desk.state)
        return self._run_source

    # ------------------------------------------------------------------ GPU processes

    def run_names(self, sample: GpuSample) -> dict[str, str]:
        """The gpudesk run each of ``sample``'s processes belongs to, by process table key."""
        names: dict[str, str] = {}
        for proc in sample.processes:
            run = run_of(proc, self.runs)
            if run is not None:
                names[GpuProcessTable.key_of(proc)] = run.name
        return names

    def poll_runs(self) -> None:
        model = self.desk.state.models.get(self.host_name)
        # Runs only matter for GPU processes in containers: no such process, no reading.
        if model is None or model.gpu is None:
            return
        if any(p.container_name for p in model.gpu.processes):
            self.load_runs()

    @work(thread=True, group="host-runs", exclusive=True, exit_on_error=False)
    def load_runs(self) -> None:
        try:
            runs, errors = self.run_source().runs(self.host_name)
        except Exception as exc:
            self.post_message(RunsLoaded([], [str(exc)]))
            return
        self.post_message(RunsLoaded(runs, errors))

    def on_runs_loaded(self, message: RunsLoaded) -> None:
        # A host whose runs cannot be read keeps the names it had; the runs view says why.
        if message.runs or not message.errors:
            self.runs = [r for r in message.runs if r.host == self.host_name]
            self.show_host()

    def on_gpu_process_table_run_asked(self, event: GpuProcessTable.RunAsked) -> None:
        run = next((r for r in self.runs if r.name == event.run), None) if event.run else None
        if run is None:
            where = event.process.container_name
            why = (
                f"it runs in {where} but not as one of its gpudesk runs"
                if where
                else "it runs outside gpudesk's containers"
            )
            self.notify(f"pid {event.process.pid} is not part of a gpudesk run: {why}.")
            return
        self.app.push_screen(
            RunDetailScreen(self.host_name, run.name, run.container, source=self.run_source())
        )

    def on_gpu_process_table_kill_asked(self, event: GpuProcessTable.KillAsked) -> None:
        model = self.desk.state.models.get(self.host_name)
        if model is None or model.gpu is None:
            return
        proc = event.process
        ours = {i.name for i in model.containers or [] if i.is_gpudesk}
        plan = plan_kill(proc, host=model.host, ours=ours, simulated=model.gpu.simulated)
        if isinstance(plan, str):
            self.notify(f"Cannot kill: {plan}", severity="warning", timeout=10)
            return
        run = run_of(proc, self.runs)
        where = (
            f"{plan.container} (pid {plan.pid} inside it)"
            if plan.container
            else f"the host {self.host_name} (no container)"
        )
        detail = "\n".join(
            [
                f"command    {proc.command}",
                f"container  {where}",
                f"user       {proc.user or 'unknown'}",
                f"GPU        {proc.gpu}" + (f"   run {run.name}" if run else ""),
                "",
                f"gpudesk sends SIGTERM, then SIGKILL if it is still running after "
                f"{DEFAULT_GRACE:.0f} s."
                + (
                    " Stopping the run instead (ctrl+d on the runs view) lets it save a checkpoint."
                    if run
                    else ""
                ),
            ]
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.notify(f"Sending SIGTERM to pid {proc.pid}…")
                self.kill(plan)

        self.app.push_screen(
            ConfirmModal(f"Kill GPU process {proc.pid}?", detail, confirm="Kill"), answered
        )

    @work(thread=True, group="gpu-kill", exit_on_error=False)
    def kill(self, plan: KillPlan) -> None:
        try:
            if self._killer is not None:
                result = self._killer(self.host_name, plan, DEFAULT_GRACE)
            else:
                service = self.desk.state.service(self.host_name)
                result = kill_process(service, plan, DEFAULT_GRACE)
        except Exception as exc:
            self.post_message(Notice(str(exc), error=True, timeout=10))
            return
        failed = result.outcome in ("denied", "other")
        self.post_message(Notice(result.message, error=failed, timeout=10))
