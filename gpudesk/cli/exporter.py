"""``gpudesk exporter``: the fleet's GPU, host and container metrics for Prometheus."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType
from typing import Any

DEFAULT_LISTEN = "127.0.0.1:9835"  # gpudesk.core.metrics.serve.DEFAULT_LISTEN, without its import


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_exporter(args: argparse.Namespace) -> int:
    from gpudesk.core.config import Inventory
    from gpudesk.core.fleet import simulated_gpus
    from gpudesk.core.metrics.board import MetricsBoard
    from gpudesk.core.metrics.feeds import FleetFeeds
    from gpudesk.core.metrics.serve import Exporter, parse_listen

    listen = parse_listen(args.listen or DEFAULT_LISTEN)
    simulate = simulated_gpus()
    inventory = Inventory.load()
    board = MetricsBoard()
    # Listen before any host is contacted: an address in use fails at once.
    exporter = Exporter(board.snapshots, listen, allow_remote=args.listen is not None)
    address = exporter.start()
    feeds: FleetFeeds | None = None
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        feeds = FleetFeeds(inventory, board, simulate=simulate)
        feeds.start()
        if not address.loopback:
            print(
                f"gpudesk: the exporter listens on {address.host}: anyone who can reach it "
                "reads the fleet's metrics.",
                file=sys.stderr,
            )
        hosts = ", ".join(feeds.hosts)
        note = f"; SIMULATED GPUs ({simulate} per host)" if simulate else ""
        print(f"gpudesk: exporter on {address.url} for {hosts}{note}", flush=True)
        threading.Event().wait()  # until ctrl+c or SIGTERM
    except KeyboardInterrupt:
        pass
    finally:
        exporter.close()
        if feeds is not None:
            feeds.close()
    return 0


def register(sub: Any) -> None:
    exporter = sub.add_parser(
        "exporter",
        help="serve the fleet's GPU, host and container metrics to Prometheus",
        description="Serve every host's GPU, host and container metrics in Prometheus' text "
        "format at http://ADDRESS:PORT/metrics until ctrl+c.",
    )
    exporter.add_argument(
        "--listen",
        metavar="ADDRESS:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN}; any other than loopback only when "
        "named here)",
    )
    exporter.set_defaults(func=cmd_exporter)
