"""``gpudesk stats``: live GPU and host stats from every host's agent."""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from typing import Any

from gpudesk.cli.common import CliError, HostFailure, connected_services
from gpudesk.cli.json_schema import SCHEMA_VERSION
from gpudesk.core.config import Inventory
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.sample import GpuSample, dump_sample
from gpudesk.core.gpu.stream import GpuStream, StreamState
from gpudesk.core.gpu.table import format_table


def sample_json(host_name: str, sample: GpuSample) -> dict[str, Any]:
    """A sample as docs/json.md's stats line: the agent's fields, null rather than ""."""
    record: dict[str, Any] = json.loads(dump_sample(sample))
    for key in ("hostname", "message"):
        record[key] = record[key] or None
    record["host_name"] = host_name
    return record


def _print_line(record: dict[str, Any]) -> None:
    print(json.dumps({**record, "schema": SCHEMA_VERSION}), flush=True)


# The agent samples every GPU each interval: faster than this is load, not information.
MIN_INTERVAL_S = 0.1
MAX_INTERVAL_S = 3600.0


def cmd_stats(args: argparse.Namespace) -> int:
    if not MIN_INTERVAL_S <= args.interval <= MAX_INTERVAL_S:  # also refuses nan
        raise CliError(
            f"--interval must be a number of seconds from {MIN_INTERVAL_S:g} to {MAX_INTERVAL_S:g}."
        )
    inventory = Inventory.load()
    names = [inventory.get(args.host).name] if args.host else inventory.names()
    fleet = Fleet.build(inventory)
    samples: queue.Queue[tuple[str, GpuSample]] = queue.Queue()
    streams: list[GpuStream] = []
    failures: list[HostFailure] = []
    try:
        services = connected_services(fleet, names, failures)
        if args.json:
            for failure in failures:
                _print_line({"host_name": failure["host"], "error": failure["error"]})
        if not services:
            return 1
        for service in services:
            name = service.host.name

            def on_state(state: StreamState, detail: str, name: str = name) -> None:
                if state is StreamState.RESTARTING:
                    print(f"gpudesk: {name}: GPU agent restarting: {detail}", file=sys.stderr)

            stream = service.gpu_stream(
                lambda sample, name=name: samples.put((name, sample)),  # type: ignore[misc]
                on_state,
                interval=args.interval,
                simulate=service.simulation,
            )
            streams.append(stream)
            threading.Thread(target=stream.run, daemon=True).start()
        pending = {s.host.name for s in services}
        while pending or not args.once:
            name, sample = samples.get()
            if args.once and name not in pending:
                continue
            pending.discard(name)
            if args.json:
                _print_line(sample_json(name, sample))
            else:
                print(f"== {name}\n{format_table(sample)}\n", flush=True)
        return 1 if failures else 0
    finally:
        for stream in streams:
            stream.stop()
        fleet.close()


def register(sub: Any) -> None:
    stats = sub.add_parser("stats", help="live GPU and host stats, like nvidia-smi, for every host")
    stats.add_argument("--host", metavar="H", help="only this host")
    stats.add_argument("--once", action="store_true", help="one sample per host, then exit")
    stats.add_argument("--json", action="store_true", help="JSON lines in the agent's schema")
    stats.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between samples"
    )
    stats.set_defaults(func=cmd_stats)
