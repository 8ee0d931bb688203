"""``gpudesk submit|runs|logs|stop-run``: training runs and their logs."""

from __future__ import annotations

import argparse
import math
import sys
import threading
from typing import Any

from gpudesk.cli import completion, placement, runs_nodes
from gpudesk.cli.common import (
    CliError,
    HostFailure,
    connected_services,
    not_found,
    open_fleet,
    print_json,
    print_table,
    report_failure,
)
from gpudesk.core import logs
from gpudesk.core.config import Inventory
from gpudesk.core.errors import GpudeskError
from gpudesk.core.fleet import Fleet, HostService
from gpudesk.core.runs import (
    RUN_COLUMNS,
    Run,
    RunError,
    RunSpec,
    SubmitProgress,
    SubmitStage,
    default_grace,
    list_runs,
    run_cells,
    runs_named,
    stop_run,
    submit,
)
from gpudesk.core.ssh import SshError


def _hosts(inventory: Inventory, host: str | None) -> list[str]:
    return [inventory.get(host).name] if host else inventory.names()


def _all_runs(services: list[HostService], failures: list[HostFailure]) -> list[Run]:
    runs: list[Run] = []
    for service in services:
        try:
            runs += list_runs(service)
        except GpudeskError as exc:  # RunError, or the connection dropping under it
            report_failure(failures, service.host.name, exc)
    return runs


def run_json(run: Run) -> dict[str, Any]:
    """A run as docs/json.md's Run: null rather than empty records."""
    row = run.to_json()
    row.update(
        ended=run.ended,
        last_train=row["last_train"] or None,
        last_eval=row["last_eval"] or None,
    )
    return row


def _named(services: list[HostService], run_name: str) -> list[tuple[HostService, Run]]:
    return [(s, r) for s in services for r in runs_named(list_runs(s), run_name)]


def _find(fleet: Fleet, names: list[str], run_name: str) -> tuple[HostService, Run]:
    failures: list[HostFailure] = []
    services = connected_services(fleet, names, failures, echo=False)
    found = _named(services, run_name)
    if not found:
        message = f"There is no run named {run_name}; see `gpudesk runs`."
        raise not_found(message, failures, len(services))
    if len(found) > 1:
        where = ", ".join(f"{r.host}/{r.container}" for _s, r in found)
        raise CliError(f"Several runs are named {run_name} ({where}); pass --host.")
    return found[0]


def cmd_submit(args: argparse.Namespace) -> int:
    extra = list(args.args)  # everything after `--` (main.parse_args)
    template = placement.check(args)
    if "," in (args.host or ""):  # several hosts: a multi-node run
        if template is not None:
            raise CliError(
                "--gpus places a run on one host; a multi-node run names its hosts and "
                "containers (--host a,b --container c)."
            )
        args.nproc = args.nproc if args.nproc is not None else 1
        return runs_nodes.cmd_submit_nodes(args, extra)
    nproc = args.nproc if args.nproc is not None else (args.gpus or 1)
    fleet = Fleet.build(Inventory.load())
    progress = SubmitProgress()
    service: HostService | None = None
    try:
        service, args.container, env = placement.target(fleet, args, template)
        run = submit(
            service,
            args.container,
            RunSpec(args.script, tuple(extra), nproc=nproc, name=args.name, env=env),
            progress=progress,
        )
    except KeyboardInterrupt:
        # Ctrl+C says what it left: nothing, or a run that is listed and can be stopped.
        left = "nothing was started." if service is None else _left_behind(service, args, progress)
        print(f"gpudesk: interrupted: {left}", file=sys.stderr)
        return 130
    finally:
        fleet.close()
    print(f"submitted {run.name} on {run.host}/{run.container} (pid {run.pid})")
    print(f"  gpudesk logs {run.name} -f --host {run.host}")
    return 0


