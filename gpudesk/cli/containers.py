"""``gpudesk ps|launch|start|stop|restart|rm|ssh|jupyter|ssh-include``: dev containers on hosts."""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

from gpudesk.cli import completion
from gpudesk.cli.common import (
    CliError,
    HostFailure,
    connected_service,
    connected_services,
    not_found,
    open_fleet,
    print_json,
    print_table,
    report_failure,
)
from gpudesk.core import openssh, sshconfig
from gpudesk.core.config import Inventory
from gpudesk.core.containers import (
    BaseImageMissingError,
    ContainerInfo,
    ContainerNotFoundError,
    parse_gpus,
)
from gpudesk.core.containers.launch import check_memory
from gpudesk.core.containers.listing import list_over_shell
from gpudesk.core.destinations import user_ssh_config_path
from gpudesk.core.devcontainers import DevContainers, LaunchRequest, remember_ports
from gpudesk.core.flavours import (
    DEFAULT_BASE_IMAGE,
    SSH_HOST_PREFIX,
    Flavour,
    has_sudo,
    validate_name,
)
from gpudesk.core.fleet import Fleet
from gpudesk.core.forwards import Forward


def _info_row(host: str, info: ContainerInfo) -> dict[str, Any]:
    """A container as docs/json.md's Container: epoch times, null rather than ""."""
    return {
        "host": host,
        "id": info.id,
        "name": info.name,
        "flavour": info.flavour.value if info.flavour else None,
        "image": info.image,
        "state": info.state,
        "status": info.status,
        "created": info.created.timestamp() if info.created else None,
        "started_at": info.started_at.timestamp() if info.started_at else None,
        "uptime_s": info.uptime.total_seconds() if info.uptime is not None else None,
        "gpus": info.gpus or None,
        "ports": [asdict(p) for p in info.ports],
        "workspace": info.workspace or None,
        "labels": dict(info.labels),
        "is_gpudesk": info.is_gpudesk,
        "user": info.user or None,
        "sudo": has_sudo(info.labels),
        "network": info.network or None,
    }


def _flavour_text(info: ContainerInfo) -> str:
    text = info.flavour.value if info.flavour else "-"
    return text + "+sudo" if has_sudo(info.labels) else text


def _ports_text(info: ContainerInfo) -> str:
    text = ",".join(f"{p.host_ip}:{p.host_port}->{p.container_port}" for p in info.ports)
    if info.network:  # nothing published: the container is on the host's network
        return f"host network {text}".strip()
    return text or "-"


def cmd_ps(args: argparse.Namespace) -> int:
    if args.idle:
        from gpudesk.cli.idle import cmd_ps_idle

        return cmd_ps_idle(args)
    if args.idle_for is not None or args.below is not None:
        raise CliError("--for and --below go with --idle.")
    inventory = Inventory.load()
    names = [inventory.get(args.host).name] if args.host else inventory.names()
    listed = _list_over_openssh(inventory, names, args.all)
    failures: list[HostFailure] = []
    rest = [n for n in names if n not in listed]
    if rest:
        fleet = Fleet.build(inventory)
        try:
            for service in connected_services(fleet, rest, failures):
                try:
                    listed[service.host.name] = DevContainers(service, inventory).list(args.all)
                except Exception as exc:  # one host's engine failing must not hide the others
                    report_failure(failures, service.host.name, exc)
        finally:
            fleet.close()
    rows = [(n, i) for n in names for i in listed.get(n, [])]
    code = 1 if failures else 0
    if not args.host:  # the whole fleet's names, for shell completion
        completion.remember("containers", [i.name for _h, i in rows])
    if args.json:
        print_json({"containers": [_info_row(h, i) for h, i in rows], "errors": failures})
        return code
    table = [
        [h, i.name, _flavour_text(i), i.image[:40], i.state,
         i.uptime_text, i.gpus or "-", _ports_text(i)]
        for h, i in rows
    ]  # fmt: skip
    print_table(table, ["HOST", "NAME", "FLAVOUR", "IMAGE", "STATE", "UP", "GPUS", "PORTS"])
    return code


