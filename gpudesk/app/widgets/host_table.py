"""How one host reads as a row of the Fleet list: its cells, in column order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from gpudesk.app.plain import cell
from gpudesk.core.config import HostKind
from gpudesk.core.ssh import ConnState

if TYPE_CHECKING:
    from gpudesk.app.state import HostModel

STATE_STYLE = {
    ConnState.CONNECTED: "bold green",
    ConnState.CONNECTING: "yellow",
    ConnState.DISCONNECTED_RETRYING: "yellow",
    ConnState.UNREACHABLE: "red",
    ConnState.AUTH_FAILED: "bold red",
    ConnState.HOST_KEY_UNKNOWN: "bold yellow",
    ConnState.HOST_KEY_CHANGED: "bold red reverse",
    ConnState.CLOSED: "dim",
}


def state_text(model: HostModel) -> Text:
    status = model.status
    return Text(status.state.value, style=STATE_STYLE.get(status.state, ""))


# Words in core's engine and container error sentences (core/engine.py describe_failure),
# and the few words the Fleet's cell shows for each; the host screen has the whole sentence.
SHORT_REASONS = (
    ("docker CLI is missing", "no docker CLI"),
    ("No permission", "permission denied"),
    ("No such file", "no socket"),
    ("Connection refused", "refused"),
    ("refused the request", "request refused"),
    ("timed out", "timed out"),
    ("not reachable", "dockerd not answering"),
)


def short_reason(error: str) -> str:
    """A few words for a cell from one of core's one-sentence errors."""
    for words, short in SHORT_REASONS:
        if words in error:
            return short
    return error.split(";", maxsplit=1)[0].split(".", maxsplit=1)[0][:24]


def docker_text(model: HostModel) -> Text:
    if model.engine is not None:
        suffix = " +nvidia" if model.engine.gpu_runtime else ""
        return cell(f"{model.engine.version}{suffix}")  # the host's own words
    if model.engine_error:
        return cell(f"unreachable: {short_reason(model.engine_error)}", style="red")
    return Text("-", style="dim")


def containers_text(model: HostModel) -> Text | str:
    if model.containers_error:
        return cell(f"error: {short_reason(model.containers_error)}", style="red")
    text = model.extra.get("containers", "-")
    idle = len(model.gpu_idle.idle())
    if not idle:
        return text
    # Containers holding GPUs that stayed idle for the window: worth a look (X stops one).
    return Text.assemble(text, " ", (f"{idle} idle", "bold yellow"))


def host_cells(model: HostModel) -> list[Text | str]:
    latency = model.status.latency_ms
    connected = model.status.state is ConnState.CONNECTED
    if model.host.kind is HostKind.LOCAL:
        latency_cell = "local"
    elif connected and latency is not None:
        latency_cell = f"{latency:.1f} ms"
    elif model.status.retry_in:
        latency_cell = f"retry {model.status.retry_in:.0f}s"
    else:
        latency_cell = "-"
    return [
        Text(model.host.name, style="bold"),
        model.host.destination,
        state_text(model),
        latency_cell,
        docker_text(model),
        model.extra.get("gpus", "-"),
        containers_text(model),
    ]


def host_sort_values(model: HostModel) -> list[float | int | str | None]:
    """What each Fleet column sorts by: latency as a number, the rest by their text."""
    cells = [c.plain if isinstance(c, Text) else str(c) for c in host_cells(model)]
    latency = model.status.latency_ms
    connected = model.status.state is ConnState.CONNECTED
    if model.host.kind is HostKind.LOCAL:
        latency_value: float | None = 0.0
    else:
        latency_value = latency if connected and latency is not None else None
    return [*cells[:3], latency_value, *cells[4:]]
