"""gpudesk GPU agent: streams one JSON sample per line describing a host's GPUs.

This file is self-contained (stdlib + optional ``pynvml`` from nvidia-ml-py) and runs on
the GPU host by piping its source into ``python3 -u - [ARGS]`` over an SSH exec channel;
nothing is installed on the host.  It must stay Python 3.8 compatible: modern typing
syntax appears only in annotations (``from __future__ import annotations``).

Arguments::

    --interval S   seconds between samples (default 1.0)
    --once         print one sample and exit
    --simulate N   report N fake GPUs (every sample then has "simulated": true)
    --simulate-process NAME@GPU
                   with --simulate: fake GPU ``GPU`` sits idle (0 %) holding memory for a
                   process of the real container ``NAME``: its main process, found with
                   ``docker inspect`` and mapped like any GPU process (repeatable)
    --no-nvml      do not use pynvml; use the nvidia-smi fallback

Backends, in order: pynvml; else one long-lived ``nvidia-smi --query-gpu ... -lms``
process; else no GPU data (``driver_state`` ``nvml_not_found``) but host stats still flow.
No field ever breaks a sample: every NVML call goes through :func:`nvml_call`, which turns
any error into ``None``.  When stdout closes the agent exits quietly.

The schema is parsed on the operator's side by ``gpudesk.core.gpu.sample``; keep the two
in step (``SCHEMA_VERSION``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import json
import math
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

SCHEMA_VERSION = 1

# --------------------------------------------------------------------------- host stats


class HostSampler:
    """CPU % from /proc/stat deltas, memory from /proc/meminfo, load average."""

    def __init__(self, proc: str = "/proc") -> None:
        self.proc = proc
        self._last = self._cpu_times()

    def _cpu_times(self) -> tuple[int, int] | None:
        try:
            with open(os.path.join(self.proc, "stat")) as fh:
                first = fh.readline().split()
        except OSError:
            return None
        if not first or first[0] != "cpu":
            return None
        try:
            values = [int(v) for v in first[1:]]
        except ValueError:
            return None
        # user nice system idle iowait irq softirq steal (guest* are already in user/nice)
        values = values[:8]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    def cpu_percent(self) -> float | None:
        now = self._cpu_times()
        last, self._last = self._last, now
        if now is None or last is None:
            return None
        total = now[0] - last[0]
        idle = now[1] - last[1]
        if total <= 0:
            return None
        return round(max(0.0, min(100.0, 100.0 * (total - idle) / total)), 1)

    def memory(self) -> tuple[int | None, int | None]:
        info: dict[str, int] = {}
        try:
            with open(os.path.join(self.proc, "meminfo")) as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1].isdigit():
                        info[parts[0].rstrip(":")] = int(parts[1]) * 1024
        except OSError:
            return None, None
        total = info.get("MemTotal")
        available = info.get("MemAvailable")
        if available is None and "MemFree" in info:
            available = info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
        if total is None or available is None:
            return None, total
        return total - available, total

    def sample(self) -> dict[str, Any]:
        used, total = self.memory()
        try:
            load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
        except OSError:
            load = None
        return {
            "cpu_percent": self.cpu_percent(),
            "mem_used": used,
            "mem_total": total,
            "load": load,
        }


# --------------------------------------------------------------------------- processes

_CONTAINER_ID = re.compile(
    r"(?:^|/)(?:docker-|cri-containerd-|crio-|containerd-|libpod-)?([0-9a-f]{64})(?:\.scope)?$"
)


def container_id_from_cgroup(text: str) -> str | None:
    """The container id in the contents of ``/proc/PID/cgroup``, or ``None``.

    Understands cgroup v1 (``4:memory:/docker/<id>``), v2 with systemd
    (``0::/system.slice/docker-<id>.scope``), cgroupfs v2 (``0::/docker/<id>``),
    containerd/CRI (``cri-containerd-<id>.scope``) and kubepods paths
    (``/kubepods/burstable/pod<uid>/<id>``).
    """
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        path = parts[2].rstrip("/")
        # Walk from the deepest path component: the container is the leaf.
        components = path.split("/")
        for component in reversed(components):
            match = _CONTAINER_ID.search("/" + component)
            if match:
                return match.group(1)
    return None


def _read_text(path: str, limit: int = 65536) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def process_command(pid: int, proc: str = "/proc") -> str | None:
    raw = _read_text(os.path.join(proc, str(pid), "cmdline"))
    if raw:
        cmd = " ".join(part for part in raw.split("\0") if part)
        if cmd:
            return cmd[:300]
    comm = _read_text(os.path.join(proc, str(pid), "comm"))
    return comm.strip() if comm else None


def process_user(pid: int, proc: str = "/proc") -> str | None:
    try:
        uid = os.stat(os.path.join(proc, str(pid))).st_uid
    except OSError:
        return None
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


class ContainerNames:
    """Resolve container ids to names with ``docker inspect``, once per id (cached)."""

    def __init__(self, runner: Callable[[str], str | None] | None = None) -> None:
        self._cache: dict[str, str | None] = {}
        self._runner = runner or self._docker_inspect

    @staticmethod
    def _docker_inspect(container_id: str) -> str | None:
        name = (docker_inspect(container_id, "{{.Name}}") or "").lstrip("/")
        return name or None

    def name(self, container_id: str | None) -> str | None:
        if not container_id:
            return None
        if container_id not in self._cache:
            try:
                self._cache[container_id] = self._runner(container_id)
            except Exception:
                self._cache[container_id] = None
        return self._cache[container_id]


def innermost_ids(status: str | None) -> tuple[int | None, int | None]:
    """``(pid, process group)`` as the process's own PID namespace sees them.

    ``/proc/PID/status`` lists a process's ids in every nested namespace (``NSpid``,
    ``NSpgid``, outermost first); the last one is the id inside its container, which is what
    gpudesk needs to signal it there and to match it with a run's recorded process group.
    """
    found: dict[str, int | None] = {"NSpid": None, "NSpgid": None}
    for line in (status or "").splitlines():
        key, _, value = line.partition(":")
        if key in found:
            words = value.split()
            found[key] = int(words[-1]) if words and words[-1].isdigit() else None
    return found["NSpid"], found["NSpgid"]


def describe_process(
    gpu: int, pid: int, used_memory: int | None, names: ContainerNames, proc: str = "/proc"
) -> dict[str, Any]:
    cgroup = _read_text(os.path.join(proc, str(pid), "cgroup"))
    container_id = container_id_from_cgroup(cgroup) if cgroup else None
    ns_pid, ns_pgid = innermost_ids(_read_text(os.path.join(proc, str(pid), "status")))
    return {
        "gpu": gpu,
        "pid": pid,
        "used_memory": used_memory,
        "command": process_command(pid, proc),
        "user": process_user(pid, proc),
        "container_id": container_id,
        "container_name": names.name(container_id),
        "ns_pid": ns_pid,
        "ns_pgid": ns_pgid,
    }


# --------------------------------------------------------------------------- NVML backend


def nvml_call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call one NVML function; any NVMLError (or anything else) becomes ``None``."""
    try:
        value = fn(*args)
    except Exception:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _classify_nvml_error(exc: BaseException, nvml: Any) -> tuple[str, str]:
    value = getattr(exc, "value", None)
    name = type(exc).__name__
    text = str(exc) or name
    if value == getattr(nvml, "NVML_ERROR_LIBRARY_NOT_FOUND", 12) or "LibraryNotFound" in name:
        return "nvml_not_found", "NVML library not found (is the NVIDIA driver installed?): " + text
    if value == getattr(nvml, "NVML_ERROR_DRIVER_NOT_LOADED", 9) or "DriverNotLoaded" in name:
        return "driver_not_loaded", "NVIDIA driver is not loaded: " + text
    if (
        value == getattr(nvml, "NVML_ERROR_LIB_RM_VERSION_MISMATCH", 18)
        or "LibRmVersionMismatch" in name
    ):
        return "version_mismatch", "NVIDIA driver/library version mismatch (reboot?): " + text
    return "error", "NVML initialisation failed: " + text


