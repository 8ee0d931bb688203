"""Controlling a run: stop it (SIGTERM, then SIGKILL) or submit it again."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpudesk.core.flavours import label
from gpudesk.core.runs.container import container_labels, exec_in, get_container
from gpudesk.core.runs.discovery import get_run
from gpudesk.core.runs.model import Run, RunError, RunSpec, RunState
from gpudesk.core.runs.submit import submit
from gpudesk.core.service import Service

_STOP_SCRIPT = r"""
d=$1; grace=$2
[ -f "$d/exit_code" ] && { echo finished; exit 0; }
# The marker first: a wrapper that writes its pid after this sees it and does not start.
date +%s > "$d/stopped"
pg=$(cat "$d/pid" 2>/dev/null) || { echo nopid; exit 0; }
kill -TERM "-$pg" 2>/dev/null || { echo gone; exit 0; }
end=$(( $(date +%s) + grace ))
while kill -0 "-$pg" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$end" ]; then kill -KILL "-$pg" 2>/dev/null; echo killed; exit 0; fi
  sleep 0.2
done
echo terminated
"""


@dataclass(frozen=True)
class StopResult:
    run: str
    outcome: str  # terminated | killed | finished | gone | nopid
    message: str


MIN_GRACE = 10.0
EXIT_BARRIER_S = 20.0


def default_grace(run: Run) -> float:
    """Seconds between SIGTERM and SIGKILL: enough for the run's own checkpoint write.

    A stopped run finishes its step and writes a checkpoint; a GPT-2-small one took 6.9 s to
    write here, so a fixed 10 s killed larger runs before they saved. Sized from the last
    ``ckpt`` line's ``seconds`` (3x it, plus 5 s for the step), never under 10 s.
    """
    written = run.metrics.ckpt_seconds
    grace = MIN_GRACE if written is None else max(MIN_GRACE, 3 * written + 5)
    # A multi-node run's torchruns also meet at an exit barrier on node 0 before they end.
    return grace + EXIT_BARRIER_S if run.nnodes > 1 else grace


def stop_run(service: Service, run: Run | str, grace: float | None = None) -> StopResult:
    """SIGTERM the run's process group (the scripts checkpoint), SIGKILL after ``grace`` s
    (default: :func:`default_grace`)."""
    target = run if isinstance(run, Run) else get_run(service, run, detail=False)
    if grace is None:
        grace = default_grace(target)
    if target.state.finished and target.state is not RunState.ABANDONED:
        raise RunError(f"Run {target.name} already ended ({target.state_text}); nothing to stop.")
    client = service.docker()
    container = get_container(client, target.container)
    if container.status != "running":
        raise RunError(
            f"Container {target.container} is not running, so {target.name} is not either."
        )
    user = container_labels(container).get(label("user"), "")
    seconds = max(0, math.ceil(grace))
    code, out = exec_in(
        container, ["sh", "-c", _STOP_SCRIPT, "sh", target.container_dir, str(seconds)], user
    )
    outcome = (out.strip().splitlines() or ["?"])[-1]
    if code != 0:
        raise RunError(f"Could not stop {target.name}: {out.strip()[:200]}.")
    messages = {
        "terminated": f"Stopped {target.name} (SIGTERM; it saved a checkpoint if it could).",
        "killed": f"Killed {target.name}: it did not end within {seconds} s of SIGTERM.",
        "finished": f"{target.name} had already ended.",
        "gone": f"{target.name} had no processes left; marked stopped.",
        "nopid": f"{target.name} had not started; it will not start now (marked stopped).",
    }
    return StopResult(
        target.name, outcome, messages.get(outcome, f"Stopping {target.name}: {outcome}.")
    )


def rerun(service: Service, run: Run, name: str | None = None) -> Run:
    """Submit ``run`` again in the same container with the same script, arguments and nproc."""
    spec = RunSpec(
        script=run.script or run.record.get("script_path", ""),
        args=tuple(run.args),
        nproc=run.nproc,
        name=name,
    )
    return submit(service, run.container, spec)
