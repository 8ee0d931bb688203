"""``gpudesk``: no arguments opens the TUI; subcommands use the same services as the TUI.

Start-up is kept cheap: ``--version`` answers before any command module is imported, and the
command modules import docker, paramiko and textual only inside the commands that use them
(tests/unit/test_import_hygiene.py holds that for ``--version`` and every ``--help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from gpudesk import __version__
from gpudesk.core.errors import GpudeskError

VERSION_TEXT = f"gpudesk {__version__}"


def cmd_tui(args: argparse.Namespace) -> int:
    from gpudesk.app.app import run_app

    return run_app()


# The module that registers each command, so that `gpudesk ps` imports and builds only the
# container commands. A command missing here still works (the whole parser is built);
# tests/unit/test_cli_parsing.py checks every entry against the whole parser.
COMMAND_MODULES = {
    "hosts": "hosts",
    **dict.fromkeys(
        (
            "ps",
            "launch",
            "start",
            "stop",
            "restart",
            "rm",
            "ssh",
            "jupyter",
            "forward",
            "ssh-include",
        ),
        "containers",
    ),
    "stats": "stats",
    "exporter": "exporter",
    **dict.fromkeys(("submit", "runs", "logs", "stop-run"), "runs"),
}
MODULES = ("hosts", "containers", "stats", "exporter", "runs", "completion")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: every command, or with ``command`` only its module's commands."""
    import importlib

    names = (COMMAND_MODULES[command],) if command in COMMAND_MODULES else MODULES
    modules = [importlib.import_module(f"gpudesk.cli.{name}") for name in names]
    parser = argparse.ArgumentParser(
        prog="gpudesk",
        description="Manage PyTorch-CUDA dev containers, GPUs and training runs on remote hosts. "
        "Run without arguments to open the terminal UI.",
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    # The completion command describes the whole parser, so it is handed over rather than
    # rebuilt (which would make cli.completion import this module back).
    parser.set_defaults(func=cmd_tui, top_parser=parser)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in modules:
        module.register(sub)
    return parser


# Commands whose arguments after the first `--` belong to something else (the script of
# `submit`), by the attribute that receives them. Cutting them off before argparse lets the
# command's own options come before or after its positionals.
PASSTHROUGH = {"submit": "args"}

# Exit status after a closed stdout (`gpudesk ps | head -2`): what a shell reports for a
# process killed by SIGPIPE (128 + 13), as coreutils and git give; quiet, like them.
EXIT_BROKEN_PIPE = 141


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    tail: list[str] | None = None
    if argv[:1] and argv[0] in PASSTHROUGH and "--" in argv:
        cut = argv.index("--")
        argv, tail = argv[:cut], argv[cut + 1 :]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        hint = " (the script's own arguments go after --)" if argv[0] in PASSTHROUGH else ""
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if tail is not None:
        setattr(args, PASSTHROUGH[argv[0]], tail)
    return args


def _drop_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        if arguments == ["--version"]:
            # The same answer as the parser's --version, without building the parser (which
            # imports every command module).
            print(VERSION_TEXT)
            sys.stdout.flush()
            return 0
        parser = build_parser(arguments[0] if arguments else None)
        args = parse_args(parser, arguments)
        code: int = args.func(args)
        # Flush here, inside the handler below: a reader that went away is then noticed now,
        # not in the interpreter's exit flush (which would print "Exception ignored").
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except SystemExit:
        # argparse's --help, --version and usage errors: their output may meet a closed pipe
        # too; flushing here, not in the interpreter's exit, keeps that quiet.
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_stdout()
            return EXIT_BROKEN_PIPE
        raise
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
