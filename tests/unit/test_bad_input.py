"""The bad-input suite: every command fed inputs it must refuse, in-process through ``main()``.

Each case must end with a non-zero exit, no traceback, no "unexpected error", and one line on
stderr saying what went wrong (argparse's usage errors: its usage lines, then one error line).
Hosts are unknown, or `dead` (127.0.0.1:1, refused at once), so nothing waits on a network.
A few cases run the `gpudesk` console script in a subprocess, as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudesk.cli.main import main
from gpudesk.core.config import Host, Inventory

HUGE = "9" * 400  # `logs -n 999…9`
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def dead_host(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # No local Docker either: the built-in localhost must fail as fast and as cleanly.
    monkeypatch.setenv("DOCKER_HOST", f"unix://{isolated_home}/no-docker.sock")
    Inventory.load().add(Host(name="dead", hostname="127.0.0.1", user="root", port=1))
    yield


def check_refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    assert code not in (0, None), f"{argv} exited 0: {out!r} {err!r}"
    assert "Traceback" not in err and "unexpected error" not in err, err
    lines = err.strip().splitlines()
    if not lines and "--json" in argv:  # the document says why instead
        doc = json.loads(out)
        assert any(r.get("error") for r in doc.get("hosts", [])) or doc.get("errors"), out
        return out
    assert lines, f"{argv} failed without a word"
    if code == 2 and lines[0].startswith("usage:"):
        assert lines[-1].startswith("gpudesk") and ": error: " in lines[-1], err
    else:
        assert len(lines) == 1, f"{argv} said {len(lines)} lines: {err}"
    return err


D = ["--host", "dead"]
N = ["--host", "nope"]

CASES: list[list[str]] = [
    # unknown commands and options
    ["nosuch"], ["--bogus"], ["ps", "--bogus"], ["runs", "extra"], ["hosts", "ls", "x"],
    ["hosts", "nosuch"], ["completion"], ["completion", "tcsh"], ["logs"], ["stop-run"],
    ["submit"], ["launch"], ["launch", "vnc", *D], ["forward", "x"], ["jupyter"],
    # unknown and unreachable hosts, on every command that takes one
    ["ps", *N], ["ps", *D], ["ps", "--json", *D], ["ps", "--all", *D], ["runs", *N], ["runs", *D],
    ["runs", "--json", *D], ["stats", *N], ["stats", "--once", *D], ["stats", "--once", "--json", *D],
    ["logs", "r1", *N], ["logs", "r1", *D], ["logs", "r1", "-f", *D], ["stop-run", "r1", *N],
    ["stop-run", "r1", *D], ["submit", *N, "--container", "c", "textcls"],
    ["submit", *D, "--container", "c", "textcls"], ["launch", "ssh", *N], ["launch", "ssh", *D],
    ["launch", "jupyter", *D], ["start", "c1", *N], ["start", "c1", *D], ["stop", "c1", *D],
    ["restart", "c1", *D], ["rm", "c1", *D], ["jupyter", "c1", *N], ["jupyter", "c1", *D],
    ["forward", "c1", "6006", *N], ["forward", "c1", "6006", *D], ["hosts", "check", "nope"],
    ["hosts", "check", "dead"], ["hosts", "check", "dead", "--json"], ["hosts", "rm", "nope"],
    # numbers that are not numbers, or not sane ones
    ["launch", "ssh", *D, "--gpus", "²"], ["launch", "ssh", *D, "--gpus", "-1"],
    ["launch", "ssh", *D, "--gpus", "0"], ["launch", "ssh", *D, "--gpus", "1,1"],
    ["launch", "ssh", *D, "--gpus", "abc"], ["launch", "ssh", *D, "--gpus", HUGE],
    ["launch", "ssh", *D, "--gpus", "٣"], ["launch", "ssh", *D, "--gpus", "0,²"],
    ["launch", "ssh", *D, "--memory", "0"], ["launch", "ssh", *D, "--memory", "0g"],
    ["launch", "ssh", *D, "--memory", "1k"], ["launch", "ssh", *D, "--memory", "-1g"],
    ["launch", "ssh", *D, "--memory", "lots"], ["launch", "ssh", *D, "--memory", ""],
    ["launch", "ssh", *D, "--memory", "²g"], ["launch", "ssh", *D, "--memory", "64x"],
    ["launch", "ssh", *D, "--timeout", "nan"], ["launch", "ssh", *D, "--timeout", "inf"],
    ["launch", "ssh", *D, "--timeout", "-1"], ["launch", "ssh", *D, "--timeout", "0"],
    ["launch", "ssh", *D, "--timeout", "1e300"], ["launch", "ssh", *D, "--timeout", "x"],
    ["stats", "--interval", "nan"], ["stats", "--interval", "inf"], ["stats", "--interval", "0"],
    ["stats", "--interval", "-1"], ["stats", "--interval", "1e300"], ["stats", "--interval", "x"],
    ["stats", "--interval", "1e-300"],
    ["logs", "r1", "-n", HUGE, *D], ["logs", "r1", "-n", "-1", *D], ["logs", "r1", "-n", "x"],
    ["logs", "r1", "-n", "nan"], ["logs", "r1", "-n", "²"], ["logs", "r1", "-n", "1e3"],
    ["stop-run", "r1", "--grace", "nan", *D], ["stop-run", "r1", "--grace", "inf", *D],
    ["stop-run", "r1", "--grace", "1e300", *D], ["stop-run", "r1", "--grace", "-1", *D],
    ["stop-run", "r1", "--grace", "x"],
    ["submit", *D, "--container", "c", "--nproc", "0", "textcls"],
    ["submit", *D, "--container", "c", "--nproc", "-1", "textcls"],
    ["submit", *D, "--container", "c", "--nproc", "65", "textcls"],
    ["submit", *D, "--container", "c", "--nproc", "x", "textcls"],
    ["submit", *D, "--container", "c", "--nproc", HUGE, "textcls"],
    ["forward", "c1", "0", *D], ["forward", "c1", "65536", *D], ["forward", "c1", "-1", *D],
    ["forward", "c1", "x", *D], ["forward", "c1", "²", *D], ["forward", "c1", HUGE, *D],
    ["forward", "c1", "6006", "--local", "0", *D], ["forward", "c1", "6006", "--local", "x"],
    ["forward", "c1", "6006", "--local", "70000", *D], ["jupyter", "c1", "--port", "0", *D],
    ["jupyter", "c1", "--port", "x", *D], ["jupyter", "c1", "--port", "99999", *D],
    ["hosts", "check", "dead", "--timeout", "nan"], ["hosts", "check", "dead", "--timeout", "inf"],
    ["hosts", "check", "dead", "--timeout", "-1"], ["hosts", "check", "dead", "--timeout", "0"],
    ["hosts", "check", "dead", "--timeout", "1e300"],
    # names and paths
    ["submit", *D, "--container", "../x", "textcls"], ["submit", *D, "--container", "", "textcls"],
    ["submit", *D, "--container", "a b", "textcls"], ["submit", *D, "--container", "$(id)", "lm"],
    ["submit", *D, "--container", "c", "--name", "../x", "textcls"],
    ["submit", *D, "--container", "c", "--name", "", "textcls"],
    ["submit", *D, "--container", "c", "--name", "UPPER", "textcls"],
    ["submit", *D, "--container", "c", "--name", "x" * 64, "textcls"],
    ["submit", *D, "--container", "c", ""], ["submit", *D, "--container", "c", "rel/x.py"],
    ["submit", *D, "--container", "c", "nosuch"],
    ["launch", "ssh", *D, "--name", "../x"], ["launch", "ssh", *D, "--name", "UPPER"],
    ["launch", "ssh", *D, "--name", ""], ["launch", "ssh", *D, "--name", "-x"],
    ["launch", "ssh", *D, "--name", "a" * 300], ["launch", "ssh", *D, "--name", "a\nb"],
    ["launch", "ssh", *D, "--workspace", "relative"], ["launch", "ssh", *D, "--key", "/nonexistent"],
    ["logs", "../x", *D], ["logs", "", *D], ["stop-run", "../x", *D], ["start", "../x", *D],
    ["rm", "", *D], ["jupyter", "$(id)", *D], ["forward", "a;b", "1", *D],
    ["hosts", "add", "", "ssh://root@127.0.0.1", "--no-connect"],
    ["hosts", "add", "a b", "ssh://root@127.0.0.1", "--no-connect"],
    ["hosts", "add", "../x", "ssh://root@127.0.0.1", "--no-connect"],
    ["hosts", "add", "x" * 300, "ssh://root@127.0.0.1", "--no-connect"],
    ["hosts", "add", "dead", "ssh://root@127.0.0.1", "--no-connect"],
    ["hosts", "add", "localhost", "ssh://root@127.0.0.1", "--no-connect"],
    ["hosts", "add", "h1", "", "--no-connect"], ["hosts", "add", "h1", "ssh://", "--no-connect"],
    ["hosts", "add", "h1", "ssh://root@127.0.0.1:0", "--no-connect"],
    ["hosts", "add", "h1", "ssh://root@127.0.0.1:99999", "--no-connect"],
    ["hosts", "add", "h1", "ssh://root@127.0.0.1:x", "--no-connect"],
    ["hosts", "add", "h1", "-oProxyCommand=touch /tmp/pwned", "--no-connect"],
    ["hosts", "add", "h1", "ssh://root@127.0.0.1", "--identity", "/nonexistent", "--no-connect"],
    ["hosts", "add", "h1", "ssh://root@127.0.0.1:1"], ["hosts", "rm", "localhost"],
]  # fmt: skip


@pytest.mark.parametrize("argv", CASES, ids=lambda a: " ".join(a)[:60])
def test_each_bad_input_is_one_clear_line_and_a_failure(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    check_refused(argv, capsys)


def test_the_suite_is_big_enough() -> None:
    assert len(CASES) + len(BROKEN_FILES) >= 150


# Broken files gpudesk reads: each command that loads them must say what is wrong, once.
def _hosts_toml(text: bytes) -> Callable[[Path], None]:
    def write(home: Path) -> None:
        path = home / ".config" / "gpudesk" / "hosts.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)

    return write


def _hosts_toml_folder(home: Path) -> None:
    path = home / ".config" / "gpudesk" / "hosts.toml"
    path.unlink()
    path.mkdir()


def _ssh_config_folder(home: Path) -> None:
    config = home / ".ssh" / "config"
    config.mkdir(parents=True)
    (config / "x").write_text("Host x\n")


BROKEN_FILES: list[tuple[str, Callable[[Path], None], list[str]]] = [
    ("invalid utf-8", _hosts_toml(b'[hosts.h1]\nhostname = "\xff\xfe"\n'), ["hosts", "ls"]),
    ("invalid utf-8", _hosts_toml(b"\xff\xfe\x00"), ["ps"]),
    ("invalid utf-8", _hosts_toml(b"\xc3\x28"), ["runs"]),
    ("invalid utf-8", _hosts_toml(b"\xc3\x28"), ["stats", "--once"]),
    ("invalid utf-8", _hosts_toml(b"\xc3\x28"), ["hosts", "check"]),
    ("not toml", _hosts_toml(b"[hosts\nx = "), ["hosts", "ls"]),
    ("not toml", _hosts_toml(b"[hosts\nx = "), ["logs", "r1"]),
    ("wrong types", _hosts_toml(b"[hosts.h1]\nhostname = 3\nport = 'x'\n"), ["hosts", "ls"]),
    ("wrong types", _hosts_toml(b"hosts = 3\n"), ["ps"]),
    ("wrong types", _hosts_toml(b"[hosts.h1]\nhostname = 'a'\nport = 70000\n"), ["hosts", "ls"]),
    ("bad name", _hosts_toml(b"[hosts.'a b']\nhostname = 'a'\n"), ["hosts", "ls"]),
    ("a folder", _hosts_toml_folder, ["ps"]),
    ("ssh config is a folder", _ssh_config_folder, ["ssh-include"]),
]


@pytest.mark.parametrize(("why", "make", "argv"), BROKEN_FILES, ids=lambda v: str(v)[:30])
def test_broken_files_are_one_clear_line_and_a_failure(
    why: str,
    make: Callable[[Path], None],
    argv: list[str],
    isolated_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make(isolated_home)
    check_refused(argv, capsys)


# Hostile names: whatever text a name holds, each command that takes one refuses it cleanly.
hostile = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=80
).filter(lambda t: not t.startswith("-") and "\x00" not in t)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=hostile, which=st.sampled_from(["logs", "stop-run", "start", "jupyter", "submit",
                                             "hosts-add", "hosts-rm", "launch"]))  # fmt: skip
def test_hostile_names_are_refused_cleanly(
    name: str, which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = {
        "logs": ["logs", name, *D],
        "stop-run": ["stop-run", name, *D],
        "start": ["start", name, *D],
        "jupyter": ["jupyter", name, *D],
        "submit": ["submit", *D, "--container", name, "--name", name, "textcls"],
        "hosts-add": ["hosts", "add", name, f"ssh://{name}@127.0.0.1:1"],
        "hosts-rm": ["hosts", "rm", name],
        "launch": ["launch", "ssh", *D, "--name", name],
    }[which]
    capsys.readouterr()
    check_refused(argv, capsys)


@pytest.mark.parametrize(
    "argv",
    [["stats", "--interval", "nan"], ["logs", "r1", "-n", HUGE, "--host", "dead"],
     ["launch", "ssh", "--host", "dead", "--gpus", "²"], ["ssh-include"]],
)  # fmt: skip
def test_as_a_user_types_it(argv: list[str], isolated_home: Path) -> None:
    """The console script itself: exit status and stderr as a shell sees them."""
    (isolated_home / ".ssh" / "config").mkdir(exist_ok=True)
    done = subprocess.run(
        [str(BIN / "gpudesk"), *argv], capture_output=True, text=True, timeout=60,
        env={**os.environ}, check=False,
    )  # fmt: skip
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
