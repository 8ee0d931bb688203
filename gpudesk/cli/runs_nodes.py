"""The multi-node side of ``gpudesk submit|runs|logs|stop-run`` (gpudesk/core/runs/multinode.py):
a run started on several hosts, listed as one row, followed and stopped on every node."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from gpudesk.cli.common import (
    CliError,
    HostFailure,
    connected_services,
    open_fleet,
    report_failure,
)
from gpudesk.core import logs
from gpudesk.core.errors import GpudeskError
from gpudesk.core.fleet import Fleet, HostService
from gpudesk.core.runs import Run, RunSpec, list_runs, runs_named
from gpudesk.core.runs.multinode import (
    default_nodes_grace,
    merge_nodes,
    planned_nodes,
    stop_nodes,
    submit_nodes,
)


def split_names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def cmd_submit_nodes(args: argparse.Namespace, extra: list[str]) -> int:
    """``submit --host a,b``: one node per host, node 0 on the first."""
    hosts = split_names(args.host)
    with open_fleet() as (inventory, fleet):
        names = [inventory.get(h).name for h in hosts]
        failures: list[HostFailure] = []
        services = connected_services(fleet, names, failures)
        if failures:
            raise CliError(
                f"{failures[0]['host']} did not answer ({failures[0]['error'].rstrip('.')}); a"
                " multi-node run needs every host."
            )
        by_name = {s.host.name: s for s in services}
        spec = RunSpec(args.script, tuple(extra), nproc=args.nproc, name=args.name)
        runs = submit_nodes([by_name[n] for n in names], split_names(args.container), spec)
    first = runs[0]
    print(f"submitted {first.name} on {len(runs)} nodes (run id {first.run_id})")
    for rank, run in enumerate(runs):
        print(f"  node {rank}: {run.host}/{run.container} (pid {run.pid})")
    print(f"  gpudesk logs {first.name} -f")
    return 0


def merged_runs(
    fleet: Fleet, services: list[HostService], runs: list[Run], failures: list[HostFailure]
) -> list[Run]:
    """One row per multi-node run (core/runs/multinode.merge_nodes), asking the hosts of its
    other nodes too when `--host` left them out."""
    asked = {s.host.name for s in services}
    ids = {r.run_id for r in runs if r.nnodes > 1}
    more = sorted({h for r in runs if r.run_id in ids for h in _hosts_of(r)} - asked)
    for service in connected_services(fleet, more, failures) if more else []:
        asked.add(service.host.name)
        try:
            runs = runs + [r for r in list_runs(service) if r.run_id in ids]
        except GpudeskError as exc:
            report_failure(failures, service.host.name, exc)
    return merge_nodes(runs, asked, {f["host"]: f["error"] for f in failures})


def _hosts_of(run: Run) -> list[str]:
    return [str(n.get("host")) for n in run.record.get("nodes") or [] if isinstance(n, dict)]


def find_nodes(fleet: Fleet, names: list[str], run_name: str) -> list[tuple[HostService, Run]]:
    """The nodes of the multi-node run ``run_name``, in node-rank order (connecting to the
    hosts of its other nodes too); [] when no multi-node run has that name."""
    services = connected_services(fleet, names, echo=False)
    found = [(s, r) for s, r in _named(services, run_name) if r.nnodes > 1]
    if not found:
        return []
    run_id = found[0][1].run_id
    more = [h for h in _hosts_of(found[0][1]) if h not in {s.host.name for s in services}]
    if more:
        found += _named(connected_services(fleet, more), run_name)
    planned = planned_nodes(found[0][1])
    nodes = {(s.host.name, r.container): (s, r) for s, r in found if r.run_id == run_id}
    return sorted((nodes[w] for w in planned if w in nodes), key=lambda sr: _rank(sr[1]))


def _named(services: list[HostService], run_name: str) -> list[tuple[HostService, Run]]:
    """The runs called ``run_name`` on the hosts that answer (the others are reported by the
    one-host path this falls back to)."""
    found = []
    for service in services:
        try:
            found += [(service, r) for r in runs_named(list_runs(service), run_name)]
        except GpudeskError:
            continue
    return found


def _rank(run: Run) -> int:
    rank = run.record.get("node_rank")
    return rank if isinstance(rank, int) else 1 << 16


def logs_of_nodes(args: argparse.Namespace, nodes: list[tuple[HostService, Run]]) -> int:
    """``logs RUN [--node K]`` of a multi-node run: node K's log, or every node's, each line
    prefixed with its node, as the lines arrive."""
    if args.node is not None:
        chosen = [(s, r) for s, r in nodes if _rank(r) == args.node]
        if not chosen:
            ranks = ", ".join(str(_rank(r)) for _s, r in nodes)
            raise CliError(f"{nodes[0][1].name} has no node {args.node}; its nodes are {ranks}.")
        nodes = chosen
    lock = threading.Lock()
    followers: list[Any] = []
    prefix = args.node is None

    def printer(rank: int) -> logs.BatchCallback:
        def on_batch(lines: list[str], total: int) -> None:
            head = f"[node {rank}] " if prefix else ""
            with lock:
                sys.stdout.write("".join(f"{head}{line}\n" for line in lines))
                sys.stdout.flush()

        return on_batch

    for service, run in nodes:
        target = logs.LogTarget.run(run.name, run.log_path, run.container)
        followers.append(
            logs.follower(
                service, target, printer(_rank(run)), tail=args.lines, follow=args.follow,
                max_lines=1000,
            )
        )  # fmt: skip
    threads = [threading.Thread(target=f.run, daemon=True) for f in followers]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)  # a timeout keeps Ctrl-C deliverable
    except KeyboardInterrupt:
        for follower in followers:
            follower.stop()
        return 130
    errors = [f.error for f in followers if f.error]
    if errors:
        raise CliError(f"Following {nodes[0][1].name} failed on a node: {errors[0]}")
    return 0


def stop_all_nodes(nodes: list[tuple[HostService, Run]], grace: float | None) -> int:
    """``stop-run`` of a multi-node run: every node at once."""
    name = nodes[0][1].name
    wait = grace if grace is not None else default_nodes_grace([r for _s, r in nodes])
    print(
        f"sending SIGTERM to {name} on {len(nodes)} nodes; SIGKILL after {wait:g} s",
        file=sys.stderr,
    )
    results = stop_nodes(nodes, wait)
    for result in results:
        print(result.message)
    failed = [r for r in results if r.outcome == "error"]
    if failed and len(failed) == len(results):
        raise CliError(f"Could not stop {name} on any node; see the lines above.")
    return 1 if failed else 0


def check_node(args: argparse.Namespace) -> None:
    if args.node is not None and args.node < 0:
        raise CliError("--node must be a node rank: 0 for the first host of the run, 1, ...")