_NOT_AVAILABLE = (1 << 64) - 1  # NVML_VALUE_NOT_AVAILABLE as unsigned long long


def _clean_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    if number < 0 or number >= _NOT_AVAILABLE:
        return None
    return number


class NvmlBackend:
    """GPU data from pynvml. Handles cached; slow/static fields cached a few seconds."""

    SLOW_FIELDS_TTL = 10.0
    source = "nvml"

    def __init__(self, nvml: Any, names: ContainerNames) -> None:
        self.nvml = nvml
        self.names = names
        self.state = "ok"
        self.message = "ok"
        self.handles: list[Any] = []
        self.versions: dict[str, Any] = {
            "driver_version": None,
            "cuda_version": None,
            "nvml_version": None,
        }
        self._slow: dict[int, tuple[float, dict[str, Any]]] = {}
        self._proc_fns: dict[str, Callable[..., Any] | None] = {}
        try:
            nvml.nvmlInit()
        except Exception as exc:
            self.state, self.message = _classify_nvml_error(exc, nvml)
            return
        self.versions["driver_version"] = nvml_call(nvml.nvmlSystemGetDriverVersion)
        self.versions["nvml_version"] = nvml_call(nvml.nvmlSystemGetNVMLVersion)
        cuda = nvml_call(nvml.nvmlSystemGetCudaDriverVersion)
        if isinstance(cuda, int) and cuda > 0:
            self.versions["cuda_version"] = f"{cuda // 1000}.{(cuda % 1000) // 10}"
        count = nvml_call(nvml.nvmlDeviceGetCount)
        if count is None:
            self.state, self.message = "error", "could not count GPUs through NVML"
            return
        for index in range(int(count)):
            # A handle that fails is kept as None: the GPU still gets a row of nulls.
            self.handles.append(nvml_call(nvml.nvmlDeviceGetHandleByIndex, index))
        if not self.handles:
            self.state, self.message = "no_gpus", "NVIDIA driver loaded but no GPUs were found"

    def close(self) -> None:
        nvml_call(getattr(self.nvml, "nvmlShutdown", lambda: None))

    def _slow_fields(self, index: int, handle: Any) -> dict[str, Any]:
        now = time.monotonic()
        cached = self._slow.get(index)
        if cached is not None and now - cached[0] < self.SLOW_FIELDS_TTL:
            return cached[1]
        nv = self.nvml
        limit = nvml_call(nv.nvmlDeviceGetEnforcedPowerLimit, handle)
        mig = nvml_call(nv.nvmlDeviceGetMigMode, handle)
        mig_enabled = None
        if isinstance(mig, (list, tuple)) and mig:
            mig_enabled = bool(mig[0])
        ecc = nvml_call(
            nv.nvmlDeviceGetTotalEccErrors,
            handle,
            getattr(nv, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1),
            getattr(nv, "NVML_VOLATILE_ECC", 0),
        )
        fields = {
            "uuid": nvml_call(nv.nvmlDeviceGetUUID, handle),
            "name": nvml_call(nv.nvmlDeviceGetName, handle),
            "power_limit": round(limit / 1000.0, 1) if isinstance(limit, (int, float)) else None,
            "ecc_errors": _clean_int(ecc),
            "mig_enabled": mig_enabled,
        }
        self._slow[index] = (now, fields)
        return fields

    def device(self, index: int, handle: Any) -> dict[str, Any]:
        nv = self.nvml
        util = nvml_call(nv.nvmlDeviceGetUtilizationRates, handle)
        mem = nvml_call(nv.nvmlDeviceGetMemoryInfo, handle)
        power = nvml_call(nv.nvmlDeviceGetPowerUsage, handle)
        pstate = nvml_call(nv.nvmlDeviceGetPerformanceState, handle)
        fan = nvml_call(nv.nvmlDeviceGetFanSpeed, handle)
        temp = nvml_call(
            nv.nvmlDeviceGetTemperature, handle, getattr(nv, "NVML_TEMPERATURE_GPU", 0)
        )
        gpu: dict[str, Any] = {
            "index": index,
            "util_gpu": _clean_int(getattr(util, "gpu", None)),
            "util_mem": _clean_int(getattr(util, "memory", None)),
            "mem_used": _clean_int(getattr(mem, "used", None)),
            "mem_total": _clean_int(getattr(mem, "total", None)),
            "temperature": _clean_int(temp),
            "power_draw": round(power / 1000.0, 1) if isinstance(power, (int, float)) else None,
            "fan": _clean_int(fan),
            "clock_sm": _clean_int(
                nvml_call(nv.nvmlDeviceGetClockInfo, handle, getattr(nv, "NVML_CLOCK_SM", 1))
            ),
            "clock_mem": _clean_int(
                nvml_call(nv.nvmlDeviceGetClockInfo, handle, getattr(nv, "NVML_CLOCK_MEM", 2))
            ),
            "pstate": f"P{pstate}" if isinstance(pstate, int) and 0 <= pstate < 32 else None,
        }
        gpu.update(self._slow_fields(index, handle))
        return gpu

    def _process_fn(self, kind: str, handle: Any) -> tuple[bool, Any]:
        """Probe _v3 -> _v2 -> v1 once per kind; returns (resolved, result-or-None)."""
        if kind in self._proc_fns:
            fn = self._proc_fns[kind]
            return True, (nvml_call(fn, handle) if fn is not None else None)
        base = f"nvmlDeviceGet{kind}RunningProcesses"
        not_found = getattr(self.nvml, "NVML_ERROR_FUNCTION_NOT_FOUND", 13)
        for name in (base + "_v3", base + "_v2", base):
            fn = getattr(self.nvml, name, None)
            if fn is None:
                continue
            try:
                result = fn(handle)
            except Exception as exc:
                if (
                    getattr(exc, "value", None) == not_found
                    or "FunctionNotFound" in type(exc).__name__
                ):
                    continue  # this driver lacks this version: try the next one
                return False, None  # a real error for this device: decide next time
            self._proc_fns[kind] = fn
            return True, result
        self._proc_fns[kind] = None
        return True, None

    def processes(self, index: int, handle: Any) -> list[tuple[int, int | None]]:
        found: dict[int, int | None] = {}
        for kind in ("Compute", "Graphics"):
            _, result = self._process_fn(kind, handle)
            for entry in result or ():
                pid = _clean_int(getattr(entry, "pid", None))
                if pid is None:
                    continue
                used = _clean_int(getattr(entry, "usedGpuMemory", None))
                if found.get(pid) is None:
                    found[pid] = used
        return sorted(found.items())

    def collect(self) -> dict[str, Any]:
        gpus: list[dict[str, Any]] = []
        processes: list[dict[str, Any]] = []
        for index, handle in enumerate(self.handles):
            if handle is None:
                gpus.append({"index": index})
                continue
            try:
                gpus.append(self.device(index, handle))
            except Exception:
                gpus.append({"index": index})
            try:
                for pid, used in self.processes(index, handle):
                    processes.append(describe_process(index, pid, used, self.names))
            except Exception:
                pass
        data: dict[str, Any] = {
            "driver_state": self.state,
            "message": self.message,
            "gpus": gpus,
            "processes": processes,
        }
        data.update(self.versions)
        return data


