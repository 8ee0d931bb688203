"""How a container reads as a row of a host's container table."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from rich.text import Text

from gpudesk.app.plain import cell
from gpudesk.app.widgets.table_nav import Row, SortValue
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.containers.stats import Usage
from gpudesk.core.flavours import has_sudo
from gpudesk.core.gpu.idle import IdleContainer, duration_text

COLUMNS: list[tuple[str, str]] = [
    ("name", "NAME"),
    ("flavour", "FLAVOUR"),
    ("image", "IMAGE"),
    ("state", "STATE"),
    ("uptime", "UP"),
    ("cpu", "CPU %"),
    ("memory", "MEM USED/LIMIT"),
    ("gpu_memory", "GPU MEM"),
    ("gpus", "GPUS"),
    ("ports", "PORTS"),
]

STATE_STYLE = {"running": "green", "exited": "red", "dead": "bold red", "restarting": "yellow"}


def _utc_now() -> datetime:
    return datetime.now(UTC)


# The UP column is computed when drawn, from the container's start time (tests pin the clock).
clock: Callable[[], datetime] = _utc_now


def uptime_seconds(info: ContainerInfo, now: datetime) -> int | None:
    if info.state != "running" or info.started_at is None:
        return None
    return max(0, int((now - info.started_at).total_seconds()))


def uptime_text(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def size_text(size: int | None) -> str:
    """Bytes as docker stats writes them (binary units): 512KiB, 1.5GiB."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f}{unit}" if unit == "B" or value >= 100 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}TiB"


def state_cell(info: ContainerInfo, idle: IdleContainer | None) -> Text:
    """The engine's status, then how long the container's GPUs have been idle, if they are."""
    text = cell(info.status or info.state, style=STATE_STYLE.get(info.state, ""))
    if idle is not None and info.state == "running":
        text.append(f" idle {duration_text(idle.low_s)}", style="bold yellow")
    return text


def container_row(
    info: ContainerInfo,
    usage: Usage | None,
    gpu_memory: int | None,
    now: datetime,
    idle: IdleContainer | None = None,
) -> Row:
    """One container's cells and what each column sorts by."""
    ports = ", ".join(f"{p.host_ip}:{p.host_port}→{p.container_port}" for p in info.ports)
    if info.network:  # nothing published: the container is on the host's network
        ports = f"host net {ports}".strip()
    running = info.state == "running"
    usage = usage if running else None
    up = uptime_seconds(info, now)
    cpu = usage.cpu_percent if usage else None
    used = usage.mem_used if usage else None
    limit = usage.mem_limit if usage else None
    memory = "-" if used is None else f"{size_text(used)} / {size_text(limit)}"
    gpu_memory = gpu_memory if running else None
    # Names, images, statuses and labels are the host's: plain Text, never read as markup.
    cells: list[Text | str] = [
        cell(info.name, style="bold" if info.is_gpudesk else "dim"),
        (info.flavour.value if info.flavour else "-") + ("+sudo" if has_sudo(info.labels) else ""),
        cell(info.image if len(info.image) <= 36 else info.image[:35] + "…"),
        state_cell(info, idle),
        uptime_text(up),
        "-" if cpu is None else f"{cpu:.1f}",
        memory,
        size_text(gpu_memory) if gpu_memory else "-",
        cell(info.gpus or "-"),
        cell(ports or "-"),
    ]
    values: list[SortValue] = [
        info.name,
        str(cells[1]),
        info.image,
        info.state,
        up,
        cpu,
        used,
        gpu_memory,
        info.gpus or None,
        ports or None,
    ]
    return Row(info.name, cells, values)
