"""submit's dry parse: how the script's verdict becomes one sentence (the container is a fake)."""

from __future__ import annotations

from typing import Any

import pytest

from gpudesk.core.runs import CHECK_ARGS_ENV, RunError, RunSpec, check_script_args


class FakeContainer:
    name = "dev1"

    def __init__(self, code: int, output: str) -> None:
        self.code, self.output = code, output
        self.calls: list[tuple[list[str], str]] = []

    def exec_run(self, argv: list[str], user: str = "", demux: bool = False) -> Any:
        self.calls.append((argv, user))
        return self.code, self.output.encode()


def check(code: int, output: str, args: tuple[str, ...] = ("--steps", "10")) -> FakeContainer:
    container = FakeContainer(code, output)
    check_script_args(
        container, "/usr/bin/python3", "/w/textcls.py", RunSpec("textcls", args), "dev"
    )
    return container


def test_the_script_runs_in_check_mode_with_exactly_the_given_arguments() -> None:
    container = check(0, "", ("--steps", "10", "--name with space"))
    assert container.calls == [
        (["env", f"{CHECK_ARGS_ENV}=1", "/usr/bin/python3", "/w/textcls.py", "--steps", "10",
          "--name with space"], "dev"),
    ]  # fmt: skip


def test_an_argparse_refusal_is_one_sentence_with_the_parsers_words() -> None:
    usage = "usage: textcls.py [-h] [--data DATA]\ntextcls.py: error: unrecognized arguments: --stpes 10\n"
    with pytest.raises(RunError) as err:
        check(2, usage)
    assert str(err.value) == (
        "textcls does not accept these arguments (unrecognized arguments: --stpes 10);"
        " nothing was started."
    )


def test_a_script_that_cannot_start_is_not_blamed_on_the_arguments() -> None:
    with pytest.raises(RunError, match=r"^textcls cannot start in dev1 \(ModuleNotFoundError"):
        check(1, "Traceback ...\nModuleNotFoundError: No module named 'torch'\n")