# --------------------------------------------------------------------------- nvidia-smi

# (query field, sample key, converter)
SMI_GPU_FIELDS: list[tuple[str, str, str]] = [
    ("index", "index", "int"),
    ("uuid", "uuid", "str"),
    ("name", "name", "str"),
    ("utilization.gpu", "util_gpu", "num"),
    ("utilization.memory", "util_mem", "num"),
    ("memory.used", "mem_used", "mib"),
    ("memory.total", "mem_total", "mib"),
    ("temperature.gpu", "temperature", "num"),
    ("power.draw", "power_draw", "num"),
    ("power.limit", "power_limit", "num"),
    ("fan.speed", "fan", "num"),
    ("clocks.sm", "clock_sm", "int"),
    ("clocks.mem", "clock_mem", "int"),
    ("pstate", "pstate", "str"),
    ("ecc.errors.uncorrected.volatile.total", "ecc_errors", "int"),
    ("mig.mode.current", "mig_enabled", "bool"),
    ("driver_version", "driver_version", "str"),
]
SMI_APP_FIELDS: list[tuple[str, str, str]] = [
    ("gpu_uuid", "gpu_uuid", "str"),
    ("pid", "pid", "int"),
    ("used_memory", "used_memory", "mib"),
]
_SMI_NULLS = {
    "",
    "n/a",
    "[n/a]",
    "[not supported]",
    "[unknown error]",
    "[insufficient permissions]",
}


