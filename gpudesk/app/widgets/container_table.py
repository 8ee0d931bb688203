"""How a container reads as a row of a host's container table."""

from __future__ import annotations

from rich.text import Text

from gpudesk.app.plain import cell
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.flavours import has_sudo

COLUMNS: list[tuple[str, str]] = [
    ("name", "NAME"),
    ("flavour", "FLAVOUR"),
    ("image", "IMAGE"),
    ("state", "STATE"),
    ("uptime", "UP"),
    ("gpus", "GPUS"),
    ("ports", "PORTS"),
]

STATE_STYLE = {"running": "green", "exited": "red", "dead": "bold red", "restarting": "yellow"}


def container_cells(info: ContainerInfo) -> list[Text | str]:
    ports = ", ".join(f"{p.host_ip}:{p.host_port}→{p.container_port}" for p in info.ports)
    # Names, images, statuses and labels are the host's: plain Text, never read as markup.
    return [
        cell(info.name, style="bold" if info.is_gpudesk else "dim"),
        (info.flavour.value if info.flavour else "-") + ("+sudo" if has_sudo(info.labels) else ""),
        cell(info.image if len(info.image) <= 36 else info.image[:35] + "…"),
        cell(info.status or info.state, style=STATE_STYLE.get(info.state, "")),
        info.uptime_text,
        cell(info.gpus or "-"),
        cell(ports or "-"),
    ]
