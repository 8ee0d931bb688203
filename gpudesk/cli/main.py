"""``gpudesk``: no arguments opens the TUI; subcommands use the same services as the TUI."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpudesk import __version__
from gpudesk.cli import containers, hosts, runs, stats
from gpudesk.core.errors import GpudeskError


def cmd_tui(args: argparse.Namespace) -> int:
    from gpudesk.app.app import run_app

    return run_app()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpudesk",
        description="Manage PyTorch-CUDA dev containers, GPUs and training runs on remote hosts. "
        "Run without arguments to open the terminal UI.",
    )
    parser.add_argument("--version", action="version", version=f"gpudesk {__version__}")
    parser.set_defaults(func=cmd_tui)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (hosts, containers, stats, runs):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except GpudeskError as exc:
        print(f"gpudesk: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # A bug, not a user error: still one line, with the trace only when asked for.
        if os.environ.get("GPUDESK_DEBUG"):
            raise
        print(
            f"gpudesk: unexpected error ({type(exc).__name__}: {exc}); "
            "rerun with GPUDESK_DEBUG=1 for details and report it.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
