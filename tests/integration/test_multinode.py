"""Multi-node runs on the test bed: two hosts, gloo on CPU.

Host `gpu1` is the test bed's sshd on 127.0.0.1 and `gpu2` a second, real sshd on 127.0.0.2,
both in front of the one test dockerd; the README's launch lines start a CPU-torch container on
each with host networking (`node0`, `node1`), so the two containers share the host's network
namespace and torchrun's c10d rendezvous on node 0's address (127.0.0.1) reaches both.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Host, Inventory
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.runs import Run, RunSpec, RunState, list_runs, submit
from gpudesk.core.runs.multinode import merge_nodes, submit_nodes
from scripts import testbed as testbed_module
from tests.integration.bed import bed_host
from tests.integration.pace import Pace
from tests.integration.test_cli_submit import readme_line, shell
from tests.integration.test_runs import ensure_torch_image, wait_for_run
from tests.json_contract import validate_text

pytestmark = pytest.mark.slow


NODES = ("node0", "node1")  # the README's container names, one per host
# The tiny model the runs tests use (tests/integration/test_runs.py), a few logged steps.
TINY_LM = (
    "--steps", "6", "--log-every", "1", "--eval-every", "0", "--ckpt-every", "0",
    "--layers", "1", "--dim", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4",
    "--seed", "7",
)  # fmt: skip


@pytest.fixture(scope="module")
def second_sshd(testbed: Any) -> Iterator[Any]:
    """A second host: a real sshd on 127.0.0.2, in front of the same dockerd."""
    sshd = testbed_module.new_sshd("multinode-gpu2", testbed.docker_host, address="127.0.0.2")
    yield sshd
    sshd.stop()


def _remove_nodes(client: Any) -> None:
    for name in NODES:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
        # the launch lines' default workspaces, ~/gpudesk/<name> of the hosts' root
        shutil.rmtree(Path("/root/gpudesk") / name, ignore_errors=True)


@pytest.fixture
def two_hosts(
    testbed: Any,
    docker_client: Any,
    *,
    second_sshd: Any,
    known_hosts_file: Path,
    short_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[HostService, HostService]]:
    """gpu1 and gpu2 in the inventory, each with a host-network container launched by the
    README's lines (built on the CPU-torch test image, named by $GPUDESK_BASE_IMAGE)."""
    with known_hosts_file.open("a") as f:
        f.write(second_sshd.known_hosts_line() + "\n")
    inventory = Inventory.load()
    inventory.add(bed_host(testbed, name="gpu1"))
    inventory.add(
        Host(
            name="gpu2",
            hostname="127.0.0.2",
            user="root",
            port=second_sshd.port,
            identity=str(second_sshd.client_key),
        )
    )
    monkeypatch.setenv("GPUDESK_BASE_IMAGE", ensure_torch_image(docker_client, testbed.base_image))
    _remove_nodes(docker_client)
    for host in ("gpu1", "gpu2"):
        line = readme_line(f"gpudesk launch ssh --host {host} --name node")
        launched = shell(line, timeout=900)
        assert launched.returncode == 0, launched.stderr
        name = shlex.split(line)[shlex.split(line).index("--name") + 1]
        attrs = docker_client.containers.get(name).attrs
        assert attrs["HostConfig"]["NetworkMode"] == "host"
        # sshd listens on the free host port gpudesk picked, and the ssh config points there
        port = int(attrs["Config"]["Labels"]["io.gpudesk.listen"].rsplit(":", 1)[1])
        listed = shell(f"gpudesk ps --host {host}")
        assert f"host network 127.0.0.1:{port}->22/tcp" in listed.stdout, listed.stdout
        inside = shell(f"gpudesk ssh {name} -- echo via-host-network")
        assert inside.stdout.strip() == "via-host-network", inside.stderr
    fleet = Fleet.build(Inventory.load())
    services = (fleet.get("gpu1"), fleet.get("gpu2"))
    for service in services:
        connect_blocking(service.conn)
    try:
        yield services
    finally:
        fleet.close()
        _remove_nodes(docker_client)


def merged_run(services: tuple[HostService, ...], name: str) -> Run:
    runs = [r for s in services for r in list_runs(s) if r.name == name]
    merged = merge_nodes(runs, {s.host.name for s in services}, {})
    assert len(merged) == 1, [(r.host, r.container, r.name) for r in merged]
    return merged[0]


def wait_merged(services: tuple[HostService, ...], name: str, done: Any) -> Run:
    # Nothing announces a state change in a run folder, so this polls as `gpudesk runs` does;
    # the deadline follows the run's own pace (tests/integration/pace.py).
    pace = Pace()
    while True:
        run = merged_run(services, name)
        if done(run):
            return run
        pace.saw((run.state_text, run.metrics.step))
        assert not pace.stalled(), f"{name} stuck in {run.state_text}, {pace.describe()}"
        time.sleep(0.5)


def losses(run_dir: str) -> list[tuple[int, float]]:
    lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return [(r["step"], r["loss"]) for r in records if r["event"] == "train"]


