"""Killing a GPU process: who may (plan_kill), how (kill_process on real processes here), and
which run a process belongs to (run_of)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import Any

import pytest

from gpudesk.core.config import LOCAL_HOST, Host
from gpudesk.core.gpu.kill import KillError, KillPlan, Via, kill_process, plan_kill
from gpudesk.core.gpu.owners import run_of
from gpudesk.core.gpu.sample import GpuProcess
from gpudesk.core.local import LocalConnection
from gpudesk.core.runs import Run, build_run
from gpudesk.payload import gpu_agent

REMOTE = Host(name="gpu-a", hostname="10.0.0.5", user="alice")
IN_OURS = GpuProcess(0, 4100, command="python train.py", user="root",
                     container_id="c" * 64, container_name="dev-a", ns_pid=12, ns_pgid=7)  # fmt: skip
ON_HOST = GpuProcess(1, 4200, command="python serve.py", user="alice")


def test_a_process_in_a_gpudesk_container_is_signalled_inside_it() -> None:
    plan = plan_kill(IN_OURS, host=REMOTE, ours={"dev-a"})
    assert plan == KillPlan(4100, Via.CONTAINER, 12, "python train.py", "dev-a")


def test_a_host_process_of_the_ssh_user_is_signalled_on_the_host() -> None:
    assert plan_kill(ON_HOST, host=REMOTE, ours=set()) == KillPlan(
        4200, Via.HOST, 4200, "python serve.py"
    )
    root = replace(REMOTE, user="root")
    other = replace(ON_HOST, user="bob")
    assert isinstance(plan_kill(other, host=root, ours=set()), KillPlan)


@pytest.mark.parametrize(
    ("proc", "simulated", "words"),
    [
        (IN_OURS, True, "simulated"),
        (replace(IN_OURS, container_name="someone-elses"), False, "did not create"),
        (replace(IN_OURS, ns_pid=None), False, "pid inside the container"),
        (replace(ON_HOST, user="bob"), False, "belongs to bob"),
        (replace(ON_HOST, command=None), False, "no readable command line"),
    ],
)
def test_processes_out_of_reach_are_refused_with_the_reason(
    proc: GpuProcess, simulated: bool, words: str
) -> None:
    reason = plan_kill(proc, host=REMOTE, ours={"dev-a"}, simulated=simulated)
    assert isinstance(reason, str) and words in reason and str(proc.pid) in reason


def test_the_agent_reads_the_innermost_namespace_ids() -> None:
    status = "Name:\tpython\nNSpid:\t4100\t12\nNSpgid:\t4090\t7\nNSsid:\t4090\t7\n"
    assert gpu_agent.innermost_ids(status) == (12, 7)
    assert gpu_agent.innermost_ids("NSpid:\t4100\n") == (4100, None)
    assert gpu_agent.innermost_ids(None) == (None, None)
    # and describe_process reports them for a real process: this one, in no namespace
    me = gpu_agent.describe_process(0, os.getpid(), None, gpu_agent.ContainerNames())
    assert me["ns_pid"] == os.getpid() and me["ns_pgid"] == os.getpgid(0)


# --------------------------------------------------------------------------- real processes


@dataclass
class LocalService:
    host: Host
    conn: LocalConnection

    def docker(self) -> Any:
        raise AssertionError("a host kill never asks Docker")


def local() -> LocalService:
    return LocalService(LOCAL_HOST, LocalConnection())


def start(code: str) -> tuple[subprocess.Popen[str], KillPlan]:
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    # What the GPU agent would report for it, planned as the agent's sample would be.
    command = gpu_agent.process_command(proc.pid)
    assert command is not None
    sample = GpuProcess(0, proc.pid, command=command, user=gpu_agent.process_user(proc.pid))
    plan = plan_kill(sample, host=LOCAL_HOST, ours=set())
    assert isinstance(plan, KillPlan)
    return proc, plan


def test_sigterm_ends_a_process_that_honours_it() -> None:
    proc, plan = start("import time; print('ready', flush=True); time.sleep(600)")
    result = kill_process(local(), plan, grace=30)
    assert result.outcome == "terminated"
    assert proc.wait(timeout=10) == -signal.SIGTERM


def test_sigkill_follows_when_sigterm_is_ignored() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)"
    )
    proc, plan = start(code)
    result = kill_process(local(), plan, grace=1)
    assert result.outcome == "killed" and "SIGKILL" in result.message
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_a_reused_pid_is_not_signalled() -> None:
    proc, plan = start("import time; print('ready', flush=True); time.sleep(600)")
    try:
        result = kill_process(local(), replace(plan, command="python other.py"), grace=1)
        assert result.outcome == "other" and "nothing was sent" in result.message
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_a_process_that_ended_is_gone() -> None:
    proc, plan = start("print('ready', flush=True)")
    proc.wait()
    assert kill_process(local(), plan, grace=1).outcome == "gone"


@pytest.mark.parametrize("grace", [float("nan"), float("inf"), -1.0, 1e9])
def test_a_grace_out_of_range_is_refused(grace: float) -> None:
    with pytest.raises(KillError, match="grace"):
        kill_process(local(), KillPlan(1, Via.HOST, 1, "x"), grace=grace)


# --------------------------------------------------------------------------- process -> run


def run(name: str, container: str, pid: int, alive: bool = True) -> Run:
    item = {
        "dir": f"/home/alice/gpudesk/{container}/runs/{name}",
        "name": name,
        "run": json.dumps({"name": name, "container": container, "script": "textcls"}),
        "pid": str(pid),
        "exit_code": None if alive else "0",
        "metrics": "",
    }
    return build_run(
        item, "gpu-a", container_running={container: True},
        alive={container: {pid} if alive else set()}, now=0.0,
    )  # fmt: skip


def test_a_process_maps_to_the_run_with_its_process_group() -> None:
    runs = [run("a", "dev-a", 7), run("b", "dev-a", 9), run("c", "dev-b", 7)]
    found = run_of(IN_OURS, runs)
    assert found is not None and found.name == "a"
    assert run_of(replace(IN_OURS, ns_pgid=9), runs) is runs[1]
    assert run_of(replace(IN_OURS, ns_pgid=8), runs) is None
    assert run_of(ON_HOST, runs) is None


def test_without_its_group_only_a_lone_live_run_is_named() -> None:
    unknown = replace(IN_OURS, ns_pgid=None)
    assert run_of(unknown, [run("a", "dev-a", 7), run("old", "dev-a", 3, alive=False)]) is not None
    assert run_of(unknown, [run("a", "dev-a", 7), run("b", "dev-a", 9)]) is None
