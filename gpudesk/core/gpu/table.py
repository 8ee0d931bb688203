"""An nvidia-smi-like text table of one GPU sample, for ``gpudesk stats``."""

from __future__ import annotations

import time

from gpudesk.core.gpu.sample import DriverState, GpuSample

NA = "N/A"
_MIB = 1024 * 1024


def _num(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    return NA if value is None else fmt.format(value) + unit


def _mib(value: int | None) -> str:
    return NA if value is None else f"{value // _MIB}MiB"


def _gib(value: int | None) -> str:
    return NA if value is None else f"{value / 1024**3:.1f}GiB"


def _opt(value: object) -> str:
    return NA if value is None or value == "" else str(value)


def format_table(sample: GpuSample) -> str:
    """Render ``sample`` as a fixed-width table. Unknown values print as ``N/A``."""
    lines: list[str] = []
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sample.ts))
    title = f"{sample.hostname or NA}  {when}"
    if sample.simulated:
        title += "  SIMULATED"
    lines.append(title)
    lines.append(
        f"Driver: {_opt(sample.driver_version)}  CUDA: {_opt(sample.cuda_version)}"
        f"  NVML: {_opt(sample.nvml_version)}  Source: {_opt(sample.source)}"
    )
    if sample.driver_state is not DriverState.OK:
        lines.append(f"GPU state: {sample.driver_state.value}: {sample.message}")
    host = sample.host
    if host is not None:
        load = NA if host.load is None else " ".join(f"{v:.2f}" for v in host.load)
        lines.append(
            f"Host CPU: {_num(host.cpu_percent, '{:.1f}', '%')}"
            f"  Mem: {_gib(host.mem_used)} / {_gib(host.mem_total)}  Load: {load}"
        )

    header = (
        f"{'GPU':>3}  {'Name':<24} {'Util':>5} {'MemUtil':>7} {'Memory-Usage':>21} "
        f"{'Temp':>5} {'Power':>15} {'Fan':>4} {'SM':>6} {'Mem':>6} {'Perf':>4} "
        f"{'ECC':>4} {'MIG':>4}"
    )
    rule = "-" * len(header)
    lines += [rule, header, rule]
    if not sample.gpus:
        lines.append("No GPUs.")
    for gpu in sample.gpus:
        memory = f"{_mib(gpu.mem_used)} / {_mib(gpu.mem_total)}"
        power = f"{_num(gpu.power_draw, unit='W')} / {_num(gpu.power_limit, unit='W')}"
        mig = NA if gpu.mig_enabled is None else ("On" if gpu.mig_enabled else "Off")
        name = _opt(gpu.name)[:24]
        lines.append(
            f"{gpu.index:>3}  {name:<24} {_num(gpu.util_gpu, unit='%'):>5} "
            f"{_num(gpu.util_mem, unit='%'):>7} {memory:>21} "
            f"{_num(gpu.temperature, unit='C'):>5} {power:>15} {_num(gpu.fan, unit='%'):>4} "
            f"{_num(gpu.clock_sm):>6} {_num(gpu.clock_mem):>6} {_opt(gpu.pstate):>4} "
            f"{_opt(gpu.ecc_errors):>4} {mig:>4}"
        )
    lines.append(rule)

    lines.append("Processes:")
    proc_header = (
        f"{'GPU':>3} {'PID':>8}  {'Container':<20} {'User':<12} {'GPU Memory':>10}  Command"
    )
    lines.append(proc_header)
    if not sample.processes:
        lines.append("No running processes found.")
    for proc in sorted(sample.processes, key=lambda p: (p.gpu, p.pid)):
        container = _opt(proc.container_name or (proc.container_id or "")[:12] or None)
        lines.append(
            f"{proc.gpu:>3} {proc.pid:>8}  {container[:20]:<20} {_opt(proc.user)[:12]:<12} "
            f"{_mib(proc.used_memory):>10}  {_opt(proc.command)[:60]}"
        )
    lines.append(rule)
    return "\n".join(lines) + "\n"
