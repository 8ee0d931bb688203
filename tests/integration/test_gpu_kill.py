"""Killing a GPU process on the real test bed: a real process in a real gpudesk container.

No GPU here, so the GPU side is what the agent would report for that process: the agent's own
``describe_process`` reads the real host ``/proc`` entry of the container's process (its host
pid from Docker), and the kill goes through real SSH and ``docker exec`` in the container.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Inventory
from gpudesk.core.containers import Containers, LaunchSpec
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.gpu.kill import KillPlan, Via, kill_process, plan_kill
from gpudesk.core.gpu.sample import GpuProcess
from gpudesk.payload import gpu_agent
from tests.integration.bed import bed_host

IGNORES_TERM = "trap '' TERM; echo ready; while :; do sleep 1; done"


@pytest.fixture(scope="module")
def container(
    testbed: Any, docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    where = tmp_path_factory.mktemp("kill-bed")
    name = f"gdk-{uuid.uuid4().hex[:8]}"
    Containers(docker_client).launch(
        LaunchSpec(
            flavour=Flavour.SSH,
            name=name,
            workspace=str(where / name),
            public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdrZ2RrZ2RrZ2RrZ2RrZ2RrZ2RrZ2RrZ2RrZ2Rr x",
            base_image=testbed.base_image,
        ),
        lambda path: Path(path).mkdir(parents=True, exist_ok=True),
    )
    yield docker_client.containers.get(name)
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(name).remove(force=True)


@pytest.fixture
def bed(testbed: Any, known_hosts_file: Path) -> Iterator[HostService]:
    inventory = Inventory.load()
    if "bed" not in inventory.names():
        inventory.add(bed_host(testbed))
    fleet = Fleet.build(Inventory.load())
    service = fleet.get("bed")
    connect_blocking(service.conn)
    yield service
    fleet.close()


def start_in(container: Any, script: str, marker: str) -> GpuProcess:
    """Start ``script`` in the container (as its user) and report it as the agent would."""
    container.exec_run(["sh", "-c", script, marker], detach=True)
    host_pid = None
    for _ in range(300):  # the detached exec has started it, or is about to
        top = container.top(ps_args="-eo pid,args")
        found = [int(p[0]) for p in top["Processes"] if marker in p[1]]
        if found:
            host_pid = found[0]
            break
        time.sleep(0.05)
    assert host_pid is not None, f"{marker} never started in {container.name}"
    names = gpu_agent.ContainerNames(runner=lambda _cid: container.name)
    return GpuProcess(**gpu_agent.describe_process(0, host_pid, 123 << 20, names))


def alive(container: Any, marker: str) -> bool:
    top = container.top(ps_args="-eo pid,stat,args")
    return any(marker in p[2] and not p[1].startswith("Z") for p in top["Processes"])


def test_kill_a_real_process_in_a_real_container(bed: HostService, container: Any) -> None:
    proc = start_in(container, "echo ready; while :; do sleep 1; done", "gpudesk-kill-me")
    # The agent's reading of the real host /proc: its container and its pid in there.
    assert proc.container_id == container.id and proc.container_name == container.name
    assert proc.ns_pid is not None and proc.ns_pid != proc.pid
    plan = plan_kill(proc, host=bed.host, ours={container.name})
    assert plan == KillPlan(proc.pid, Via.CONTAINER, proc.ns_pid, proc.command or "",
                            container.name)  # fmt: skip
    result = kill_process(bed, plan, grace=30)
    assert result.outcome == "terminated", result.message
    assert not alive(container, "gpudesk-kill-me")


def test_sigkill_after_the_grace_in_a_real_container(bed: HostService, container: Any) -> None:
    proc = start_in(container, IGNORES_TERM, "gpudesk-stubborn")
    plan = plan_kill(proc, host=bed.host, ours={container.name})
    assert isinstance(plan, KillPlan)
    result = kill_process(bed, plan, grace=1)
    assert result.outcome == "killed", result.message
    assert not alive(container, "gpudesk-stubborn")


def test_another_tools_container_is_refused(bed: HostService, container: Any) -> None:
    proc = start_in(container, "echo ready; while :; do sleep 1; done", "gpudesk-not-ours")
    try:
        reason = plan_kill(proc, host=bed.host, ours=set())
        assert isinstance(reason, str) and "did not create" in reason
    finally:
        container.exec_run(["pkill", "-f", "gpudesk-not-ours"], user="0")
