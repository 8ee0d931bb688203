"""Multi-node runs: one torchrun per host, joined by PyTorch's own c10d rendezvous.

gpudesk starts the same run (same name, same run id) in one container per host. Each node's
torchrun gets ``--nnodes N --node-rank K --rdzv-backend c10d --rdzv-endpoint <node 0>:<port>
--rdzv-id <run id>``; node 0's torchrun hosts the rendezvous store (``--rdzv-conf is_host=1``),
the others connect to it. The containers must be on the host network (``gpudesk launch
--network host``) so the ranks reach each other on the hosts' own addresses, and
``NCCL_SOCKET_IFNAME``/``GLOO_SOCKET_IFNAME`` name the interface each host reports for node 0's
address. Each node's run folder holds its own ranks' files (``train.log``); rank 0 alone
writes ``metrics.jsonl`` and checkpoints, as in a one-node run.

The c10d rendezvous numbers the nodes itself: it sorts them by the address each one gives
(``--local-addr``), so node K is group rank K when the addresses sort as the hosts were named;
the merged row takes its metrics from the node whose folder holds them, wherever rank 0 ran.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gpudesk.core.containers.model import network_mode
from gpudesk.core.errors import GpudeskError
from gpudesk.core.flavours import label
from gpudesk.core.runs.container import container_labels, exec_in, get_container
from gpudesk.core.runs.control import StopResult, default_grace, stop_run
from gpudesk.core.runs.model import (
    RUNS_DIR,
    NodeLaunch,
    NodeStatus,
    Run,
    RunError,
    RunSpec,
    RunState,
    default_run_name,
    validate_run_name,
)
from gpudesk.core.runs.submit import submit
from gpudesk.core.service import Service

MAX_NODES = 64

# Runs in a node's container (on the host network, so it sees the host's interfaces), stdlib
# only. argv: this node's host name or address, and node 0's address ("" on node 0 itself).
# Prints this node's address, the interface that holds node 0's address (node 0) or that
# carries traffic to it (the others), and on node 0 a free port for the rendezvous store.
NODE_PROBE = r"""
import fcntl, json, socket, struct, sys

