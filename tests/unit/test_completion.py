"""`gpudesk completion bash|zsh|fish`: each script is valid for the real shell and completes names.

The shells come from Debian (scripts/testbed.py installs zsh and fish with the test bed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpudesk.cli.completion import remember

HOST = "zebra-gpu7"  # in hosts.toml, written as [hosts."zebra-gpu7"] or [hosts.zebra-gpu7]
CONTAINER = "okapi-dev3"


def need(shell: str) -> str:
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"{shell} is not installed (scripts/testbed.py up installs it)")
    return path


@pytest.fixture
def scripts(tmp_path: Path) -> dict[str, Path]:
    done = subprocess.run(
        [sys.executable, "-m", "gpudesk", "hosts", "add", HOST, "ssh://a@10.0.0.5",
         "--no-connect"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    remember("containers", [CONTAINER, "bad name with spaces"])
    out = {}
    for shell in ("bash", "zsh", "fish"):
        made = subprocess.run(
            [sys.executable, "-m", "gpudesk", "completion", shell],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert made.returncode == 0, made.stderr
        out[shell] = tmp_path / f"gpudesk.{shell}"
        out[shell].write_text(made.stdout)
    return out


def run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_script_parses(scripts: dict[str, Path], shell: str) -> None:
    done = run([need(shell), "-n", str(scripts[shell])])
    assert done.returncode == 0, done.stderr


def bash_complete(script: Path, words: list[str]) -> list[str]:
    line = " ".join(words)
    program = (
        f"source {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); "
        f"COMP_CWORD={len(words) - 1}; COMP_LINE={line!r}; COMP_POINT={len(line)}; "
        '_shtab_gpudesk; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = run([need("bash"), "-c", program])
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_hosts_and_containers(scripts: dict[str, Path]) -> None:
    assert bash_complete(scripts["bash"], ["gpudesk", "sub"]) == ["submit"]
    assert bash_complete(scripts["bash"], ["gpudesk", "ps", "--host", ""]) == ["localhost", HOST]
    assert bash_complete(scripts["bash"], ["gpudesk", "hosts", "rm", "z"]) == [HOST]
    assert bash_complete(scripts["bash"], ["gpudesk", "stop", "ok"]) == [CONTAINER]


def fish_complete(script: Path, line: str) -> list[str]:
    done = run([need("fish"), "--no-config", "-c", f"source {script}; complete -C {line!r}"])
    assert done.returncode == 0, done.stderr
    return [row.split("\t")[0] for row in done.stdout.splitlines()]


def test_fish_completes_hosts_and_containers(scripts: dict[str, Path]) -> None:
    assert fish_complete(scripts["fish"], "gpudesk ps --host ") == ["localhost", HOST]
    assert fish_complete(scripts["fish"], "gpudesk hosts check z") == [HOST]
    assert fish_complete(scripts["fish"], "gpudesk rm ") == [CONTAINER]


def test_zsh_completes_a_host_name(scripts: dict[str, Path], tmp_path: Path) -> None:
    # An interactive zsh on a pseudo-terminal (zsh's own zpty): type a line and TAB, then wait
    # for the completed name to be echoed back.
    driver = tmp_path / "drive.zsh"
    driver.write_text(
        f"""\
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'PROMPT=">"; autoload -Uz compinit; compinit -u -D; eval "$(<{scripts["zsh"]})"'
zpty -w z "echo READY"
zpty -r z line '*READY*READY*'
zpty -w -n z $'gpudesk ps --host zeb\\t'
zpty -r z out '*{HOST}*'
print -r -- "$out"
zpty -d z
"""
    )
    done = run([need("zsh"), "-f", str(driver)], timeout=30)
    assert done.returncode == 0, done.stderr
    assert f"--host {HOST}" in done.stdout.replace("\x1b[K", "")
