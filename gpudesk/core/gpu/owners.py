"""Which gpudesk run a GPU process belongs to: process -> container -> run folder's pid.

A run's ``pid`` file holds its detached shell's pid, which is also its process group (the
wrapper starts it with ``setsid``), inside the container's PID namespace; every process the
run starts (torchrun and its workers) stays in that group. The GPU agent reports each process's
group in that same namespace (``ns_pgid``), so the two compare directly.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpudesk.core.gpu.sample import GpuProcess
from gpudesk.core.runs.model import Run


def run_of(proc: GpuProcess, runs: Iterable[Run]) -> Run | None:
    """The live run ``proc`` belongs to, or ``None``.

    Without the process's group (an older agent), a container that holds exactly one live run
    gives that run; with several, nothing is guessed.
    """
    if not proc.container_name:
        return None
    live = [r for r in runs if r.container == proc.container_name and not r.state.finished]
    if proc.ns_pgid is not None:
        return next((r for r in live if r.pid == proc.ns_pgid), None)
    return live[0] if len(live) == 1 else None
