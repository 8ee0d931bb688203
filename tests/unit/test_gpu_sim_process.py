"""Simulated GPUs that hold a real container's process (the agent's --simulate-process)."""

from __future__ import annotations

import os

import pytest

from gpudesk.core import shell
from gpudesk.core.config import ConfigError
from gpudesk.core.fleet import simulated_processes
from gpudesk.core.gpu.idle import holdings
from gpudesk.core.gpu.sample import parse_sample
from gpudesk.core.gpu.stream import agent_command
from gpudesk.payload import gpu_agent


def collect(backend: gpu_agent.SimBackend) -> str:
    import json

    data = backend.collect()
    return json.dumps({"schema": 1, "seq": 0, "ts": 1.0, "simulated": True, **data})


def test_attached_gpu_is_idle_and_holds_the_container_process() -> None:
    names = gpu_agent.ContainerNames(runner=lambda cid: "nb" if cid else None)
    # This very process stands in for the container's main process: its /proc entry is real.
    backend = gpu_agent.SimBackend(8, {1: "nb"}, names, find_pid=lambda name: os.getpid())
    sample = parse_sample(collect(backend))
    on_gpu = [p for p in sample.processes if p.gpu == 1]
    assert len(on_gpu) == 1 and on_gpu[0].pid == os.getpid()
    assert sample.gpus[1].util_gpu == 0
    assert on_gpu[0].used_memory == gpu_agent.SIM_PROCESS_MEMORY
    # The other fake GPUs are as before: GPU 2 still busy with its simulated rank.
    assert any(p.gpu == 2 and p.container_name == "sim-train-1" for p in sample.processes)


def test_attached_container_gone_reports_no_process() -> None:
    backend = gpu_agent.SimBackend(2, {0: "gone"}, find_pid=lambda name: None)
    sample = parse_sample(collect(backend))
    assert [p for p in sample.processes if p.gpu == 0] == []
    assert holdings(sample, 5.0).get("gone") is None


def test_agent_argument_and_command() -> None:
    args = gpu_agent.parse_args(["--simulate", "2", "--simulate-process", "my.box-1@1"])
    assert args.simulate_process == [(1, "my.box-1")]
    with pytest.raises(SystemExit):
        gpu_agent.parse_args(["--simulate", "2", "--simulate-process", "nogpu"])
    command = agent_command(1.0, 2, "python3", ("a@0", "b@1"))
    assert shell.split(command)[-4:] == ["--simulate-process", "a@0", "--simulate-process", "b@1"]


def test_env_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    assert simulated_processes() == ()
    monkeypatch.setenv("GPUDESK_SIMULATE_PROCESSES", "nb@0, other@3")
    assert simulated_processes() == ("nb@0", "other@3")
    monkeypatch.setenv("GPUDESK_SIMULATE_PROCESSES", "nb;rm -rf /@0")
    with pytest.raises(ConfigError, match="CONTAINER@GPU"):
        simulated_processes()