def ifaddr(name, request):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            data = fcntl.ioctl(s.fileno(), request, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return struct.unpack("!I", data[20:24])[0]

def holding(ip):
    want, near = struct.unpack("!I", socket.inet_aton(ip))[0], None
    for _index, name in socket.if_nameindex():
        addr, mask = ifaddr(name, 0x8915), ifaddr(name, 0x891B)
        if addr is None or mask is None:
            continue
        if addr == want:
            return name
        if near is None and addr & mask == want & mask:
            near = name
    return near

own, peer = sys.argv[1], sys.argv[2]
addr = socket.gethostbyname(own)
port = 0
if peer:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((peer, 9))
        ifname = holding(s.getsockname()[0])
else:
    ifname = holding(addr)
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
print(json.dumps({"addr": addr, "ifname": ifname, "port": port}))
"""
_RUN_PY = (
    'for p in gpudesk-python python3 python; do command -v "$p" >/dev/null 2>&1 && '
    'exec "$p" -c "$0" "$@"; done; echo "no python"; exit 127'
)


@dataclasses.dataclass(frozen=True)
class _Node:
    rank: int
    service: Service
    container: Any
    user: str

    @property
    def where(self) -> str:
        return f"{self.service.host.name}/{self.container.name}"


def node_containers(hosts: Sequence[str], containers: Sequence[str]) -> list[str]:
    """One container name per host: the same name everywhere, or one per host in order."""
    if len(containers) == 1:
        return list(containers) * len(hosts)
    if len(containers) != len(hosts):
        raise RunError(
            f"--container names {len(containers)} containers for {len(hosts)} hosts; give one"
            " name for all hosts or one per host, in the order of --host."
        )
    return list(containers)


def _check_node(rank: int, service: Service, name: str, run_name: str) -> _Node:
    container = get_container(service.docker(), name)
    labels = container_labels(container)
    host = service.host.name
    if label("flavour") not in labels:
        raise RunError(f"{name} on {host} is not a gpudesk container; launch one with gpudesk.")
    if container.status != "running":
        raise RunError(f"Container {name} on {host} is {container.status}; start it first.")
    if not network_mode(container.attrs):
        raise RunError(
            f"Container {name} on {host} is not on the host network, so the other nodes cannot"
            " reach its ranks; launch it with `gpudesk launch ... --network host`."
        )
    node = _Node(rank, service, container, labels.get(label("user"), ""))
    code, _ = exec_in(container, ["test", "-e", f"{RUNS_DIR}/{run_name}"], node.user)
    if code == 0:
        raise RunError(f"A run named {run_name} already exists in {node.where}; pick another name.")
    return node


def _probe(node: _Node, peer: str) -> dict[str, Any]:
    own = node.service.host.hostname
    code, out = exec_in(node.container, ["sh", "-c", _RUN_PY, NODE_PROBE, own, peer], node.user)
    try:
        found = json.loads(out.strip().splitlines()[-1]) if code == 0 else {}
    except (ValueError, IndexError):
        found = {}
    if not isinstance(found, dict) or not found.get("addr"):
        raise RunError(
            f"Could not find the address of {own} from {node.where}"
            f" ({out.strip()[-200:] or 'exit ' + str(code)}); check that the host name resolves"
            " there."
        )
    if not found.get("ifname"):
        toward = f"node 0's address {peer}" if peer else f"its address {found['addr']}"
        raise RunError(f"{node.where} has no network interface for {toward}; check its routes.")
    return found


def submit_nodes(
    services: Sequence[Service],
    containers: Sequence[str],
    spec: RunSpec,
    *,
    now: datetime | None = None,
) -> list[Run]:
    """Start ``spec`` as one run over several hosts, node K on ``services[K]``.

    Every node is checked before any starts; a node that refuses after others started stops
    those again, so a refused multi-node submit leaves no process running.
    """
    hosts = [s.host.name for s in services]
    if not 2 <= len(hosts) <= MAX_NODES:
        raise RunError(f"A multi-node run needs 2 to {MAX_NODES} hosts; {len(hosts)} were given.")
    if len(set(hosts)) != len(hosts):
        raise RunError("--host names a host twice; a multi-node run takes each host once.")
    names = node_containers(hosts, containers)
    name = validate_run_name(spec.name or default_run_name(spec.script, now))
    nodes = [
        _check_node(k, s, c, name) for k, (s, c) in enumerate(zip(services, names, strict=True))
    ]
    first = _probe(nodes[0], "")
    endpoint = f"{first['addr']}:{first['port']}"
    run_id = f"{name}-{int(time.time() * 1000):x}"
    record = {
        "nnodes": len(nodes),
        "rdzv_endpoint": endpoint,
        "nodes": [{"node_rank": n.rank, "host": hosts[n.rank], "container": names[n.rank]}
                  for n in nodes],
    }  # fmt: skip
    found = [first] + [_probe(n, str(first["addr"])) for n in nodes[1:]]
    started: list[Run] = []
    for node, info in zip(nodes, found, strict=True):
        ifname = str(info["ifname"])
        launch = NodeLaunch(
            nnodes=len(nodes),
            node_rank=node.rank,
            endpoint=endpoint,
            rdzv_id=run_id,
            local_addr=str(info["addr"]),
            env={"NCCL_SOCKET_IFNAME": ifname, "GLOO_SOCKET_IFNAME": ifname},
            record=record,
        )
        try:
            started.append(
                submit(node.service, node.container.name, dataclasses.replace(spec, name=name),
                       now=now, node=launch)
            )  # fmt: skip
        except GpudeskError as exc:
            if not started:
                raise
            stop_nodes([(s, r) for s, r in zip(services, started, strict=False)], grace=10.0)
            raise RunError(
                f"Node {node.rank} ({node.where}) did not start: {str(exc).rstrip('.')}; the"
                f" {len(started)} node(s) already started were stopped."
            ) from exc
    return started


def default_nodes_grace(runs: Sequence[Run]) -> float:
    """Seconds between SIGTERM and SIGKILL for a multi-node run: the slowest node's
    :func:`~gpudesk.core.runs.control.default_grace` (which allows for torchrun's exit
    barrier between the nodes)."""
    return max(default_grace(r) for r in runs)


def stop_nodes(nodes: Sequence[tuple[Service, Run]], grace: float) -> list[StopResult]:
    """Stop every node of a run at once: each gets SIGTERM (so all ranks agree to stop at the
    same step and rank 0 checkpoints), then SIGKILL after ``grace`` s."""
    results: list[StopResult | None] = [None] * len(nodes)

    def one(index: int, service: Service, run: Run) -> None:
        where = f"{service.host.name}/{run.container}"
        try:
            result = stop_run(service, run, grace=grace)
        except GpudeskError as exc:
            result = StopResult(run.name, "error", f"{where}: {exc}")
        else:
            result = dataclasses.replace(result, message=f"{where}: {result.message}")
        results[index] = result

    threads = [
        threading.Thread(target=one, args=(i, s, r), daemon=True) for i, (s, r) in enumerate(nodes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


# ------------------------------------------------------------------------- one row per run

_BAD = ("lost", "failed", "abandoned")  # in the order a reason names them


def merge_nodes(runs: Sequence[Run], asked: set[str], failed: dict[str, str]) -> list[Run]:
    """``runs`` with the nodes of each multi-node run merged into one row, in place of the
    first; ``asked`` are the hosts whose runs were listed, ``failed`` those that did not
    answer, with why."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.nnodes > 1 and run.run_id:
            groups.setdefault(run.run_id, []).append(run)
    merged: list[Run] = []
    done: set[str] = set()
    for run in runs:
        if run.run_id not in groups:
            merged.append(run)
        elif run.run_id not in done:
            done.add(run.run_id)
            merged.append(merge_one(groups[run.run_id], asked, failed))
    return merged


def planned_nodes(run: Run) -> set[tuple[str, str]]:
    """Where a multi-node run's plan (run.json's ``nodes``) puts its nodes: (host, container)."""
    return {(host, container) for _rank, host, container in _plan(run)}


def _plan(run: Run) -> list[tuple[int, str, str]]:
    plan = []
    for item in run.record.get("nodes") or []:
        if isinstance(item, dict) and isinstance(item.get("node_rank"), int):
            plan.append((item["node_rank"], str(item.get("host")), str(item.get("container"))))
    return sorted(plan)


def _status(rank: int, run: Run) -> NodeStatus:
    reason = run.metrics.error
    if run.state is RunState.LOST:
        reason = reason or "its processes are gone without an exit code"
    elif run.state is RunState.FAILED and reason is None and run.exit_code is not None:
        reason = f"exit code {run.exit_code}"
    return NodeStatus(
        rank, run.host, run.container, run.state.value, run.exit_code, run.pid, run.dir,
        reason if run.state.value in _BAD else None,
    )  # fmt: skip


def merge_one(group: Sequence[Run], asked: set[str], failed: dict[str, str]) -> Run:
    """One row for one multi-node run from the node folders found (``group``)."""
    plan = _plan(group[0])
    # Only the folders where the plan put a node (one dockerd behind two host names would list
    # every node's folder under both).
    planned = planned_nodes(group[0])
    group = [r for r in group if (r.host, r.container) in planned] or list(group)
    by_where = {(r.host, r.container): r for r in group}
    statuses: list[NodeStatus] = []
    for rank, host, container in plan:
        run = by_where.get((host, container))
        if run is not None:
            statuses.append(_status(rank, run))
        elif host in failed:
            why = f"{host} did not answer ({failed[host].rstrip('.')})"
            statuses.append(NodeStatus(rank, host, container, "lost", reason=why))
        elif host not in asked:
            statuses.append(NodeStatus(rank, host, container, "unknown"))
        else:
            why = f"there is no run folder for it in {host}/{container}"
            statuses.append(NodeStatus(rank, host, container, "lost", reason=why))
    state, reason = combined_state(statuses)
    # Rank 0 writes the metrics: the row shows the node whose folder holds them.
    base = max(group, key=lambda r: (r.metrics.step is not None, -_rank_of(r)))
    culprit = next((s for s in statuses if s.state == "failed"), None)
    exit_code = culprit.exit_code if state is RunState.FAILED and culprit else base.exit_code
    ended = max((r.ended for r in group if r.ended is not None), default=None)
    return dataclasses.replace(
        base, state=state, reason=reason, nodes=statuses, exit_code=exit_code, ended=ended
    )


def _rank_of(run: Run) -> int:
    rank = run.record.get("node_rank")
    return rank if isinstance(rank, int) else MAX_NODES


def combined_state(nodes: Sequence[NodeStatus]) -> tuple[RunState, str | None]:
    """The state of a multi-node run from its nodes', and why when a node broke it."""
    known = [n for n in nodes if n.state != "unknown"]
    # A lost node first: the others' failures usually follow from it (their peer is gone).
    broken = [n for n in known if n.state in _BAD]
    bad = min(broken, key=lambda n: (_BAD.index(n.state), n.node_rank), default=None)
    reason = None
    if bad is not None:
        reason = f"node {bad.node_rank} on {bad.host} is {bad.state}"
        reason += f": {bad.reason}" if bad.reason else ""
    active = [n for n in known if n.state in ("running", "starting", "degraded")]
    if active and bad is not None:
        return RunState.DEGRADED, reason
    if active:
        starting = all(n.state == "starting" for n in active)
        return (RunState.STARTING if starting else RunState.RUNNING), None
    states = {n.state for n in known}
    if "stopped" in states:
        return RunState.STOPPED, reason
    if bad is not None:
        return RunState.FAILED, reason
    return RunState.SUCCEEDED, None
