"""Placement picks the host with free GPUs: simulated GPUs on two hosts of the real test bed.

Hosts gpu1 and gpu2 are two hosts.toml entries on the test bed's sshd (and its dockerd), each
with its own simulation (GPUDESK_SIMULATE_GPUS: gpu1 has only GPU 7 free, gpu2 has 6 and 7),
plus `dead` (a closed port) that must be reported, not fatal. The README's placement lines run
as written through the `gpudesk` console script: the first launches a container from the
`place` template on gpu2 and runs there pinned to those GPUs, the second reuses that container,
the third is refused with the free map.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Host, Inventory, Paths
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.runs import RunState
from tests.integration.bed import bed_host
from tests.integration.test_cli_submit import readme_line, shell
from tests.integration.test_runs import ensure_torch_image, wait_for_run

pytestmark = pytest.mark.slow

SIMULATION = ";gpu1=8,busy=0-6;gpu2=8,busy=0-5"
CONTAINER = "place-gpu6-7"  # the `place` template's name for GPUs 6,7


@pytest.fixture
def two_hosts(
    testbed: Any,
    docker_client: Any,
    known_hosts_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[HostService]:
    monkeypatch.setenv("GPUDESK_SIMULATE_GPUS", SIMULATION)
    inventory = Inventory.load()
    inventory.add(bed_host(testbed, name="gpu1"))
    inventory.add(bed_host(testbed, name="gpu2"))
    inventory.add(Host(name="dead", hostname="127.0.0.1", user="root", port=1))
    image = ensure_torch_image(docker_client, testbed.base_image)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    hosts_file = Paths.from_env().hosts_file
    hosts_file.write_text(
        hosts_file.read_text()
        + "\n# what placement launches with --template place\n[templates.place]\n"
        + f'base_image = "{image}"\nworkspace = "{tmp_path}/{{name}}"\nkey = "{key}"\n'
    )

    def remove() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(CONTAINER).remove(force=True)

    remove()  # left over by an interrupted run
    fleet = Fleet.build(Inventory.load())
    service = fleet.get("gpu2")
    connect_blocking(service.conn)
    try:
        yield service
    finally:
        fleet.close()
        remove()


def run_json(service: HostService, name: str) -> dict[str, Any]:
    container = service.docker().containers.get(CONTAINER)
    code, out = container.exec_run(["cat", f"/workspace/runs/{name}/run.json"], user="dev")
    assert code == 0, out
    return dict(json.loads(out))


def submitted_name(stdout: str) -> str:
    assert stdout.startswith("submitted "), stdout
    return stdout.split()[1]


def test_placement_picks_the_host_with_free_gpus(two_hosts: HostService) -> None:
    launch = readme_line("gpudesk submit --gpus 2 --template place ")
    done = shell(launch)
    assert done.returncode == 0, done.stderr
    why = done.stderr.splitlines()[0]
    # gpu1 (1 free) cannot take 2 GPUs; gpu2 (6,7 free) can; the others are reported.
    assert why.startswith("gpudesk: placed on gpu2: GPUs 6,7 free (SIMULATED) ("), why
    assert "gpu1: 1 free" in why and "dead: unreachable" in why and "localhost: " in why
    assert f"launching {CONTAINER} from template place" in done.stderr
    assert f" on gpu2/{CONTAINER} (pid " in done.stdout
    first = submitted_name(done.stdout)
    record = run_json(two_hosts, first)
    # Launched with exactly GPUs 6,7: inside the container they are 0 and 1; one rank each.
    assert record["env"]["CUDA_VISIBLE_DEVICES"] == "0,1" and record["nproc"] == 2
    assert record["env"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    labels = two_hosts.docker().containers.get(CONTAINER).labels
    assert labels["io.gpudesk.gpus"] == "6,7,"
    run = wait_for_run(two_hosts, first, lambda r: r.state.finished)
    assert run.state is RunState.SUCCEEDED, run.log_tail

    again = shell(readme_line("gpudesk submit --gpus 2 textcls "))
    assert again.returncode == 0, again.stderr
    assert f"using container {CONTAINER} on gpu2" in again.stderr
    assert "launching" not in again.stderr
    second = submitted_name(again.stdout)
    assert run_json(two_hosts, second)["env"]["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert wait_for_run(two_hosts, second, lambda r: r.state.finished).state is RunState.SUCCEEDED

    started = time.monotonic()
    refused = shell(readme_line("gpudesk submit --gpus 3 "))
    print(f"sampling 4 hosts and refusing took {time.monotonic() - started:.2f} s")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    lines = refused.stderr.splitlines()
    assert lines[0] == "gpudesk: No host has 3 free GPUs now; free GPUs per host:"
    assert "  gpu1: 1 of 8 free (GPUs 7)" in lines and "  gpu2: 2 of 8 free (GPUs 6,7)" in lines
    assert any(line.startswith("  dead: unreachable") for line in lines)

    # --host with --gpus places on that host alone: gpu1 has one free GPU, not two.
    only = shell("gpudesk submit --gpus 2 --host gpu1 textcls")
    assert only.returncode == 1
    assert only.stderr.splitlines() == [
        "gpudesk: No host has 2 free GPUs now; free GPUs per host:",
        "  gpu1: 1 of 8 free (GPUs 7)",
    ]
