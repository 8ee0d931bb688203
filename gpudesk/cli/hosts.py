"""``gpudesk hosts``: list, add, remove and check GPU hosts."""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gpudesk.cli.common import CliError, print_json, print_table
from gpudesk.core.config import Host, Inventory
from gpudesk.core.destinations import host_from_destination
from gpudesk.core.engine import EngineError
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.hostcheck import run_checks
from gpudesk.core.hostkeys import trusted_message
from gpudesk.core.ssh import SshConnection, SshError


def _host_row(host: Host) -> dict[str, Any]:
    return {
        "name": host.name,
        "kind": host.kind.value,
        "hostname": host.hostname or None,
        "user": host.user or None,
        "port": host.port if host.hostname else None,
        "identity": host.identity,
        "jump": host.jump,
        "builtin": host.builtin,
    }


def report_trusted_keys(service: HostService) -> None:
    """Say which new host keys --accept-new-host-key trusted (the jump host's too), on stderr
    as ssh does, so scripted output stays clean."""
    conn: object = service.conn
    while isinstance(conn, SshConnection):
        if conn.accepted_key is not None:
            print(trusted_message(conn.known_name, conn.accepted_key), file=sys.stderr)
            conn.accepted_key = None
        conn = conn.jump


def cmd_hosts_ls(args: argparse.Namespace) -> int:
    inventory = Inventory.load()
    if args.json:
        print_json({"hosts": [_host_row(h) for h in inventory.hosts]})
        return 0
    rows = [[h.name, h.destination, h.identity or "-", h.jump or "-"] for h in inventory.hosts]
    print_table(rows, ["NAME", "DESTINATION", "IDENTITY", "JUMP"])
    return 0


def cmd_hosts_add(args: argparse.Namespace) -> int:
    inventory = Inventory.load()
    if args.identity and not os.path.isfile(os.path.expanduser(args.identity)):
        raise CliError(f"There is no key file {args.identity}; check the --identity path.")
    host = host_from_destination(args.name, args.dest, identity=args.identity, jump=args.jump)
    if host.name in inventory.names():
        inventory.add(host)  # raises the duplicate-name error
    if not args.no_connect:
        fleet = Fleet.build(Inventory(inventory.paths, [*inventory.hosts, host]))
        service = fleet.get(host.name)
        try:
            connect_blocking(service.conn, accept_new_host_key=args.accept_new_host_key)
        finally:
            report_trusted_keys(service)
            fleet.close()
    inventory.add(host)
    print(f"added {host.name} ({host.destination})")
    return 0


def cmd_hosts_rm(args: argparse.Namespace) -> int:
    host = Inventory.load().remove(args.name)
    print(f"removed {host.name}; its containers and files on the host are untouched")
    return 0


def _check(service: HostService, accept: bool) -> dict[str, Any]:
    # Every field always present (docs/json.md's HostCheck), null until known.
    row: dict[str, Any] = {
        "name": service.host.name,
        "destination": service.host.destination,
        "state": None,
        "latency_ms": None,
        "docker": None,
        "gpu_runtime": None,
        "error": None,
        "docker_error": None,
        "checks": None,
        "checks_error": None,
    }
    try:
        try:
            connect_blocking(service.conn, accept_new_host_key=accept)
        finally:
            report_trusted_keys(service)
        row["state"] = "connected"
        latency = service.conn.probe_latency() if hasattr(service.conn, "probe_latency") else 0.0
        row["latency_ms"] = None if latency is None else round(latency, 2)
    except SshError as exc:
        row.update(state=exc.state.value, error=str(exc))
        return row
    try:
        info = service.engine()
        row.update(docker=info.version, gpu_runtime=info.gpu_runtime)
    except EngineError as exc:
        row.update(docker_error=str(exc))
    try:
        row["checks"] = [item.as_dict() for item in run_checks(service)]
    except SshError as exc:
        row["checks_error"] = str(exc)
    return row


def _print_checklist(row: dict[str, Any]) -> None:
    checks = row.get("checks")
    if not checks:
        return
    print(f"\n{row['name']}: ready for GPU dev containers?")
    for item in checks:
        print(f"  [{'ok' if item['ok'] else 'missing'}] {item['key']:<15} {item['detail']}")
        if not item["ok"]:
            print(f"        fix: {item['fix']}")


def cmd_hosts_check(args: argparse.Namespace) -> int:
    if not 0 < args.timeout <= 600:  # also refuses nan
        raise CliError("--timeout must be a number of seconds from 0 to 600.")
    inventory = Inventory.load()
    names = args.names or inventory.names()
    fleet = Fleet.build(inventory, connect_timeout=args.timeout)
    try:
        services = [fleet.get(n) for n in names]
        with ThreadPoolExecutor(max_workers=min(16, len(services))) as pool:
            rows = list(pool.map(lambda s: _check(s, args.accept_new_host_key), services))
    finally:
        fleet.close()
    if args.json:
        print_json({"hosts": rows})
    else:
        table = []
        for r in rows:
            latency = r.get("latency_ms")
            docker = r.get("docker") or "-"
            table.append(
                [r["name"], r["state"], "-" if latency is None else f"{latency:.1f} ms", docker]
            )
        print_table(table, ["NAME", "STATE", "LATENCY", "DOCKER"])
        for r in rows:
            _print_checklist(r)
        for r in rows:
            for key in ("error", "docker_error", "checks_error"):
                if r.get(key):
                    print(f"{r['name']}: {r[key]}", file=sys.stderr)
    return 0 if all(r["state"] == "connected" for r in rows) else 1


def register(sub: Any) -> None:
    hosts = sub.add_parser("hosts", help="list, add, remove and check GPU hosts")
    hosts.set_defaults(func=lambda a: (hosts.print_help(), 0)[1])
    hsub = hosts.add_subparsers(metavar="ACTION")
    ls = hsub.add_parser("ls", help="list hosts")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_hosts_ls)
    add = hsub.add_parser("add", help="add a host after verifying its SSH connection")
    add.add_argument("name", help="a short name: letters, digits, '.', '_', '-'")
    add.add_argument("dest", help="ssh://user@host[:port] or an alias from ~/.ssh/config")
    add.add_argument("--identity", metavar="FILE", help="private key file to log in with")
    add.add_argument("--jump", metavar="HOST", help="reach it through this host (ProxyJump)")
    add.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust the host's key if it is not yet known",
    )
    add.add_argument("--no-connect", action="store_true", help="save without connecting first")
    add.set_defaults(func=cmd_hosts_add)
    rm = hsub.add_parser("rm", help="remove a host from the inventory")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_hosts_rm)
    check = hsub.add_parser(
        "check",
        help="connect to hosts, show their state and a checklist: driver, NVIDIA runtime,"
        " python3, free disk, Docker access (with the fix for each missing item)",
    )
    check.add_argument("names", nargs="*", metavar="NAME")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--timeout", type=float, default=10.0, help="connect timeout in seconds")
    check.add_argument("--accept-new-host-key", action="store_true")
    check.set_defaults(func=cmd_hosts_check)
