"""How a run's state looks wherever runs are listed or shown."""

from __future__ import annotations

from gpudesk.core.runs import RunState

STATE_STYLE = {
    RunState.STARTING: "yellow",
    RunState.RUNNING: "bold cyan",
    RunState.SUCCEEDED: "green",
    RunState.FAILED: "bold red",
    RunState.STOPPED: "magenta",
    RunState.LOST: "red",
    RunState.ABANDONED: "red",
    RunState.DEGRADED: "bold yellow",
}
