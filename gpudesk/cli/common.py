"""What every CLI command module shares: user-facing errors, tables, connecting hosts."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from gpudesk.core.config import Inventory
from gpudesk.core.errors import GpudeskError
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.ssh import SshError


class CliError(GpudeskError):
    """Printed as ``gpudesk: <message>`` on stderr with exit code 1."""


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def print_json(document: dict[str, Any]) -> None:
    """One ``--json`` document, stamped with the contract version (see docs/json.md)."""
    from gpudesk.cli.json_schema import SCHEMA_VERSION

    print(json.dumps({"schema": SCHEMA_VERSION, **document}, indent=2))


# A host that could not answer, as the --json ``errors`` entries carry it.
HostFailure = dict[str, str]


def report_failure(
    failures: list[HostFailure] | None, host: str, exc: BaseException, *, echo: bool = True
) -> None:
    """One line on stderr (unless not ``echo``), and an ``errors`` entry when collected."""
    message = str(exc) or type(exc).__name__
    if echo:
        print(f"gpudesk: {host}: {message}", file=sys.stderr)
    if failures is not None:
        failures.append({"host": host, "error": message})


def connected_services(
    fleet: Fleet,
    names: list[str],
    failures: list[HostFailure] | None = None,
    *,
    echo: bool = True,
) -> list[HostService]:
    """Connect to each named host in parallel; report the ones that fail (on stderr if echo)."""

    def attempt(service: HostService) -> HostService | None:
        try:
            connect_blocking(service.conn)
        except SshError as exc:
            report_failure(failures, service.host.name, exc, echo=echo)
            return None
        return service

    services = [fleet.get(n) for n in names]
    with ThreadPoolExecutor(max_workers=min(16, len(services))) as pool:
        return [s for s in pool.map(attempt, services) if s is not None]


def not_found(message: str, failures: list[HostFailure], answered: int) -> CliError:
    """``message`` (nothing is named so) as one line, saying which hosts could not be asked:
    a host that did not answer is no proof that the thing is not there."""
    if not failures:
        return CliError(message)
    first = f"{failures[0]['host']}: {failures[0]['error'].rstrip('.')}"
    if not answered and len(failures) == 1:
        return CliError(f"{first}.")
    hosts = ", ".join(f["host"] for f in failures)
    where = "" if answered else "no host answered; "
    return CliError(f"{message.rstrip('.')} ({where}{hosts} could not be asked: {first}).")


@contextmanager
def open_fleet(connect_timeout: float = 10.0) -> Iterator[tuple[Inventory, Fleet]]:
    """The inventory and a fleet for one command; every connection is closed at the end."""
    inventory = Inventory.load()
    fleet = Fleet.build(inventory, connect_timeout=connect_timeout)
    try:
        yield inventory, fleet
    finally:
        fleet.close()


def connected_service(fleet: Fleet, name: str) -> HostService:
    """Connect to one host or raise its connection error."""
    service = fleet.get(name)
    connect_blocking(service.conn)
    return service
