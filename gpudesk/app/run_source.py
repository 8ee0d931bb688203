"""Where the runs views get their runs: every connected host of the fleet (called from workers
only), or in tests a recorded source."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gpudesk.app.state import FleetState
    from gpudesk.core import runs as core_runs
    from gpudesk.core.runs import Run, StopResult, multinode
else:
    from gpudesk.core.lazy import lazy_module

    # Imported when a runs view first asks, off the first frame's path.
    core_runs = lazy_module("gpudesk.core.runs")
    multinode = lazy_module("gpudesk.core.runs.multinode")


class RunSource(Protocol):
    """Where the runs views get their runs; tests inject a recorded one."""

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]: ...

    def run(self, host: str, name: str, container: str) -> Run: ...

    def stop(self, run: Run, grace: float) -> StopResult: ...

    def rerun(self, run: Run) -> Run: ...


class FleetRunSource:
    """The runs views' source: every connected host of the fleet (called from workers only)."""

    def __init__(self, state: FleetState) -> None:
        self.state = state

    def _hosts(self, host: str | None) -> list[str]:
        names = [host] if host else list(self.state.models)
        return [n for n in names if self.state.connected(n)]

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]:
        runs: list[Run] = []
        errors: list[str] = []
        failed: dict[str, str] = {}
        for name in self._hosts(host):
            try:
                runs += core_runs.list_runs(self.state.service(name))
            except Exception as exc:  # one broken host must not hide the others' runs
                errors.append(f"{name}: {exc}")
                failed[name] = str(exc)
        # a multi-node run is one row, its nodes' states in it (core/runs/multinode.py)
        return multinode.merge_nodes(runs, set(self._hosts(host)) - set(failed), failed), errors

    def run(self, host: str, name: str, container: str) -> Run:
        return core_runs.get_run(self.state.service(host), name, container=container or None)

    def stop(self, run: Run, grace: float) -> StopResult:
        if run.nodes:  # a multi-node run: every node at once
            nodes = [
                (service, core_runs.get_run(service, run.name, n.container, detail=False))
                for n in run.nodes
                if self.state.connected(n.host) and (service := self.state.service(n.host))
            ]
            results = multinode.stop_nodes(nodes, grace)
            outcome = next((r.outcome for r in results if r.outcome != "terminated"), "terminated")
            return core_runs.StopResult(run.name, outcome, " ".join(r.message for r in results))
        return core_runs.stop_run(self.state.service(run.host), run, grace=grace)

    def rerun(self, run: Run) -> Run:
        return core_runs.rerun(self.state.service(run.host), run)
