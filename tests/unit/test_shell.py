import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudesk.core import shell

# NUL cannot appear in an argv; every other character must survive quoting.
words = st.text(st.characters(blacklist_characters="\x00", codec="utf-8"), max_size=40)


@given(st.lists(words, min_size=1, max_size=6))
def test_command_splits_back_to_its_words(argv: list[str]) -> None:
    assert shell.split(shell.command(argv)) == argv


@settings(max_examples=40, deadline=None)
@given(words)
def test_a_real_shell_reads_a_quoted_value_back_exactly(value: str) -> None:
    line = shell.command(["printf", "%s", value])
    out = subprocess.run(["sh", "-c", line], capture_output=True, check=True).stdout
    assert out == value.encode("utf-8", "surrogateescape")


def test_env_prefix_is_quoted_and_names_are_checked() -> None:
    line = shell.command(["sh", "-c", 'printf %s "$X"'], env={"X": "a b;$(id)"})
    out = subprocess.run(["sh", "-c", line], capture_output=True, check=True).stdout
    assert out == b"a b;$(id)"
    with pytest.raises(ValueError, match="environment variable"):
        shell.command(["true"], env={"A;rm": "x"})


def test_empty_command_is_refused() -> None:
    with pytest.raises(ValueError):
        shell.command([])
