"""The GPU sample schema, parsed from the agent's JSON lines (``agent.py`` writes them).

Defined once here for the operator's side; :data:`SCHEMA_VERSION` must match the agent's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA_VERSION = 1

# A GPU counts as free when its utilisation and memory use are both under this percentage
# and it runs no processes.
FREE_THRESHOLD_PERCENT = 10.0


class SampleError(ValueError):
    """A line from the agent is not a valid sample."""


class DriverState(StrEnum):
    OK = "ok"
    NVML_NOT_FOUND = "nvml_not_found"
    DRIVER_NOT_LOADED = "driver_not_loaded"
    VERSION_MISMATCH = "version_mismatch"
    NO_GPUS = "no_gpus"
    ERROR = "error"


@dataclass(frozen=True)
class GpuDevice:
    index: int
    uuid: str | None = None
    name: str | None = None
    util_gpu: float | None = None  # percent
    util_mem: float | None = None  # percent (memory controller busy)
    mem_used: int | None = None  # bytes
    mem_total: int | None = None  # bytes
    temperature: float | None = None  # degrees C
    power_draw: float | None = None  # W
    power_limit: float | None = None  # W
    fan: float | None = None  # percent
    clock_sm: int | None = None  # MHz
    clock_mem: int | None = None  # MHz
    pstate: str | None = None
    ecc_errors: int | None = None  # volatile uncorrected total
    mig_enabled: bool | None = None

    @property
    def mem_percent(self) -> float | None:
        if self.mem_used is None or not self.mem_total:
            return None
        return 100.0 * self.mem_used / self.mem_total


@dataclass(frozen=True)
class GpuProcess:
    gpu: int
    pid: int
    used_memory: int | None = None  # bytes
    command: str | None = None
    user: str | None = None
    container_id: str | None = None
    container_name: str | None = None
    # The pid and process group inside the process's own PID namespace (its container's);
    # None from older agents and for processes whose status could not be read.
    ns_pid: int | None = None
    ns_pgid: int | None = None


@dataclass(frozen=True)
class HostStats:
    cpu_percent: float | None = None
    mem_used: int | None = None  # bytes
    mem_total: int | None = None  # bytes
    load: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class GpuSample:
    schema: int
    seq: int
    ts: float  # unix time on the GPU host
    hostname: str = ""
    driver_state: DriverState = DriverState.OK
    message: str = ""
    driver_version: str | None = None
    cuda_version: str | None = None
    nvml_version: str | None = None
    simulated: bool = False
    source: str | None = None  # "nvml" | "nvidia-smi" | "simulated" | "none"
    gpus: tuple[GpuDevice, ...] = ()
    processes: tuple[GpuProcess, ...] = ()
    host: HostStats | None = field(default=None)


@dataclass(frozen=True)
class GpuSummary:
    count: int
    free: int
    busy: int
    mem_used: int  # bytes, over GPUs that report it
    mem_total: int
    hottest: float | None  # degrees C


# --------------------------------------------------------------------------- parsing


def _opt_float(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SampleError(f"{where}.{key}: expected a number, got {value!r}")
    number = float(value)
    if math.isnan(number) or math.isinf(number):
        return None
    return number


def _opt_int(obj: dict[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SampleError(f"{where}.{key}: expected an integer, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise SampleError(f"{where}.{key}: expected an integer, got {value!r}")
        return int(value)
    return value


def _req_int(obj: dict[str, Any], key: str, where: str) -> int:
    value = _opt_int(obj, key, where)
    if value is None:
        raise SampleError(f"{where}.{key}: missing")
    return value


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SampleError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def _opt_bool(obj: dict[str, Any], key: str, where: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise SampleError(f"{where}.{key}: expected true/false, got {value!r}")
    return value


def _objects(obj: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise SampleError(f"{key}: expected a list of objects")
    return value


def _device(obj: dict[str, Any], n: int) -> GpuDevice:
    where = f"gpus[{n}]"
    return GpuDevice(
        index=_req_int(obj, "index", where),
        uuid=_opt_str(obj, "uuid", where),
        name=_opt_str(obj, "name", where),
        util_gpu=_opt_float(obj, "util_gpu", where),
        util_mem=_opt_float(obj, "util_mem", where),
        mem_used=_opt_int(obj, "mem_used", where),
        mem_total=_opt_int(obj, "mem_total", where),
        temperature=_opt_float(obj, "temperature", where),
        power_draw=_opt_float(obj, "power_draw", where),
        power_limit=_opt_float(obj, "power_limit", where),
        fan=_opt_float(obj, "fan", where),
        clock_sm=_opt_int(obj, "clock_sm", where),
        clock_mem=_opt_int(obj, "clock_mem", where),
        pstate=_opt_str(obj, "pstate", where),
        ecc_errors=_opt_int(obj, "ecc_errors", where),
        mig_enabled=_opt_bool(obj, "mig_enabled", where),
    )


def _process(obj: dict[str, Any], n: int) -> GpuProcess:
    where = f"processes[{n}]"
    return GpuProcess(
        gpu=_req_int(obj, "gpu", where),
        pid=_req_int(obj, "pid", where),
        used_memory=_opt_int(obj, "used_memory", where),
        command=_opt_str(obj, "command", where),
        user=_opt_str(obj, "user", where),
        container_id=_opt_str(obj, "container_id", where),
        container_name=_opt_str(obj, "container_name", where),
        ns_pid=_opt_int(obj, "ns_pid", where),
        ns_pgid=_opt_int(obj, "ns_pgid", where),
    )


def _host(obj: Any) -> HostStats | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise SampleError("host: expected an object")
    load_raw = obj.get("load")
    load: tuple[float, float, float] | None = None
    if load_raw is not None:
        if (
            not isinstance(load_raw, list)
            or len(load_raw) != 3
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in load_raw)
        ):
            raise SampleError(f"host.load: expected three numbers, got {load_raw!r}")
        load = (float(load_raw[0]), float(load_raw[1]), float(load_raw[2]))
    return HostStats(
        cpu_percent=_opt_float(obj, "cpu_percent", "host"),
        mem_used=_opt_int(obj, "mem_used", "host"),
        mem_total=_opt_int(obj, "mem_total", "host"),
        load=load,
    )


def parse_sample(line: str) -> GpuSample:
    """Parse one JSON line from the agent. Missing optional fields become ``None``.

    Raises :class:`SampleError` for anything that is not a well-formed sample.
    """
    try:
        obj = json.loads(line)
    except (ValueError, TypeError) as exc:
        raise SampleError(f"not JSON: {line[:80]!r} ({exc})") from None
    if not isinstance(obj, dict):
        raise SampleError(f"expected a JSON object, got {type(obj).__name__}")
    schema = _req_int(obj, "schema", "sample")
    if schema != SCHEMA_VERSION:
        raise SampleError(f"agent schema {schema} but gpudesk understands {SCHEMA_VERSION}")
    state_raw = obj.get("driver_state", DriverState.OK.value)
    try:
        state = DriverState(state_raw)
    except ValueError:
        raise SampleError(f"unknown driver_state {state_raw!r}") from None
    ts = _opt_float(obj, "ts", "sample")
    if ts is None:
        raise SampleError("sample.ts: missing")
    gpus = tuple(_device(item, n) for n, item in enumerate(_objects(obj, "gpus")))
    processes = tuple(_process(item, n) for n, item in enumerate(_objects(obj, "processes")))
    return GpuSample(
        schema=schema,
        seq=_req_int(obj, "seq", "sample"),
        ts=ts,
        hostname=_opt_str(obj, "hostname", "sample") or "",
        driver_state=state,
        message=_opt_str(obj, "message", "sample") or "",
        driver_version=_opt_str(obj, "driver_version", "sample"),
        cuda_version=_opt_str(obj, "cuda_version", "sample"),
        nvml_version=_opt_str(obj, "nvml_version", "sample"),
        simulated=bool(_opt_bool(obj, "simulated", "sample")),
        source=_opt_str(obj, "source", "sample"),
        gpus=gpus,
        processes=processes,
        host=_host(obj.get("host")),
    )


def dump_sample(sample: GpuSample) -> str:
    """The JSON line the agent would have written for ``sample`` (inverse of parse)."""
    return json.dumps(asdict(sample), separators=(",", ":"))


# --------------------------------------------------------------------------- summaries


def is_free(gpu: GpuDevice, sample: GpuSample) -> bool:
    """Util and memory both under 10 % (unknown counts as not free) and no processes."""
    if gpu.util_gpu is None or gpu.util_gpu >= FREE_THRESHOLD_PERCENT:
        return False
    mem = gpu.mem_percent
    if mem is None or mem >= FREE_THRESHOLD_PERCENT:
        return False
    return not any(proc.gpu == gpu.index for proc in sample.processes)


def free_gpu_indices(sample: GpuSample) -> list[int]:
    return sorted(gpu.index for gpu in sample.gpus if is_free(gpu, sample))


def summarize(sample: GpuSample) -> GpuSummary:
    free = len(free_gpu_indices(sample))
    temps = [gpu.temperature for gpu in sample.gpus if gpu.temperature is not None]
    return GpuSummary(
        count=len(sample.gpus),
        free=free,
        busy=len(sample.gpus) - free,
        mem_used=sum(gpu.mem_used for gpu in sample.gpus if gpu.mem_used is not None),
        mem_total=sum(gpu.mem_total for gpu in sample.gpus if gpu.mem_total is not None),
        hottest=max(temps) if temps else None,
    )