def _left_behind(service: HostService, args: argparse.Namespace, progress: SubmitProgress) -> str:
    """What an interrupted submit left, as one sentence: looked up when it may have started."""
    if progress.stage in (SubmitStage.CHECKING, SubmitStage.REFUSED):
        return "nothing was started."
    name, where = progress.run, f"{service.host.name}/{args.container}"
    stop = f"stop it with `gpudesk stop-run {name} --host {service.host.name}`"
    try:
        found = runs_named(list_runs(service), name, args.container)
    except (RunError, SshError, KeyboardInterrupt):
        return f"run {name} on {where} may have started; see `gpudesk runs` and {stop}."
    if not found:
        return "nothing was started."
    return f"run {name} is {found[0].state_text} on {where}; {stop}."


def cmd_runs(args: argparse.Namespace) -> int:
    failures: list[HostFailure] = []
    with open_fleet() as (inventory, fleet):
        services = connected_services(fleet, _hosts(inventory, args.host), failures)
        runs = runs_nodes.merged_runs(fleet, services, _all_runs(services, failures), failures)
    if not args.host:  # the whole fleet's names, for shell completion
        completion.remember("runs", [r.name for r in runs])
    if args.json:
        print_json({"runs": [run_json(r) for r in runs], "errors": failures})
    else:
        print_table([run_cells(r) for r in runs], list(RUN_COLUMNS))
    return 1 if failures else 0


# More lines than the follower's buffer could hold anyway (it is bounded in bytes too).
MAX_TAIL_LINES = 10_000_000


def cmd_logs(args: argparse.Namespace) -> int:
    if not 0 <= args.lines <= MAX_TAIL_LINES:
        raise CliError(f"-n must be a number of lines from 0 to {MAX_TAIL_LINES:,}.")
    runs_nodes.check_node(args)
    with open_fleet() as (inventory, fleet):
        nodes = runs_nodes.find_nodes(fleet, _hosts(inventory, args.host), args.target)
        if nodes:
            return runs_nodes.logs_of_nodes(args, nodes)
        if args.node is not None:
            raise CliError(f"--node is for multi-node runs; {args.target} is not one.")
        service, target = _log_target(fleet, _hosts(inventory, args.host), args.target)

        closed = threading.Event()

        def on_batch(lines: list[str], total: int) -> None:
            try:
                sys.stdout.write("".join(f"{line}\n" for line in lines))
                sys.stdout.flush()
            except BrokenPipeError:  # the reader went away (`| head`): stop following
                closed.set()
                follower.stop()

        follower = logs.follower(
            service, target, on_batch, tail=args.lines, follow=args.follow, max_lines=1000
        )
        thread = threading.Thread(target=follower.run, daemon=True)
        thread.start()
        try:
            # join() with a timeout keeps Ctrl-C deliverable to the main thread.
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            follower.stop()
            thread.join(5)
            return 130
        if closed.is_set():
            raise BrokenPipeError  # main() exits quietly
        if follower.error:
            raise CliError(f"Following {target.title} failed: {follower.error}")
        if args.follow and not follower.stopped:
            _ended_early(service, target, follower.total)
        return 0


def _ended_early(service: HostService, target: logs.LogTarget, shown: int) -> None:
    """A follow that ended by itself: a file's ``tail -F`` never does, so the channel (or the
    connection under it) was lost; a container's output ends when the container stops."""
    again = f"follow it again with `gpudesk logs {target.name} -f --host {service.host.name}`"
    if not service.conn.connected:
        raise CliError(
            f"Lost the connection to {service.host.name} while following {target.title}"
            f" ({shown} lines shown); check the host, then {again}."
        )
    if target.kind is not logs.TargetKind.CONTAINER:
        raise CliError(
            f"Following {target.title} ended unexpectedly ({shown} lines shown); {again}."
        )


