"""Host snapshots as Prometheus metric families, built at scrape time.

GPU metrics take the names of NVIDIA's dcgm-exporter (``DCGM_FI_DEV_*``, in its units: MiB,
MHz, W, degrees C, percent) with the labels ``host``, ``gpu`` (the index), ``uuid`` and
``modelName``; everything else is ``gpudesk_*``. A field the GPU does not report (NVML's N/A,
``null`` in the agent's sample) is left out, never exported as 0. Samples from simulated GPUs
carry ``simulated="true"`` on every GPU series, and ``gpudesk_simulated{host}`` is 1.
Label values are escaped by prometheus_client's exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from gpudesk.core.gpu.owners import run_of
from gpudesk.core.gpu.sample import GpuDevice, GpuSample, free_gpu_indices
from gpudesk.core.metrics.board import HostSnapshot

MIB = 1024 * 1024
DOCKER_STATES = ("created", "running", "paused", "restarting", "removing", "exited", "dead")


@dataclass(frozen=True)
class GpuField:
    name: str
    doc: str
    value: Callable[[GpuDevice], float | None]


def _mib(value: int | None) -> float | None:
    return None if value is None else value / MIB


def _fb_free(gpu: GpuDevice) -> float | None:
    if gpu.mem_used is None or gpu.mem_total is None:
        return None
    return (gpu.mem_total - gpu.mem_used) / MIB


def _float(value: float | int | None) -> float | None:
    return None if value is None else float(value)


GPU_FIELDS = (
    GpuField("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: _float(g.util_gpu)),
    GpuField(
        "DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", lambda g: _float(g.util_mem)
    ),
    GpuField(
        "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: _mib(g.mem_used)
    ),
    GpuField("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", _fb_free),
    GpuField(
        "DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", lambda g: _mib(g.mem_total)
    ),
    GpuField("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: _float(g.temperature)),
    GpuField("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: _float(g.power_draw)),
    GpuField(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT",
        "Power management limit (in W).",
        lambda g: _float(g.power_limit),
    ),
    GpuField("DCGM_FI_DEV_FAN_SPEED", "Fan speed (in %).", lambda g: _float(g.fan)),
    GpuField("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda g: _float(g.clock_sm)),
    GpuField(
        "DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", lambda g: _float(g.clock_mem)
    ),
    GpuField(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Total number of uncorrectable (double-bit) ECC errors since the driver loaded.",
        lambda g: _float(g.ecc_errors),
    ),
)


class Families:
    """Gauge families by name, in the order first asked for."""

    def __init__(self) -> None:
        self._by_name: dict[str, Metric] = {}

    def add(self, name: str, doc: str, labels: dict[str, str], value: float | None) -> None:
        if value is None:
            return
        family = self._by_name.get(name)
        if family is None:
            family = self._by_name[name] = Metric(name, doc, "gauge")
        family.add_sample(name, labels, float(value))

    def all(self) -> list[Metric]:
        return list(self._by_name.values())


def gpu_labels(host: str, gpu: GpuDevice, sample: GpuSample) -> dict[str, str]:
    labels = {"host": host, "gpu": str(gpu.index)}
    if gpu.uuid:
        labels["uuid"] = gpu.uuid
    if gpu.name:
        labels["modelName"] = gpu.name
    if sample.simulated:
        labels["simulated"] = "true"
    return labels


def _host_metrics(out: Families, snap: HostSnapshot) -> None:
    host = {"host": snap.name}
    out.add("gpudesk_host_up", "1 when gpudesk's connection to the host is up.", host, snap.up)
    latency = None if snap.latency_ms is None else snap.latency_ms / 1000.0
    out.add("gpudesk_host_latency_seconds", "SSH round-trip time to the host.", host, latency)
    sample = snap.sample
    if sample is None:
        return
    out.add("gpudesk_simulated", "1 when the host's GPUs are simulated.", host, sample.simulated)
    out.add("gpudesk_gpu_sample_seq", "Sequence number of the agent's sample.", host, sample.seq)
    out.add(
        "gpudesk_gpu_sample_timestamp_seconds",
        "When the agent took the sample (Unix time on the host).",
        host,
        sample.ts,
    )
    driver = {
        **host,
        "state": sample.driver_state.value,
        "driver_version": sample.driver_version or "",
        "cuda_version": sample.cuda_version or "",
        "source": sample.source or "",
    }
    out.add("gpudesk_gpu_driver_info", "The GPU driver as the agent found it.", driver, 1)
    out.add("gpudesk_gpus", "GPUs on the host.", host, len(sample.gpus))
    out.add(
        "gpudesk_gpus_free",
        "GPUs with no process and utilization and memory under 10 %.",
        host,
        len(free_gpu_indices(sample)),
    )
    stats = sample.host
    if stats is not None:
        out.add("gpudesk_host_cpu_percent", "Host CPU utilization (in %).", host, stats.cpu_percent)
        out.add("gpudesk_host_memory_used_bytes", "Host memory used.", host, stats.mem_used)
        out.add("gpudesk_host_memory_total_bytes", "Host memory total.", host, stats.mem_total)
        if stats.load is not None:
            for minutes, value in zip((1, 5, 15), stats.load, strict=True):
                out.add(
                    f"gpudesk_host_load{minutes}", f"{minutes}-minute load average.", host, value
                )


def _gpu_metrics(out: Families, snap: HostSnapshot, sample: GpuSample) -> None:
    for gpu in sample.gpus:
        labels = gpu_labels(snap.name, gpu, sample)
        for spec in GPU_FIELDS:
            out.add(spec.name, spec.doc, labels, spec.value(gpu))
        procs = sum(1 for p in sample.processes if p.gpu == gpu.index)
        out.add("gpudesk_gpu_processes", "Processes using the GPU.", labels, procs)


def _process_metrics(out: Families, snap: HostSnapshot, sample: GpuSample) -> None:
    by_container: dict[str, int] = {}
    by_run: dict[tuple[str, str], int] = {}
    for proc in sample.processes:
        container = proc.container_name or (proc.container_id or "")[:12]
        if not container or proc.used_memory is None:
            continue
        by_container[container] = by_container.get(container, 0) + proc.used_memory
        owner = run_of(proc, snap.runs)
        if owner is not None:
            key = (container, owner.name)
            by_run[key] = by_run.get(key, 0) + proc.used_memory
    sim = {"simulated": "true"} if sample.simulated else {}
    for container, used in sorted(by_container.items()):
        out.add(
            "gpudesk_container_gpu_memory_used_bytes",
            "GPU memory held by the container's processes.",
            {"host": snap.name, "container": container, **sim},
            used,
        )
    for (container, run), used in sorted(by_run.items()):
        out.add(
            "gpudesk_run_gpu_memory_used_bytes",
            "GPU memory held by the processes of a gpudesk training run.",
            {"host": snap.name, "container": container, "run": run, **sim},
            used,
        )


def _container_metrics(out: Families, snap: HostSnapshot) -> None:
    if snap.containers is None:
        return
    ours = [c for c in snap.containers if c.is_gpudesk]
    states = {state: 0 for state in DOCKER_STATES}
    for info in ours:
        states[info.state] = states.get(info.state, 0) + 1
    for state, count in states.items():
        out.add(
            "gpudesk_containers",
            "gpudesk's containers on the host, by Docker state.",
            {"host": snap.name, "state": state},
            count,
        )
    for info in ours:
        labels = {
            "host": snap.name,
            "container": info.name,
            "flavour": info.flavour.value if info.flavour else "",
            "state": info.state,
        }
        out.add(
            "gpudesk_container_running",
            "1 while the gpudesk container runs (its Docker state in the label).",
            labels,
            info.state == "running",
        )


def families(snapshots: Iterable[HostSnapshot]) -> list[Metric]:
    """Every metric family for ``snapshots`` (pure: no IO)."""
    out = Families()
    snaps = list(snapshots)
    for snap in snaps:
        _host_metrics(out, snap)
    for snap in snaps:
        if snap.sample is not None:
            _gpu_metrics(out, snap, snap.sample)
            _process_metrics(out, snap, snap.sample)
        _container_metrics(out, snap)
    return out.all()


class FleetCollector(Collector):
    """A prometheus_client collector that reads ``source()`` at each scrape."""

    def __init__(self, source: Callable[[], Iterable[HostSnapshot]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from families(self._source())


def exposition(snapshots: Iterable[HostSnapshot]) -> str:
    """The text a scrape returns for ``snapshots`` (Prometheus text format 0.0.4)."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    snaps = list(snapshots)
    registry.register(FleetCollector(lambda: snaps))
    return generate_latest(registry).decode("utf-8")
