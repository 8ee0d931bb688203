"""The GPU agent, run as a subprocess the way a host runs it (source on stdin)."""

from __future__ import annotations

import ast
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudesk.core.gpu.sample import DriverState, parse_sample
from gpudesk.core.gpu.stream import agent_source
from gpudesk.payload import gpu_agent as agent

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gpu"
FAKE_BIN = FIXTURES / "bin"
STUB_NVML = FIXTURES / "stub_pynvml"
SMI_CSV = FIXTURES / "nvidia_smi_h100x8_synthetic.csv"
CID = "4f3b0c9e2a1d8b7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d"


def env_for(*, fake_smi: bool = False, stub_nvml: bool = False, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    path = env.get("PATH", "")
    # Never let a real nvidia-smi or pynvml on a developer's machine leak into these tests.
    env["PATH"] = f"{FAKE_BIN}:{path}" if fake_smi else path
    env["PYTHONPATH"] = str(STUB_NVML) if stub_nvml else ""
    env.update(extra)
    return env


def run_agent(*args: str, env: dict[str, str], timeout: float = 30) -> list[dict[str, Any]]:
    """Pipe the agent's source into ``python -u -`` exactly as on a host; return samples."""
    proc = subprocess.run(
        [sys.executable, "-u", "-", *args],
        input=agent_source(),
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    return [json.loads(line) for line in proc.stdout.decode().splitlines() if line.strip()]


class Streaming:
    """A long-running agent whose lines are read with timeouts (no sleeps)."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(agent_source())
        self.proc.stdin.close()
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def take(self, n: int, timeout: float = 20) -> list[dict[str, Any]]:
        return [json.loads(self.lines.get(timeout=timeout)) for _ in range(n)]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


# --------------------------------------------------------------------------- whole agent


def test_agent_source_is_python38_syntax() -> None:
    ast.parse(agent_source(), feature_version=(3, 8))


def test_no_gpu_reports_driver_state_and_host_stats() -> None:
    # This machine has no GPU: either pynvml fails to find libnvidia-ml, or (system python
    # without pynvml) there is no nvidia-smi. Both must say so and still stream host stats.
    envs = [env_for(STUB_NVML_INIT="library", stub_nvml=True)]
    if shutil.which("nvidia-smi") is None:  # no GPU here: the real pynvml finds no library
        envs.append(env_for())
    for env in envs:
        (sample,) = run_agent("--once", env=env)
        parsed = parse_sample(json.dumps(sample))
        assert parsed.driver_state is DriverState.NVML_NOT_FOUND
        assert parsed.message
        assert parsed.gpus == ()
        assert parsed.simulated is False
        assert parsed.host is not None
        assert parsed.host.mem_total and parsed.host.mem_total > 0
        assert parsed.host.mem_used is not None and parsed.host.mem_used > 0
        assert parsed.host.load is not None


def test_no_nvml_and_no_nvidia_smi() -> None:
    (sample,) = run_agent("--once", "--no-nvml", env=env_for(PATH="/nonexistent"))
    assert sample["driver_state"] == "nvml_not_found"
    assert "nvidia-smi" in sample["message"]
    assert sample["host"]["mem_total"] > 0


@pytest.mark.parametrize(
    ("mode", "state"),
    [
        ("driver", DriverState.DRIVER_NOT_LOADED),
        ("mismatch", DriverState.VERSION_MISMATCH),
        ("library", DriverState.NVML_NOT_FOUND),
    ],
)
def test_nvml_init_errors_are_classified(mode: str, state: DriverState) -> None:
    (sample,) = run_agent("--once", env=env_for(stub_nvml=True, STUB_NVML_INIT=mode))
    assert parse_sample(json.dumps(sample)).driver_state is state


def test_simulate_8() -> None:
    samples = run_agent("--simulate", "8", "--interval", "0.05", "--once", env=env_for())
    (raw,) = samples
    sample = parse_sample(json.dumps(raw))
    assert sample.simulated is True
    assert sample.source == "simulated"
    assert [gpu.index for gpu in sample.gpus] == list(range(8))
    assert sample.driver_state is DriverState.OK


def test_streams_at_interval_with_increasing_seq_and_cpu_percent() -> None:
    stream = Streaming("--simulate", "2", "--interval", "0.05", env=env_for())
    try:
        samples = stream.take(4)
    finally:
        stream.close()
    assert [s["seq"] for s in samples] == [0, 1, 2, 3]
    assert all(s["simulated"] is True for s in samples)
    assert samples[-1]["ts"] >= samples[0]["ts"]
    assert any(s["host"]["cpu_percent"] is not None for s in samples[1:])


def test_exits_quietly_when_stdout_closes() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-u", "-", "--simulate", "1", "--interval", "0.02"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env_for(),
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(agent_source())
        proc.stdin.close()
        assert json.loads(proc.stdout.readline())["seq"] == 0
        proc.stdout.close()  # the SSH channel went away
        rc = proc.wait(timeout=20)
        assert rc == 0
        assert proc.stderr.read() == b""  # no BrokenPipeError traceback
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


# --------------------------------------------------------------------------- pynvml stub


def test_failing_nvml_fields_become_null_and_others_arrive(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    stream = Streaming("--interval", "0.05", env=env_for(stub_nvml=True, STUB_NVML_LOG=str(log)))
    try:
        *_, third = stream.take(3)
    finally:
        stream.close()
    sample = parse_sample(json.dumps(third))
    assert sample.source == "nvml"
    assert sample.driver_state is DriverState.OK
    assert (sample.driver_version, sample.cuda_version) == ("550.54.15", "12.4")
    assert sample.nvml_version == "12.550.54.15"  # bytes from old pynvml are decoded
    gpu0, gpu1 = sample.gpus
    assert gpu0.power_draw is None  # raised RuntimeError
    assert gpu0.temperature == 40
    assert gpu1.temperature is None  # raised NVMLError_NotSupported
    assert gpu1.power_draw == 123.5
    assert gpu0.fan is None and gpu1.fan is None
    assert gpu1.ecc_errors == 3
    assert (gpu0.util_gpu, gpu1.util_gpu) == (50, 51)
    assert gpu0.power_limit == 700.0 and gpu0.pstate == "P0" and gpu0.mig_enabled is False
    # processes came through _v2 after _v3 turned out to be missing from the "driver"
    (proc,) = sample.processes
    assert proc.gpu == 0 and proc.used_memory == 512 * 1024**2
    assert proc.command is not None and "python" in proc.command  # read from /proc
    assert proc.user is not None
    calls = log.read_text().split()
    # probed once per kind: v3 failed once, then only v2 is ever called for compute
    assert calls.count("compute_v3") == 1
    assert calls.count("compute_v2") >= 3 * 2 - 1
    assert "compute_v1" not in calls
    assert calls.count("graphics_v3") >= 3


def test_process_probe_falls_back_to_v1(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    (raw,) = run_agent(
        "--once", env=env_for(stub_nvml=True, STUB_NVML_PROCS="v1", STUB_NVML_LOG=str(log))
    )
    assert len(raw["processes"]) == 1
    calls = log.read_text().split()
    assert calls[:3] == ["compute_v3", "compute_v2", "compute_v1"]


# --------------------------------------------------------------------------- nvidia-smi


def test_query_fields_match_the_fixture() -> None:
    fields = (FIXTURES / "nvidia_smi_query_gpu_fields.txt").read_text().strip()
    assert ",".join(f for f, _, _ in agent.SMI_GPU_FIELDS) == fields


def test_parse_smi_csv_line() -> None:
    lines = SMI_CSV.read_text().splitlines()
    row = agent.parse_smi_csv_line(lines[1], agent.SMI_GPU_FIELDS)
    assert row is not None
    assert row["index"] == 1
    assert row["uuid"] == "GPU-27ac435a-1710-1107-0512-8ca566ceab36"
    assert row["name"] == "NVIDIA H100 80GB HBM3"
    assert row["util_gpu"] == 97.0
    assert row["mem_used"] == 62345 * 1024 * 1024
    assert row["mem_total"] == 81559 * 1024 * 1024
    assert row["power_draw"] == 613.40
    assert row["fan"] is None  # [N/A]
    assert row["clock_sm"] == 1980
    assert row["pstate"] == "P0"
    assert row["ecc_errors"] == 0
    assert row["mig_enabled"] is False
    mig = agent.parse_smi_csv_line(lines[5], agent.SMI_GPU_FIELDS)
    assert mig is not None and mig["mig_enabled"] is True and mig["util_gpu"] is None
    odd = lines[0].replace("[N/A]", "[Not Supported]").replace(" 69.80,", " [Unknown Error],")
    parsed = agent.parse_smi_csv_line(odd, agent.SMI_GPU_FIELDS)
    assert parsed is not None and parsed["fan"] is None and parsed["power_draw"] is None
    # not data rows
    assert agent.parse_smi_csv_line("No devices were found", agent.SMI_GPU_FIELDS) is None
    assert agent.parse_smi_csv_line(lines[0] + ", extra", agent.SMI_GPU_FIELDS) is None
    header = "index, uuid, name" + ", x" * (len(agent.SMI_GPU_FIELDS) - 3)
    assert agent.parse_smi_csv_line(header, agent.SMI_GPU_FIELDS) is None


def test_nvidia_smi_fallback_streams_from_one_long_lived_process(tmp_path: Path) -> None:
    log = tmp_path / "smi.log"
    stream = Streaming(
        "--no-nvml",
        "--interval",
        "0.1",
        env=env_for(fake_smi=True, FAKE_NVIDIA_SMI_LOG=str(log)),
    )
    try:
        samples = stream.take(4)
    finally:
        stream.close()
    parsed = [parse_sample(json.dumps(s)) for s in samples]
    for sample in parsed:
        assert sample.source == "nvidia-smi"
        assert sample.driver_state is DriverState.OK
        assert sample.driver_version == "550.54.15"
        assert [gpu.index for gpu in sample.gpus] == list(range(8))
        assert sample.gpus[3].temperature == 83.0
        assert sample.gpus[6].ecc_errors == 1
        assert sample.gpus[0].fan is None
        # compute apps mapped by UUID to GPU indices; pid is the agent (fake smi's parent)
        assert [(p.gpu, p.pid) for p in sample.processes] == [
            (1, stream.proc.pid),
            (2, stream.proc.pid),
        ]
        assert sample.processes[0].used_memory == 62001 * 1024 * 1024
        assert sample.processes[0].user is not None
    # the last samples see the second recorded batch (power 614.40 on GPU 1)
    assert {s.gpus[1].power_draw for s in parsed} <= {613.4, 614.4}
    invocations = log.read_text().splitlines()
    gpu_queries = [line for line in invocations if "--query-gpu=" in line]
    assert len(gpu_queries) == 1, invocations  # ONE long-lived process, not one per sample
    assert gpu_queries[0].endswith("-lms 100")
    assert sum("--query-compute-apps=" in line for line in invocations) >= 4


def test_nvidia_smi_once_and_driver_failure() -> None:
    (raw,) = run_agent("--no-nvml", "--once", env=env_for(fake_smi=True))
    assert raw["driver_state"] == "ok" and len(raw["gpus"]) == 8
    failure = (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running."
    )
    (raw,) = run_agent(
        "--no-nvml", "--once", env=env_for(fake_smi=True, FAKE_NVIDIA_SMI_FAIL=failure)
    )
    assert raw["driver_state"] == "driver_not_loaded"
    assert "couldn't communicate" in raw["message"]
    assert raw["host"]["mem_total"] > 0


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("Failed to initialize NVML: Driver/library version mismatch", "version_mismatch"),
        ("No devices were found", "no_gpus"),
        ("NVIDIA-SMI couldn't find libnvidia-ml.so library in your system.", "nvml_not_found"),
        ("something else", "error"),
    ],
)
def test_classify_smi_error(text: str, state: str) -> None:
    assert agent.classify_smi_error(text)[0] == state


# --------------------------------------------------------------------------- cgroups


@pytest.mark.parametrize(
    "text",
    [
        # cgroup v1, docker with the cgroupfs driver
        f"12:memory:/docker/{CID}\n11:cpu,cpuacct:/docker/{CID}\n1:name=systemd:/docker/{CID}\n",
        # cgroup v1, docker with the systemd driver
        f"4:pids:/system.slice/docker-{CID}.scope\n",
        # cgroup v2, docker with the systemd driver
        f"0::/system.slice/docker-{CID}.scope\n",
        # cgroup v2, docker with the cgroupfs driver
        f"0::/docker/{CID}\n",
        # kubernetes with containerd (v2, systemd)
        "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b3e2d1c_7a6f_4e"
        f"5d_9c8b_1a2b3c4d5e6f.slice/cri-containerd-{CID}.scope\n",
        # kubernetes v1 cgroupfs
        f"11:memory:/kubepods/burstable/pod0b3e2d1c-7a6f-4e5d-9c8b-1a2b3c4d5e6f/{CID}\n",
    ],
)
def test_container_id_from_real_cgroup_formats(text: str) -> None:
    assert agent.container_id_from_cgroup(text) == CID


@pytest.mark.parametrize(
    "text",
    [
        "0::/user.slice/user-1000.slice/session-3.scope\n",
        "0::/init.scope\n",
        "12:memory:/\n11:cpu,cpuacct:/\n",
        "0::/system.slice/docker.service\n",
        f"0::/docker/{CID[:-1]}\n",  # 63 hex digits is not an id
        "",
    ],
)
def test_no_container_for_host_processes(text: str) -> None:
    assert agent.container_id_from_cgroup(text) is None


@given(
    cid=st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    form=st.sampled_from(
        [
            "{n}:memory:/docker/{cid}",
            "0::/system.slice/docker-{cid}.scope",
            "0::/docker/{cid}",
            "{n}:cpu,cpuacct:/kubepods/besteffort/pod{pod}/{cid}",
            "0::/kubepods.slice/kubepods-pod{pod}.slice/cri-containerd-{cid}.scope",
        ]
    ),
    n=st.integers(min_value=0, max_value=13),
    pod=st.uuids().map(str),
    before=st.lists(st.sampled_from(["0::/", "3:devices:/user.slice", "0::/init.scope"])),
)
def test_container_id_property(cid: str, form: str, n: int, pod: str, before: list[str]) -> None:
    text = "\n".join([*before, form.format(cid=cid, n=n, pod=pod)]) + "\n"
    assert agent.container_id_from_cgroup(text) == cid


@given(st.text())
def test_container_id_never_crashes_and_only_returns_64_hex(text: str) -> None:
    result = agent.container_id_from_cgroup(text)
    assert result is None or (len(result) == 64 and result in text)


def test_container_names_are_resolved_once_per_id_and_cached() -> None:
    calls: list[str] = []

    def runner(cid: str) -> str | None:
        calls.append(cid)
        if cid == "bad":
            raise OSError("docker not installed")
        return "trainer" if cid == CID else None

    names = agent.ContainerNames(runner)
    assert names.name(CID) == "trainer"
    assert names.name(CID) == "trainer"
    assert names.name("bad") is None
    assert names.name("bad") is None
    assert names.name("other") is None
    assert names.name(None) is None
    assert calls == [CID, "bad", "other"]