def _log_target(fleet: Fleet, names: list[str], target: str) -> tuple[HostService, logs.LogTarget]:
    failures: list[HostFailure] = []
    services = connected_services(fleet, names, failures, echo=False)
    for service, run in _named(services, target)[:1]:
        return service, logs.LogTarget.run(run.name, run.log_path, run.container)
    for service in services:
        try:
            service.docker().containers.get(target)
        except Exception:
            continue
        return service, logs.LogTarget.container(target)
    message = f"No run or container is named {target}; see `gpudesk runs` or `gpudesk ps`."
    raise not_found(message, failures, len(services))


MAX_GRACE_S = 3600.0


def _check_grace(grace: float) -> None:
    if not (math.isfinite(grace) and 0 <= grace <= MAX_GRACE_S):
        raise CliError(f"--grace must be a number of seconds from 0 to {MAX_GRACE_S:g}.")


def cmd_stop_run(args: argparse.Namespace) -> int:
    if args.grace is not None:
        _check_grace(args.grace)  # before connecting: a bad number needs no host to refuse
    with open_fleet() as (inventory, fleet):
        nodes = runs_nodes.find_nodes(fleet, _hosts(inventory, args.host), args.run)
        if nodes:
            return runs_nodes.stop_all_nodes(nodes, args.grace)
        service, run = _find(fleet, _hosts(inventory, args.host), args.run)
        grace = args.grace if args.grace is not None else default_grace(run)
        _check_grace(grace)
        print(f"sending SIGTERM to {run.name}; SIGKILL after {grace:g} s", file=sys.stderr)
        result = stop_run(service, run, grace=grace)
    print(result.message)
    return 0


def register(sub: Any) -> None:
    """Adds this group's subcommands to the top-level parser."""
    p = sub.add_parser(
        "submit",
        help="start a training run in a running container",
        usage="gpudesk submit (--host H[,H2...] --container C[,C2...] | --gpus N [--template T])"
        " [--nproc N] [--name RUN] SCRIPT [-- SCRIPT_ARGS ...]",
        description="Start SCRIPT (textcls, translate, lm, recsys, or an absolute path in the "
        "container) detached in CONTAINER. gpudesk's options go before or after SCRIPT; "
        "everything after -- goes to the script, and a bundled script checks those arguments "
        "before anything starts.",
    )
    p.add_argument("--host", metavar="H", help="a host, or several (a,b) for a multi-node run")
    p.add_argument(
        "--container",
        metavar="C",
        help="the container; for a multi-node run one name on every host or one per host (c1,c2)",
    )
    placement.add_arguments(p)
    p.add_argument(
        "--nproc", type=int, metavar="N", help="processes (torchrun) per node; default --gpus or 1"
    )
    p.add_argument("--name", metavar="RUN", help="run name (default <script>-<time>)")
    p.add_argument("script", metavar="SCRIPT")
    # The script's arguments: main.parse_args cuts them off at `--` before argparse sees them,
    # so gpudesk's own options may follow SCRIPT.
    p.set_defaults(func=cmd_submit, args=[])

    p = sub.add_parser("runs", help="list training runs on every host")
    p.add_argument("--host", metavar="H", help="only this host")
    p.add_argument("--json", action="store_true", help="JSON list")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("logs", help="show or follow a run's log or a container's output")
    p.add_argument("target", metavar="TARGET", help="a run name or a container name")
    p.add_argument("-f", "--follow", action="store_true", help="keep following")
    p.add_argument("-n", "--lines", type=int, default=logs.DEFAULT_TAIL, metavar="N")
    p.add_argument("--host", metavar="H")
    p.add_argument(
        "--node", type=int, metavar="K", help="a multi-node run: only node K (default: every node)"
    )
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop-run", help="stop a run: SIGTERM (it checkpoints), then SIGKILL")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--host", metavar="H")
    p.add_argument(
        "--grace",
        type=float,
        default=None,
        metavar="S",
        help="seconds before SIGKILL (default: 3x the run's last checkpoint write + 5, at least 10)",
    )
    p.set_defaults(func=cmd_stop_run)