def _convert(raw: str, kind: str) -> Any:
    text = raw.strip()
    if text.lower() in _SMI_NULLS or (text.startswith("[") and text.endswith("]")):
        return None
    try:
        if kind == "str":
            return text
        if kind == "bool":
            low = text.lower()
            return True if low == "enabled" else False if low == "disabled" else None
        number = float(text)
        if math.isnan(number) or math.isinf(number):
            return None
        if kind == "int":
            return int(number)
        if kind == "mib":
            return int(number * 1024 * 1024)
        return number
    except ValueError:
        return None


def parse_smi_csv_line(line: str, fields: list[tuple[str, str, str]]) -> dict[str, Any] | None:
    """Parse one ``--format=csv,noheader,nounits`` line; ``None`` if it is not a data row."""
    try:
        row = next(csv.reader([line.strip()], skipinitialspace=True))
    except (StopIteration, csv.Error):
        return None
    if len(row) != len(fields):
        return None
    out = {key: _convert(raw, kind) for raw, (_, key, kind) in zip(row, fields)}  # noqa: B905 (py3.8)
    first_kind = fields[0][2]
    if first_kind == "int" and out[fields[0][1]] is None:
        return None
    return out


def classify_smi_error(text: str) -> tuple[str, str]:
    low = text.lower()
    message = " ".join(text.split())[:300] or "nvidia-smi failed"
    if "version mismatch" in low:
        return "version_mismatch", message
    if "couldn't communicate with the nvidia driver" in low or "driver not loaded" in low:
        return "driver_not_loaded", message
    if "no devices were found" in low:
        return "no_gpus", message
    if "libnvidia-ml" in low or "couldn't find" in low:
        return "nvml_not_found", message
    return "error", message


