"""Benchmark: one GPU sample through gpudesk's NVML agent vs one ``nvidia-smi --query-gpu`` call.

Run on a GPU host with nvidia-ml-py (pynvml) importable and ``nvidia-smi`` on PATH:

    python bench/agent_vs_smi.py [--samples 200] [--calls 30]

It times, in one run:

* the agent's full sample (``agent.build_sample`` with the NVML backend: every per-GPU field,
  processes with their containers, host CPU/memory/load) plus its JSON encoding, with handles
  cached as in the streaming agent: wall ms and CPU ms per sample;
* one ``nvidia-smi --query-gpu=<the agent's field list> --format=csv,noheader,nounits``
  process: wall ms per call and the child's CPU ms;

and prints both and the ratio (nvidia-smi / agent). Without a usable GPU it says why it
cannot measure and exits 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

AGENT = Path(__file__).resolve().parents[1] / "gpudesk" / "payload" / "gpu_agent.py"


def load_agent() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpudesk_agent", AGENT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpudesk_agent"] = module
    spec.loader.exec_module(module)
    return module


def cannot(reason: str) -> int:
    print(f"agent_vs_smi: cannot measure on this machine: {reason}", file=sys.stderr)
    return 2


def time_agent(agent: ModuleType, backend: Any, samples: int) -> tuple[list[float], list[float]]:
    import json

    host = agent.HostSampler()
    hostname = socket.gethostname()
    for seq in range(3):  # warm up: slow-field cache, container names, /proc readers
        agent.build_sample(seq, backend, host, hostname, False)
    walls, cpus = [], []
    for seq in range(samples):
        w0, c0 = time.perf_counter(), time.process_time()
        sample = agent.build_sample(seq, backend, host, hostname, False)
        json.dumps(sample, separators=(",", ":"))
        cpus.append((time.process_time() - c0) * 1000.0)
        walls.append((time.perf_counter() - w0) * 1000.0)
    return walls, cpus


def time_smi(argv: list[str], calls: int) -> tuple[list[float], list[float]]:
    subprocess.run(argv, capture_output=True, check=True)  # warm up (driver persistence)
    walls, cpus = [], []
    for _ in range(calls):
        before = os.times()
        w0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        walls.append((time.perf_counter() - w0) * 1000.0)
        after = os.times()
        child = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        cpus.append(child * 1000.0)
    return walls, cpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="agent samples to time")
    parser.add_argument("--calls", type=int, default=30, help="nvidia-smi calls to time")
    args = parser.parse_args(argv)

    smi = shutil.which("nvidia-smi")
    if smi is None:
        return cannot("nvidia-smi is not on PATH (no NVIDIA driver?)")
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return cannot("pynvml (nvidia-ml-py) is not importable")
    agent = load_agent()
    backend = agent.NvmlBackend(pynvml, agent.ContainerNames())
    if backend.state != "ok":
        return cannot(f"NVML: {backend.state}: {backend.message}")
    fields = ",".join(field for field, _, _ in agent.SMI_GPU_FIELDS)
    smi_argv = [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"]
    try:
        name = pynvml.nvmlDeviceGetName(backend.handles[0])
        name = name.decode() if isinstance(name, bytes) else str(name)
        agent_wall, agent_cpu = time_agent(agent, backend, args.samples)
        smi_wall, smi_cpu = time_smi(smi_argv, args.calls)
    except subprocess.CalledProcessError as exc:
        return cannot(f"nvidia-smi failed: {exc.stderr!r}")
    finally:
        backend.close()

    a_wall, s_wall = statistics.median(agent_wall), statistics.median(smi_wall)
    a_cpu, s_cpu = statistics.median(agent_cpu), statistics.median(smi_cpu)
    print(
        f"device: {len(backend.handles)}x {name}, driver {backend.versions['driver_version']}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"{'':<34}{'n':>6}{'wall ms (median)':>18}{'p95':>9}{'CPU ms (median)':>17}")
    print(
        f"{'agent sample (NVML, all fields)':<34}{len(agent_wall):>6}{a_wall:>18.2f}"
        f"{sorted(agent_wall)[int(0.95 * (len(agent_wall) - 1))]:>9.2f}{a_cpu:>17.2f}"
    )
    print(
        f"{'nvidia-smi --query-gpu (1 call)':<34}{len(smi_wall):>6}{s_wall:>18.2f}"
        f"{sorted(smi_wall)[int(0.95 * (len(smi_wall) - 1))]:>9.2f}{s_cpu:>17.2f}"
    )
    ratio_cpu = f"{s_cpu / a_cpu:.1f}x" if a_cpu > 0 else "n/a"
    print(f"ratio nvidia-smi / agent: wall {s_wall / a_wall:.1f}x, CPU {ratio_cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
