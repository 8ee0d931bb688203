"""Multi-node runs without a host: the torchrun command per node, one row per run and its
state from the nodes', and host networking in a container's listing and forwards."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpudesk.core.containers.launch import check_network
from gpudesk.core.containers.model import ContainerError, LaunchSpec, info_from_attrs
from gpudesk.core.flavours import Flavour, GpudeskLabels, label
from gpudesk.core.forwards import target_from_attrs
from gpudesk.core.runs import Run, RunError, RunSpec, RunState, build_run, run_command
from gpudesk.core.runs.model import NodeLaunch, NodeStatus
from gpudesk.core.runs.multinode import combined_state, merge_nodes, node_containers


def launch(rank: int) -> NodeLaunch:
    return NodeLaunch(
        nnodes=2,
        node_rank=rank,
        endpoint="10.0.0.5:29400",
        rdzv_id="lm2n-19abc",
        local_addr=f"10.0.0.{5 + rank}",
        env={"NCCL_SOCKET_IFNAME": "eth0", "GLOO_SOCKET_IFNAME": "eth0"},
        record={},
    )


def test_each_node_runs_torchrun_joining_node_0s_c10d_rendezvous() -> None:
    spec = RunSpec("lm", ("--steps", "5"), nproc=4)
    argv = run_command("/usr/bin/python3", "/s/lm.py", "/workspace/runs/x", spec, launch(1))
    assert argv[:2] == ["/usr/bin/python3", "/s/ddp_launch.py"]
    assert "--standalone" not in argv
    opts = dict(zip(argv[2:-5:2], argv[3:-5:2], strict=True))
    assert opts == {
        "--nnodes": "2",
        "--node-rank": "1",
        "--rdzv-backend": "c10d",
        "--rdzv-endpoint": "10.0.0.5:29400",
        "--rdzv-id": "lm2n-19abc",
        "--rdzv-conf": "is_host=0",  # node 0 alone hosts the rendezvous store
        "--local-addr": "10.0.0.6",
        "--nproc_per_node": "4",
    }
    assert argv[-5:] == ["/s/lm.py", "--out", "/workspace/runs/x", "--steps", "5"]
    # one process per node still goes through torchrun: the rendezvous needs it
    one = run_command("py", "/s/lm.py", "/o", RunSpec("lm", nproc=1), launch(0))
    assert "--rdzv-conf" in one and one[one.index("--rdzv-conf") + 1] == "is_host=1"
    assert run_command("py", "/s/lm.py", "/o", RunSpec("lm", nproc=1)) == [
        "py",
        "/s/lm.py",
        "--out",
        "/o",
    ]


def test_container_names_are_one_for_all_hosts_or_one_per_host() -> None:
    assert node_containers(["a", "b"], ["c"]) == ["c", "c"]
    assert node_containers(["a", "b"], ["c0", "c1"]) == ["c0", "c1"]
    with pytest.raises(RunError, match="one name for all hosts or one per host"):
        node_containers(["a", "b", "c"], ["c0", "c1"])


def node(rank: int, state: str, reason: str | None = None) -> NodeStatus:
    return NodeStatus(rank, f"gpu{rank + 1}", "c", state, reason=reason)


@pytest.mark.parametrize(
    ("states", "want", "why"),
    [
        (["running", "running"], RunState.RUNNING, None),
        (["starting", "running"], RunState.RUNNING, None),
        (["starting", "starting"], RunState.STARTING, None),
        (["running", "lost"], RunState.DEGRADED, "node 1 on gpu2 is lost: gone"),
        (["failed", "running"], RunState.DEGRADED, "node 0 on gpu1 is failed: gone"),
        (["succeeded", "succeeded"], RunState.SUCCEEDED, None),
        (["succeeded", "running"], RunState.RUNNING, None),
        (["stopped", "stopped"], RunState.STOPPED, None),
        (["succeeded", "failed"], RunState.FAILED, "node 1 on gpu2 is failed: gone"),
        (["lost", "succeeded"], RunState.FAILED, "node 0 on gpu1 is lost: gone"),
        # the lost node is named, not the one that failed because its peer went away
        (["failed", "lost"], RunState.FAILED, "node 1 on gpu2 is lost: gone"),
        (["unknown", "running"], RunState.RUNNING, None),  # a host that was not asked
    ],
)
def test_a_runs_state_follows_its_nodes(states: list[str], want: RunState, why: str | None) -> None:
    nodes = [node(k, s, "gone" if s in ("lost", "failed") else None) for k, s in enumerate(states)]
    assert combined_state(nodes) == (want, why)


def folder(host: str, container: str, rank: int, **extra: Any) -> Run:
    record = {
        "id": "lm2n-19abc",
        "name": "lm2n",
        "container": container,
        "script": "lm",
        "started": 1000.0,
        "nnodes": 2,
        "node_rank": rank,
        "nodes": [
            {"node_rank": 0, "host": "gpu1", "container": "node0"},
            {"node_rank": 1, "host": "gpu2", "container": "node1"},
        ],
    }
    item = {"dir": f"/ws/{container}/runs/lm2n", "run": json.dumps(record), "pid": "42\n", **extra}
    alive = {container: {42}} if "exit_code" not in extra else {}
    return build_run(item, host, container_running={container: True}, alive=alive, now=1030.0)


def test_the_nodes_of_a_run_make_one_row_with_rank_0s_metrics() -> None:
    metrics = '{"event": "train", "step": 3, "ts": 1020, "loss": 2.5, "total_steps": 10}\n'
    other = build_run(
        {"dir": "/ws/x/runs/solo", "run": json.dumps({"name": "solo", "container": "x"})},
        "gpu1", container_running={}, alive={}, now=1030.0,
    )  # fmt: skip
    runs = [folder("gpu2", "node1", 1), other, folder("gpu1", "node0", 0, metrics=metrics)]
    merged = merge_nodes(runs, {"gpu1", "gpu2"}, {})
    assert [r.name for r in merged] == ["lm2n", "solo"]
    row = merged[0]
    assert (row.host, row.container, row.state) == ("gpu1", "node0", RunState.RUNNING)
    assert row.metrics.step == 3 and row.metrics.loss == 2.5
    assert row.state_text == "running [running,running]"
    assert [n["host"] for n in row.to_json()["nodes"]] == ["gpu1", "gpu2"]
    # One dockerd behind two host names lists node 0's folder under gpu2 too: not a node.
    seen_twice = [folder("gpu2", "node0", 0, metrics=metrics), *runs]
    assert merge_nodes(seen_twice, {"gpu1", "gpu2"}, {})[0].host == "gpu1"

    # A node whose host did not answer makes the run degraded, and says why.
    lone = merge_nodes([runs[2]], {"gpu1", "gpu2"}, {"gpu2": "Connection refused."})[0]
    assert lone.state is RunState.DEGRADED
    assert (
        lone.to_json()["error"]
        == "node 1 on gpu2 is lost: gpu2 did not answer (Connection refused)"
    )
    # A host that was not asked (`runs --host gpu1`) is unknown, not lost.
    assert merge_nodes([runs[2]], {"gpu1"}, {})[0].state_text == "running [running,unknown]"

    # Once every node ended: one failed node fails the run, with its exit code.
    ended = [
        folder("gpu1", "node0", 0, exit_code="0\n", metrics=metrics),
        folder("gpu2", "node1", 1, exit_code="1\n"),
    ]
    failed = merge_nodes(ended, {"gpu1", "gpu2"}, {})[0]
    assert failed.state is RunState.FAILED and failed.exit_code == 1
    assert failed.reason == "node 1 on gpu2 is failed: exit code 1"


def host_attrs(network: str = "host", listen: str = "127.0.0.1:41234") -> dict[str, Any]:
    labels = GpudeskLabels(Flavour.SSH, "alice", "/ws", "dev").to_labels()
    if listen:
        labels[label("listen")] = listen
    return {
        "Id": "abc",
        "Name": "/node0",
        "Config": {"Labels": labels, "Image": "img"},
        "State": {"Status": "running"},
        "HostConfig": {"NetworkMode": network},
        "NetworkSettings": {"Ports": {}, "Networks": {"host": {"IPAddress": ""}}},
    }


def test_a_host_network_container_shows_its_servers_loopback_port() -> None:
    info = info_from_attrs(host_attrs())
    assert info.network == "host" and info.host_port("22/tcp") == 41234
    # forwards: the server's port maps to where it listens; any other port is the host's own
    assert target_from_attrs(host_attrs(), 22) == ("127.0.0.1", 41234)
    assert target_from_attrs(host_attrs(), 6006) == ("127.0.0.1", 6006)
    assert info_from_attrs(host_attrs(network="bridge")).network == ""


def test_host_network_launch_needs_a_picked_port_and_knows_one_network() -> None:
    spec = LaunchSpec(Flavour.SSH, "n0", "/ws", network="host", host_port=41234)
    assert check_network(spec) == 41234
    assert check_network(LaunchSpec(Flavour.SSH, "n0", "/ws")) is None
    with pytest.raises(ContainerError, match="free port on the host"):
        check_network(LaunchSpec(Flavour.SSH, "n0", "/ws", network="host"))
    with pytest.raises(ContainerError, match="use host or leave it out"):
        check_network(LaunchSpec(Flavour.SSH, "n0", "/ws", network="macvlan", host_port=41234))


def test_cli_refuses_bad_multi_node_requests_in_one_line_before_any_host() -> None:
    from tests.unit.test_cli import run_cli

    done = run_cli("submit", "--host", "gpu1,nope", "--container", "c", "lm")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "No host named 'gpu1'" in done.stderr and len(done.stderr.splitlines()) == 1
    done = run_cli("logs", "lm2n", "--node", "-1")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "gpudesk: --node must be a node rank: 0 for the first host of the run, 1, ..."
    )


def test_stopping_a_multi_node_run_allows_for_torchruns_exit_barrier() -> None:
    from gpudesk.core.runs import default_grace
    from gpudesk.core.runs.control import EXIT_BARRIER_S, MIN_GRACE

    assert default_grace(folder("gpu1", "node0", 0)) == MIN_GRACE + EXIT_BARRIER_S