def _list_over_openssh(
    inventory: Inventory, names: list[str], all_containers: bool
) -> dict[str, list[ContainerInfo]]:
    """The SSH hosts listed through the OpenSSH client and its shared master connection
    (core/openssh.py); a host it cannot reach is left to the usual path, which says why."""
    shells = openssh.shells(inventory, [inventory.get(n) for n in names])
    if not shells:
        return {}

    def attempt(name: str) -> tuple[str, list[ContainerInfo] | None]:
        try:
            infos = list_over_shell(shells[name], name, all_containers)
        except openssh.OpenSshFailed:
            return name, None
        remember_ports(inventory.paths, infos)
        return name, infos

    with ThreadPoolExecutor(max_workers=min(16, len(shells))) as pool:
        done = pool.map(attempt, list(shells))
        return {name: infos for name, infos in done if infos is not None}


def _find(fleet: Fleet, inventory: Inventory, name: str, host: str | None) -> DevContainers:
    """The host that has container ``name`` (searching all hosts unless --host).

    Hosts that could not be asked are named only when no host has the container: a dead
    engine on one host says nothing about a container found on another.
    """
    names = [inventory.get(host).name] if host else inventory.names()
    failures: list[HostFailure] = []
    services = connected_services(fleet, names, failures, echo=False)
    answered = 0
    for service in services:
        dev = DevContainers(service, inventory)
        try:
            if dev.engine().exists(name):
                return dev
        except Exception as exc:
            report_failure(failures, service.host.name, exc, echo=False)
            continue
        answered += 1
    where = f"on {host}" if host else "on any connected host"
    raise not_found(f"No container named {name} {where}; see `gpudesk ps`.", failures, answered)


def cmd_launch(args: argparse.Namespace) -> int:
    # What can be refused without the host is refused before connecting to it.
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_LAUNCH_TIMEOUT_S):
        raise CliError(f"--timeout must be a number of seconds from 1 to {MAX_LAUNCH_TIMEOUT_S}.")
    if args.name is not None:
        validate_name(args.name)
    parse_gpus(args.gpus)
    check_memory(args.memory)
    with open_fleet() as (inventory, fleet):
        service = connected_service(fleet, inventory.get(args.host).name)
        dev = DevContainers(service, inventory)
        flavour = Flavour(args.flavour)
        name = args.name or f"{flavour.value}-{os.urandom(2).hex()}"
        request = LaunchRequest(
            flavour=flavour,
            name=name,
            gpus=args.gpus,
            workspace=args.workspace,
            image=args.image,
            base_image=args.base_image,
            memory=args.memory,
            key=args.key,
            sudo=args.sudo,
            pull=args.pull,
            network=args.network or "",
        )
        quiet = args.json

        def progress(line: str) -> None:
            if not quiet:
                print(f"  {line}", file=sys.stderr, flush=True)

        try:
            result, reach = dev.launch(request, on_progress=progress, timeout=args.timeout)
        except BaseImageMissingError as exc:
            if not (sys.stdin.isatty() and _ask(f"{exc}\nPull {args.base_image} now? [y/N] ")):
                raise
            request = replace(request, pull=True)
            result, reach = dev.launch(request, on_progress=progress, timeout=args.timeout)
    if args.json:
        out = _info_row(args.host, result.info)
        out.update(reach=asdict(reach), host_port=result.host_port, image=result.image)
        out["reach"]["flavour"] = flavour.value
        print_json(out)
        return 0
    print(f"{name} is ready on {args.host}. Reach it with:")
    for line in reach.lines():
        print(f"  {line}")
    if flavour is Flavour.SSH and not sshconfig.include_present(
        user_ssh_config_path(), sshconfig.config_path(inventory.paths.home)
    ):
        print("  Run `gpudesk ssh-include` once so plain `ssh`, scp and VS Code find it.")
    if flavour is Flavour.JUPYTER and reach.url_on_host != reach.url_here:
        print(f"  on {args.host} itself: {reach.url_on_host}")
    return 0


