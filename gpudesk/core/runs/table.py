"""The runs table as the runs view and `gpudesk runs` both show it."""

from __future__ import annotations

from gpudesk.core.runs.model import Run, script_label


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


RUN_COLUMNS = (
    "NAME",
    "HOST/CONTAINER",
    "SCRIPT",
    "STATE",
    "STEP",
    "LOSS",
    "TOK/S",
    "ELAPSED",
    "ETA",
)


def run_cells(run: Run) -> list[str]:
    """A run as the runs view and `gpudesk runs` show it, in RUN_COLUMNS order."""
    m = run.metrics
    step = (
        "-" if m.step is None else (f"{m.step}/{m.total_steps}" if m.total_steps else str(m.step))
    )
    return [
        run.name,
        f"{run.host}/{run.container}",
        script_label(run.script),
        run.state_text,
        step,
        format_number(m.loss, ".4f"),
        format_number(m.tokens_per_s, ",.0f"),
        format_duration(run.elapsed),
        format_duration(run.eta),
    ]
