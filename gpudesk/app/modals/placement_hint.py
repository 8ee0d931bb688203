"""The launch and submit forms' placement hint: where ``submit --gpus N`` would go now, from
the live samples FleetState keeps (the same :func:`gpudesk.core.placement.place`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from textual.widgets import Static

from gpudesk.app.plain import plain
from gpudesk.core.placement import HostFree, free_map, suggestion

if TYPE_CHECKING:
    from gpudesk.app.state import FleetState


def fleet_free(state: FleetState) -> list[HostFree]:
    """Each host's free GPUs from its latest sample, in the Fleet's order."""
    rows: list[tuple[str, Any]] = []
    problems: dict[str, str] = {}
    for name, model in state.models.items():
        if state.connected(name):
            rows.append((name, model.gpu))
        else:
            rows.append((name, None))
            problems[name] = model.status.state.value
    return free_map(rows, problems)


def gpu_count(text: str) -> int:
    """How many GPUs a launch form's GPU field asks for ("2" -> 2, "0,3" -> 2, else 1)."""
    text = text.strip().lower().removeprefix("device=")
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    if "," in text:
        return max(1, len([p for p in text.split(",") if p.strip()]))
    return 1


class PlacementHint(Static):
    """ "suggested: gpu2 (GPUs 6,7 free)"; hidden when the form was given no fleet."""

    DEFAULT_CSS = """
    PlacementHint { color: $text-muted; height: 1; }
    PlacementHint.-none { display: none; }
    """

    def __init__(self, hosts: Sequence[HostFree], count: int = 1, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.hosts = list(hosts)
        self.set_class(not self.hosts, "-none")
        self.show(count)

    def show(self, count: int) -> None:
        if self.hosts:
            self.update(plain(suggestion(self.hosts, max(1, count))))