def test_two_nodes_of_one_process_match_one_node_of_two(
    two_hosts: tuple[HostService, HostService],
) -> None:
    gpu1, gpu2 = two_hosts
    runs = submit_nodes([gpu1, gpu2], list(NODES), RunSpec("lm", TINY_LM, nproc=1, name="mn2x1"))
    assert [(r.host, r.container) for r in runs] == [("gpu1", "node0"), ("gpu2", "node1")]
    # each node runs its own torchrun, joining node 0's c10d rendezvous under one run id
    for rank, run in enumerate(runs):
        command = run.command
        assert command[command.index("--nnodes") + 1] == "2"
        assert command[command.index("--node-rank") + 1] == str(rank)
        assert command[command.index("--rdzv-backend") + 1] == "c10d"
        assert command[command.index("--rdzv-id") + 1] == runs[0].run_id
        assert command[command.index("--rdzv-endpoint") + 1].startswith("127.0.0.1:")
        assert run.record["env"]["GLOO_SOCKET_IFNAME"] == "lo"  # what the host reports
    two = wait_merged(two_hosts, "mn2x1", lambda r: r.state.finished)
    assert two.state is RunState.SUCCEEDED, two.reason
    assert [n.state for n in two.nodes] == ["succeeded", "succeeded"]

    # The reference: the same script, arguments and seed, one node with two processes.
    submit(gpu1, "node0", RunSpec("lm", TINY_LM, nproc=2, name="mn1x2"))
    one = wait_for_run(gpu1, "mn1x2", lambda r: r.state.finished)
    assert one.state is RunState.SUCCEEDED, one.log_tail

    # Rank 0 alone writes metrics: node 0's folder holds them, node 1's only its log.
    node0, node1 = two.nodes
    assert not Path(node1.dir, "metrics.jsonl").exists()
    assert Path(node1.dir, "train.log").exists()
    got, want = losses(node0.dir), losses(one.dir)
    assert [s for s, _ in got] == list(range(1, 7))
    # Exactly equal: the same two ranks see the same data shards and seed either way, and gloo's
    # all-reduce of two gradients is one IEEE addition, which is commutative, so the placement
    # of the ranks on nodes cannot change a bit of the result.
    assert got == want

    # `gpudesk runs` shows one row for the run, with each node's state (asking the other
    # node's host too when --host names one).
    listed = shell("gpudesk runs --host gpu2 --json")
    assert listed.returncode == 0, listed.stderr
    rows = [r for r in validate_text("runs", listed.stdout)["runs"] if r["name"] == "mn2x1"]
    assert len(rows) == 1 and rows[0]["nnodes"] == 2
    assert rows[0]["host"] == "gpu1" and rows[0]["step"] == 6  # rank 0's metrics, on node 0
    assert [(n["host"], n["state"]) for n in rows[0]["nodes"]] == [
        ("gpu1", "succeeded"),
        ("gpu2", "succeeded"),
    ]
    table = shell("gpudesk runs --host gpu1")
    assert "succeeded [succeeded,succeeded]" in table.stdout, table.stdout

    # `logs` merges the nodes' logs (each line says its node) or shows one node's.
    merged = shell("gpudesk logs mn2x1")
    assert merged.returncode == 0, merged.stderr
    assert any(
        line.startswith("[node 0] ") and "step 6/6" in line for line in merged.stdout.splitlines()
    )
    single = shell("gpudesk logs mn2x1 --node 0")
    assert single.returncode == 0 and "step 6/6" in single.stdout and "[node" not in single.stdout


def test_stop_run_of_a_two_node_run_stops_every_node_with_a_checkpoint(
    two_hosts: tuple[HostService, HostService],
) -> None:
    line = readme_line("gpudesk submit --host gpu1,gpu2 ")
    argv = shlex.split(line)
    name = argv[argv.index("--name") + 1]
    started = shell(line)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"submitted {name} on 2 nodes")
    wait_merged(two_hosts, name, lambda r: (r.metrics.step or 0) >= 3 or r.state.finished)

    listed = shell(readme_line("gpudesk runs  "))
    row = next(line for line in listed.stdout.splitlines() if line.startswith(name))
    if "running [running,running]" not in row:  # say why, from the JSON's per-node reasons
        detail = shell("gpudesk runs --json")
        raise AssertionError(f"{listed.stdout}\n{detail.stdout}\n{detail.stderr}")
    node_log = shell(readme_line(f"gpudesk logs {name} --node "))
    assert node_log.returncode == 0, node_log.stderr

    stopped = shell(readme_line(f"gpudesk stop-run {name}"))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.count("Stopped") == 2, stopped.stdout
    run = wait_merged(two_hosts, name, lambda r: r.state.finished)
    assert run.state is RunState.STOPPED, run.reason
    assert [n.state for n in run.nodes] == ["stopped", "stopped"]
    tails = [Path(n.dir, "train.log").read_text()[-3000:] for n in run.nodes]
    assert [n.exit_code for n in run.nodes] == [0, 0], tails
    # every rank agreed to stop at the same step; rank 0 checkpointed it and said why
    records = [
        json.loads(x) for x in Path(run.nodes[0].dir, "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["event"] for r in records[-2:]] == ["ckpt", "done"]
    assert records[-1]["reason"] == "sigterm"
    step = records[-1]["step"]
    assert records[-2]["step"] == step and step >= 3
    assert Path(run.nodes[0].dir, "ckpt", f"step_{step:08d}.pt").exists()
    assert not Path(run.nodes[1].dir, "ckpt").exists()  # rank 1 writes no checkpoint


def test_a_lost_node_makes_the_run_degraded_or_failed_and_says_which(
    two_hosts: tuple[HostService, HostService], docker_client: Any
) -> None:
    gpu1, gpu2 = two_hosts
    long = ("--steps", "100000", *TINY_LM[2:])
    submit_nodes([gpu1, gpu2], list(NODES), RunSpec("lm", long, name="mnlost"))
    wait_merged(two_hosts, "mnlost", lambda r: (r.metrics.step or 0) >= 2 or r.state.finished)
    docker_client.containers.get("node1").kill()  # node 1's host loses the container
    run = wait_merged(two_hosts, "mnlost", lambda r: r.state is not RunState.RUNNING)
    assert run.state in (RunState.DEGRADED, RunState.FAILED), run.state_text
    assert run.nodes[1].state == "lost"
    assert run.reason is not None and run.reason.startswith("node 1 on gpu2 is lost"), run.reason
