"""How the CLI reads its command line and how it ends when its reader goes away."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from gpudesk.cli.main import COMMAND_MODULES, EXIT_BROKEN_PIPE, build_parser, parse_args


@pytest.mark.parametrize(
    "argv",
    [
        # The README's form: gpudesk's options after SCRIPT, the script's after --.
        "submit --host h --container c textcls --nproc 2 --name run1 -- --steps 20 --lr 1e-3",
        "submit --host h --container c --nproc 2 --name run1 textcls -- --steps 20 --lr 1e-3",
        "submit textcls --name run1 --nproc 2 --container c --host h -- --steps 20 --lr 1e-3",
    ],
)
def test_submit_takes_its_options_before_or_after_the_script(argv: str) -> None:
    args = parse_args(build_parser(), argv.split())
    assert (args.host, args.container, args.script) == ("h", "c", "textcls")
    assert (args.nproc, args.name) == (2, "run1")
    assert args.args == ["--steps", "20", "--lr", "1e-3"]


def test_everything_after_the_first_double_dash_goes_to_the_script() -> None:
    argv = ["submit", "--host", "h", "--container", "c", "lm", "--", "--name", "x", "--", "-v"]
    args = parse_args(build_parser(), argv)
    assert args.name is None and args.args == ["--name", "x", "--", "-v"]
    assert parse_args(build_parser(), argv[:6]).args == []


def test_script_arguments_without_double_dash_are_refused_with_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(
            build_parser(),
            ["submit", "--host", "h", "--container", "c", "textcls", "--steps", "20"],
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(
        "unrecognized arguments: --steps 20 (the script's own arguments go after --)"
    )


def test_ssh_still_passes_its_command_through() -> None:
    args = parse_args(build_parser(), ["ssh", "dev1", "--", "ls", "-l"])
    assert args.name == "dev1" and [c for c in args.command if c != "--"] == ["ls", "-l"]


@pytest.mark.parametrize(
    "args",
    [["hosts", "ls"], ["hosts", "ls", "--json"], ["--help"], ["--version"], ["completion", "fish"]],
)
def test_a_closed_stdout_ends_quietly_with_sigpipes_status(args: list[str]) -> None:
    # A reader that is already gone, as `gpudesk ps | head -0` leaves it: every write fails.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "gpudesk", *args], stdout=write_end, stderr=subprocess.PIPE,
            timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert done.stderr == b""
    if args[0].startswith("--"):
        # argparse writes these itself; whether the write fails there (141) or the text is lost
        # unnoticed in the stream's buffer (0) is Python's business: quiet either way.
        assert done.returncode in (0, EXIT_BROKEN_PIPE)
    else:
        assert done.returncode == EXIT_BROKEN_PIPE == 128 + 13


def test_a_pipeline_into_head_prints_the_first_lines_only() -> None:
    for name in ("h1", "h2", "h3"):
        subprocess.run(
            [sys.executable, "-m", "gpudesk", "hosts", "add", name, "ssh://a@10.0.0.5",
             "--no-connect"], check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    done = subprocess.run(
        ["sh", "-c", f"{sys.executable} -m gpudesk hosts ls | head -2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == ""
    assert done.stdout.splitlines()[1].startswith("localhost")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_a_command_parses_alike_when_only_its_module_is_loaded() -> None:
    # main() builds only the command's module (COMMAND_MODULES) to start faster.
    full = _subcommands(build_parser())
    assert set(COMMAND_MODULES) <= set(full)
    for command, module in COMMAND_MODULES.items():
        partial = _subcommands(build_parser(command))
        assert partial[command].format_help() == full[command].format_help(), command
        func, whole = partial[command].get_default("func"), full[command].get_default("func")
        assert func.__qualname__ == whole.__qualname__, command  # the same handler
        assert func.__module__ == whole.__module__ == f"gpudesk.cli.{module}"