MAX_LAUNCH_TIMEOUT_S = 86400


def _ask(question: str) -> bool:
    print(question, end="", file=sys.stderr, flush=True)
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:
        return False


def cmd_act(args: argparse.Namespace) -> int:
    with open_fleet() as (inventory, fleet):
        dev = _find(fleet, inventory, args.name, args.host)
        result = dev.act(args.verb, args.name)
    if args.verb == "rm":
        print(f"removed {args.name}; its workspace {getattr(result, 'kept_workspace', '')} is kept")
    else:
        print(f"{args.name}: {getattr(result, 'state', args.verb)}")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    home = Inventory.load().paths.home
    if not any(e.name == args.name for e in sshconfig.entries(home)):
        raise CliError(
            f"No ssh entry for {args.name}; launch it with `gpudesk launch ssh` "
            "(only SSH-flavour containers have one)."
        )
    ssh = shutil.which("ssh")
    if ssh is None:
        raise CliError("The OpenSSH client `ssh` is not installed here; install openssh-client.")
    argv = [ssh, "-F", str(sshconfig.config_path(home)), SSH_HOST_PREFIX + args.name]
    command = [c for c in args.command if c != "--"]
    os.execv(ssh, argv + command)
    return 0  # not reached


def _hold(forward: Forward) -> None:
    """Keep ``forward`` open until ctrl+c or SIGTERM, saying why a connection was refused."""
    forward.on_error = lambda message: print(f"gpudesk: {message}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        forward.close()


@contextmanager
def _dev_of(args: argparse.Namespace) -> Iterator[DevContainers]:
    """The DevContainers of the host holding container ``args.name``; closed at the end."""
    inventory = Inventory.load()
    fleet = Fleet.build(inventory)
    try:
        yield _find(fleet, inventory, args.name, args.host)
    except ContainerNotFoundError as exc:
        raise CliError(str(exc)) from exc
    finally:
        fleet.close()


def cmd_jupyter(args: argparse.Namespace) -> int:
    with _dev_of(args) as dev:
        reach, forward = dev.open_jupyter(args.name, args.port)
        print(reach.url_here, flush=True)
        if forward is None:
            return 0
        print(
            f"forwarding 127.0.0.1:{forward.local_port} to {args.name} (the same port next time)"
            "; ctrl+c stops",
            file=sys.stderr,
            flush=True,
        )
        _hold(forward)
    return 0


def cmd_forward(args: argparse.Namespace) -> int:
    with _dev_of(args) as dev:
        forward = dev.forward(args.name, args.port, args.local)
        print(forward.url, flush=True)
        print(
            f"forwarding 127.0.0.1:{forward.local_port} to port {args.port} of {args.name} on"
            f" {dev.host.name}, following it across restarts; ctrl+c stops",
            file=sys.stderr,
            flush=True,
        )
        _hold(forward)
    return 0


def cmd_ssh_include(args: argparse.Namespace) -> int:
    paths = Inventory.load().paths
    where = user_ssh_config_path()
    try:
        changed = sshconfig.ensure_include(where, sshconfig.config_path(paths.home))
    except OSError as exc:  # a folder, no permission, a full disk
        raise CliError(
            f"Cannot add the Include line to {where} ({exc.strerror or exc}); fix that file and"
            " run `gpudesk ssh-include` again."
        ) from exc
    print(f"{'added' if changed else 'already present'}: Include line at the top of {where}")
    return 0


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return int(text)


def register(sub: Any) -> None:
    ps = sub.add_parser("ps", help="list dev containers on every host")
    ps.add_argument("--host", metavar="H")
    ps.add_argument("--all", action="store_true", help="also containers gpudesk did not make")
    ps.add_argument("--json", action="store_true")
    ps.add_argument(
        "--idle",
        action="store_true",
        help="only containers whose GPUs stay idle while watched (any container holding GPUs)",
    )
    ps.add_argument(
        "--for", dest="idle_for", metavar="DURATION", help="with --idle: watch this long (10s)"
    )
    ps.add_argument("--below", metavar="PCT", help="with --idle: idle under this GPU util %% (5)")
    ps.set_defaults(func=cmd_ps)

    launch = sub.add_parser("launch", help="build if needed, run, and wait for a dev container")
    launch.add_argument("flavour", choices=[f.value for f in Flavour])
    launch.add_argument("--host", required=True, metavar="H")
    launch.add_argument("--name", help="container name (default: flavour-xxxx)")
    launch.add_argument("--gpus", metavar="SPEC", help="'all', a count like 2, or indices like 0,2")
    launch.add_argument("--workspace", metavar="DIR", help="host folder for /workspace")
    launch.add_argument("--image", metavar="IMG", help="run this image instead of building one")
    launch.add_argument(
        "--base-image",
        metavar="IMG",
        default=os.environ.get("GPUDESK_BASE_IMAGE") or DEFAULT_BASE_IMAGE,
        help="the PyTorch image to build on (default: $GPUDESK_BASE_IMAGE, else"
        f" {DEFAULT_BASE_IMAGE})",
    )
    launch.add_argument("--memory", metavar="SIZE", help="memory limit like 64g")
    launch.add_argument("--key", metavar="FILE", help="private key whose .pub the container trusts")
    launch.add_argument(
        "--pull",
        action="store_true",
        help="pull the base image onto the host if it is missing (several GB; progress shown)",
    )
    launch.add_argument(
        "--sudo",
        action="store_true",
        help="passwordless sudo for the container user (off: sudo is refused)",
    )
    launch.add_argument(
        "--network",
        choices=["host"],
        help="host: share the host's network (multi-node runs); the server listens on a free"
        " port of the host's 127.0.0.1",
    )
    launch.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ready")
    launch.add_argument("--json", action="store_true")
    launch.set_defaults(func=cmd_launch)

    for verb, text in (
        ("start", "start a stopped container"),
        ("stop", "stop a container (its workspace stays)"),
        ("restart", "restart a container"),
        ("rm", "remove a container; its workspace folder on the host is kept"),
    ):
        p = sub.add_parser(verb, help=text)
        p.add_argument("name")
        p.add_argument("--host", metavar="H")
        p.set_defaults(func=cmd_act, verb=verb)

    ssh = sub.add_parser("ssh", help="open an ssh session in an SSH dev container")
    ssh.add_argument("name")
    ssh.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD to run instead of a shell")
    ssh.set_defaults(func=cmd_ssh)

    jupyter = sub.add_parser("jupyter", help="print a Jupyter container's URL, forwarding its port")
    jupyter.add_argument("name")
    jupyter.add_argument("--host", metavar="H")
    jupyter.add_argument(
        "--port", type=_port, metavar="L", help="local port (default: the one used last time)"
    )
    jupyter.set_defaults(func=cmd_jupyter)

    forward = sub.add_parser(
        "forward", help="forward a container port here (TensorBoard, a web demo), ctrl+c stops"
    )
    forward.add_argument("name")
    forward.add_argument("port", type=_port, help="the port inside the container")
    forward.add_argument(
        "--local", type=_port, metavar="L", help="local port (default: the one used last time)"
    )
    forward.add_argument("--host", metavar="H")
    forward.set_defaults(func=cmd_forward)

    include = sub.add_parser(
        "ssh-include",
        help="add one Include line for gpudesk's ssh config at the top of ~/.ssh/config",
    )
    include.set_defaults(func=cmd_ssh_include)
