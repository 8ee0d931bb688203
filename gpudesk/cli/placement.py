"""``gpudesk submit --gpus N [--template T]``: where a run goes when no ``--host`` says so."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from gpudesk.cli.common import CliError, connected_service
from gpudesk.core.fleet import Fleet, HostService
from gpudesk.core.runs.placement import inventory_names, place_run
from gpudesk.core.templates import DEFAULT_TEMPLATE, Template, load_template

MAX_GPUS = 64


def add_arguments(p: Any) -> None:
    p.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="run on N free GPUs: without --host, on the host with N free GPUs (best fit)",
    )
    p.add_argument(
        "--template",
        metavar="T",
        help=f"[templates.T] in hosts.toml for a container placement launches (default"
        f" {DEFAULT_TEMPLATE})",
    )


def check(args: argparse.Namespace) -> Template | None:
    """Refuse what needs no host; the template when placement may launch a container."""
    if args.gpus is None:
        if args.host is None or args.container is None:
            raise CliError(
                "Pass --host H --container C, or --gpus N to place the run on free GPUs."
            )
        if args.template is not None:
            raise CliError("--template only applies with --gpus N.")
        return None
    if not 1 <= args.gpus <= MAX_GPUS:
        raise CliError(f"--gpus must be a number of GPUs from 1 to {MAX_GPUS}.")
    return load_template(args.template or DEFAULT_TEMPLATE)


def target(
    fleet: Fleet, args: argparse.Namespace, template: Template | None
) -> tuple[HostService, str, tuple[tuple[str, str], ...]]:
    """The host, the container and the GPU environment of the run; says why on stderr."""
    if template is None:
        return connected_service(fleet, args.host), args.container, ()

    def say(line: str) -> None:
        print(f"gpudesk: {line}", file=sys.stderr, flush=True)

    placed = place_run(
        fleet,
        inventory_names(fleet.inventory, args.host),
        args.gpus,
        container=args.container,
        template=template,
        emit=say,
    )
    return placed.service, placed.container, placed.env