class SmiBackend:
    """GPU data from ONE long-lived ``nvidia-smi --query-gpu ... -lms`` process."""

    source = "nvidia-smi"
    RESTART_AFTER = 10.0

    def __init__(self, interval: float, names: ContainerNames, once: bool = False) -> None:
        self.interval = interval
        self.names = names
        self.once = once
        self.proc: subprocess.Popen[str] | None = None
        self.lock = threading.Lock()
        self.rows: dict[int, dict[str, Any]] = {}
        self.got_row = threading.Event()
        self.error_text: list[str] = []
        self.last_start = -1e9
        self.state = "ok"
        self.message = "ok"
        self.available = True
        self._start()

    def _query_argv(self) -> list[str]:
        fields = ",".join(field for field, _, _ in SMI_GPU_FIELDS)
        argv = ["nvidia-smi", "--query-gpu=" + fields, "--format=csv,noheader,nounits"]
        if not self.once:
            argv += ["-lms", str(max(100, int(self.interval * 1000)))]
        return argv

    def _start(self) -> None:
        self.last_start = time.monotonic()
        with self.lock:
            self.rows = {}
            self.error_text = []
        self.got_row.clear()
        try:
            self.proc = subprocess.Popen(
                self._query_argv(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                universal_newlines=True,
                bufsize=1,
            )
        except OSError as exc:
            self.proc = None
            self.available = False
            self.state = "nvml_not_found"
            self.message = f"neither pynvml nor nvidia-smi is available on this host ({exc})"
            return
        thread = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            row = parse_smi_csv_line(line, SMI_GPU_FIELDS)
            with self.lock:
                if row is not None:
                    self.rows[int(row["index"])] = row
                elif line.strip():
                    self.error_text.append(line.strip())
                    del self.error_text[:-20]
            if row is not None:
                self.got_row.set()

    def close(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.terminate()
                proc.wait(timeout=2)
            except Exception:
                with contextlib.suppress(Exception):
                    proc.kill()

    def _apps(self, uuid_to_index: dict[str, int]) -> list[dict[str, Any]]:
        fields = ",".join(field for field, _, _ in SMI_APP_FIELDS)
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-compute-apps=" + fields, "--format=csv,noheader,nounits"],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                timeout=max(5.0, self.interval * 3),
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return []
        processes = []
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            row = parse_smi_csv_line(line, SMI_APP_FIELDS)
            if row is None or row["pid"] is None:
                continue
            index = uuid_to_index.get(row["gpu_uuid"] or "")
            if index is None:
                continue
            processes.append(describe_process(index, row["pid"], row["used_memory"], self.names))
        return processes

    def collect(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "driver_version": None,
            "cuda_version": None,
            "nvml_version": None,
            "gpus": [],
            "processes": [],
        }
        if not self.available:
            data.update(driver_state=self.state, message=self.message)
            return data
        proc = self.proc
        if not self.got_row.is_set() and proc is not None:
            # First sample after a start: give nvidia-smi a moment to print its batch.
            self.got_row.wait(timeout=max(3.0, 3 * self.interval))
        exited = proc is None or proc.poll() is not None
        with self.lock:
            rows = [self.rows[key] for key in sorted(self.rows)]
            errors = " ".join(self.error_text)
        if not rows:
            if exited:
                state, message = classify_smi_error(errors or "nvidia-smi exited")
                if not self.once and time.monotonic() - self.last_start >= self.RESTART_AFTER:
                    self._start()
            else:
                state, message = "error", "waiting for nvidia-smi to report"
            data.update(driver_state=state, message=message)
            return data
        if exited and not self.once and time.monotonic() - self.last_start >= self.RESTART_AFTER:
            self._start()  # keep the last rows for this sample; fresh ones next time
        gpus = []
        for row in rows:
            gpu = dict(row)
            data["driver_version"] = gpu.pop("driver_version", None) or data["driver_version"]
            gpus.append(gpu)
        data["gpus"] = gpus
        uuids = {gpu["uuid"]: gpu["index"] for gpu in gpus if gpu.get("uuid")}
        data["processes"] = self._apps(uuids)
        data.update(driver_state="ok", message="ok (nvidia-smi)")
        return data


# --------------------------------------------------------------------------- simulation


def docker_inspect(ident: str, template: str) -> str | None:
    """``docker inspect --format TEMPLATE IDENT``'s output, or None when it fails."""
    try:
        out = subprocess.run(
            ["docker", "inspect", "--format", template, ident],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            timeout=3,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode("utf-8", "replace").strip() if out.returncode == 0 else None


def container_pid(name: str) -> int | None:
    """The host pid of running container ``name``'s main process, from ``docker inspect``."""
    text = docker_inspect(name, "{{.State.Pid}}") or ""
    pid = int(text) if text.isdigit() else 0
    return pid or None  # 0: the container is not running


SIM_PROCESS_MEMORY = 6 * 1024 * 1024 * 1024


class SimBackend:
    """N fake GPUs with deterministic, seq-driven values (only when explicitly asked).

    ``attach`` maps a fake GPU to a real container: that GPU then sits at 0 % holding
    memory for the container's main process (its real host pid, mapped to the container
    from ``/proc`` like a real GPU process), for as long as the container runs.
    """

    source = "simulated"

    def __init__(
        self,
        count: int,
        attach: dict[int, str] | None = None,
        names: ContainerNames | None = None,
        find_pid: Callable[[str], int | None] = container_pid,
    ) -> None:
        self.count = count
        self.seq = 0
        self.attach = {gpu: name for gpu, name in (attach or {}).items() if 0 <= gpu < count}
        self.names = names or ContainerNames()
        self.find_pid = find_pid

    def close(self) -> None:
        pass

    def collect(self) -> dict[str, Any]:
        seq = self.seq
        self.seq += 1
        total = 81559 * 1024 * 1024
        gpus = []
        processes = []
        for i in range(self.count):
            idle = i % 8 in (0, 7)
            wave = 0.5 + 0.5 * math.sin(seq / 4.0 + i)
            util = 0 if idle else int(40 + 55 * wave)
            mem_frac = 0.0 if idle else 0.3 + 0.4 * wave
            if i % 8 == 6:
                mem_frac = 0.95  # nearly full memory
            temp = 30 + i if idle else int(50 + 20 * wave)
            if i % 8 == 3:
                temp = 84  # hot
            gpus.append(
                {
                    "index": i,
                    "uuid": f"GPU-00000000-0000-0000-0000-{i:012d}",
                    "name": "NVIDIA H100 80GB HBM3",
                    "util_gpu": util,
                    "util_mem": 0 if idle else int(util * 0.6),
                    "mem_used": int(total * mem_frac) + (0 if not idle else 4 * 1024 * 1024),
                    "mem_total": total,
                    "temperature": temp,
                    "power_draw": round(70.0 if idle else 150.0 + 500.0 * wave, 1),
                    "power_limit": 700.0,
                    "fan": None,
                    "clock_sm": 345 if idle else 1980,
                    "clock_mem": 2619,
                    "pstate": "P0",
                    "ecc_errors": 2 if i % 8 == 5 else 0,
                    "mig_enabled": False,
                }
            )
            if not idle:
                processes.append(
                    {
                        "gpu": i,
                        "pid": 40000 + i,
                        "used_memory": int(total * mem_frac),
                        "command": f"python train.py --rank {i}",
                        "user": "sim",
                        "container_id": f"{0xC0FFEE + i // 2:064x}",
                        "container_name": f"sim-train-{i // 2}",
                        # Two ranks per container, in one process group (as a run's are).
                        "ns_pid": 12 + i % 2,
                        "ns_pgid": 7,
                    }
                )
        for gpu, name in sorted(self.attach.items()):
            processes = [p for p in processes if p["gpu"] != gpu]
            gpus[gpu].update(util_gpu=0, util_mem=0, mem_used=SIM_PROCESS_MEMORY, clock_sm=345)
            pid = self.find_pid(name)
            if pid is not None:
                processes.append(describe_process(gpu, pid, SIM_PROCESS_MEMORY, self.names))
        return {
            "driver_state": "ok",
            "message": f"simulated: {self.count} fake GPUs",
            "driver_version": "550.54.15",
            "cuda_version": "12.4",
            "nvml_version": "12.550.54.15",
            "gpus": gpus,
            "processes": processes,
        }


class NoGpuBackend:
    source = "none"

    def __init__(self, state: str, message: str) -> None:
        self.state = state
        self.message = message

    def close(self) -> None:
        pass

    def collect(self) -> dict[str, Any]:
        return {
            "driver_state": self.state,
            "message": self.message,
            "driver_version": None,
            "cuda_version": None,
            "nvml_version": None,
            "gpus": [],
            "processes": [],
        }


# --------------------------------------------------------------------------- main loop


def make_backend(args: argparse.Namespace, names: ContainerNames) -> Any:
    if args.simulate:
        return SimBackend(args.simulate, dict(args.simulate_process), names)
    nvml: Any = None
    if not args.no_nvml:
        try:
            nvml = importlib.import_module("pynvml")
        except Exception:
            nvml = None
    if nvml is not None:
        backend = NvmlBackend(nvml, names)
        if backend.state in ("ok", "no_gpus"):
            return backend
        # NVML is there but failed: report exactly why (nvidia-smi would fail the same way).
        return NoGpuBackend(backend.state, backend.message)
    smi = SmiBackend(args.interval, names, once=args.once)
    if not smi.available:
        return NoGpuBackend(smi.state, smi.message)
    return smi


def build_sample(
    seq: int, backend: Any, host: HostSampler, hostname: str, simulated: bool
) -> dict[str, Any]:
    try:
        data = backend.collect()
    except Exception as exc:  # the agent never dies on a sample
        data = {
            "driver_state": "error",
            "message": f"sampling failed: {type(exc).__name__}: {exc}",
            "gpus": [],
            "processes": [],
        }
    try:
        host_stats: dict[str, Any] | None = host.sample()
    except Exception:
        host_stats = None
    sample: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "seq": seq,
        "ts": round(time.time(), 3),
        "hostname": hostname,
        "simulated": simulated,
        "source": getattr(backend, "source", None),
    }
    sample.update(data)
    sample["host"] = host_stats
    return sample


def _sim_process(text: str) -> tuple[int, str]:
    name, _, gpu = text.rpartition("@")
    if not name or not gpu.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME@GPU, not {text!r}")
    return int(gpu), name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gpudesk-agent", description="stream GPU samples")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--simulate", type=int, default=0, metavar="N")
    parser.add_argument(
        "--simulate-process", type=_sim_process, action="append", default=[], metavar="NAME@GPU"
    )
    parser.add_argument("--no-nvml", action="store_true")
    args = parser.parse_args(argv)
    if not args.interval > 0 or math.isinf(args.interval):
        parser.error("--interval must be a positive number of seconds")
    if args.simulate < 0:
        parser.error("--simulate needs a positive number of GPUs")
    return args


def _quiet_exit() -> None:
    # stdout is gone: point it at /dev/null so the interpreter's final flush is silent.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except Exception:
        pass
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = ContainerNames()
    host = HostSampler()
    hostname = socket.gethostname()
    backend = make_backend(args, names)
    seq = 0
    next_tick = time.monotonic()
    try:
        if args.once:
            time.sleep(0.1)  # so the CPU % has a delta to measure
        while True:
            sample = build_sample(seq, backend, host, hostname, bool(args.simulate))
            try:
                sys.stdout.write(json.dumps(sample, separators=(",", ":")) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, OSError):
                backend.close()
                _quiet_exit()
            if args.once:
                break
            seq += 1
            next_tick += args.interval
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind (slow sample): do not burst to catch up
                next_tick = time.monotonic()
                delay = 0.0
            time.sleep(delay)
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
