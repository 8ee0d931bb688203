"""The OpenSSH path of one-shot commands (core/openssh.py): when it is taken, and how a
failure of ssh itself is told from the remote command's own exit status."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpudesk.core import openssh
from gpudesk.core.config import LOCAL_HOST, Host, Inventory


def fake_ssh(bin_dir: Path, body: str) -> None:
    """An `ssh` on PATH that records its argv and then runs ``body`` (shell)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "ssh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{bin_dir}/argv"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def inventory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inventory]:
    # A home short enough for a control socket (pytest's tmp_path may be too deep).
    home = Path(tempfile.mkdtemp(prefix="gdu", dir="/tmp"))
    monkeypatch.setenv("GPUDESK_HOME", str(home))
    Inventory.load().add(Host(name="gpu1", hostname="10.0.0.5", user="alice", port=2222))
    yield Inventory.load()
    shutil.rmtree(home, ignore_errors=True)


def test_a_shell_per_ssh_host_and_none_for_localhost(
    inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ssh(tmp_path / "bin", "exit 0")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    shells = openssh.shells(inventory, [LOCAL_HOST, inventory.get("gpu1")])
    assert list(shells) == ["gpu1"]
    block = (inventory.paths.home / "ssh_hosts").read_text()
    assert "Host gpudesk-host-gpu1" in block and "StrictHostKeyChecking yes" in block
    assert "ControlMaster auto" in block


def test_off_when_asked_or_without_ssh(
    inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUDESK_OPENSSH", "0")
    assert openssh.shells(inventory, [inventory.get("gpu1")]) == {}
    monkeypatch.delenv("GPUDESK_OPENSSH")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert openssh.shells(inventory, [inventory.get("gpu1")]) == {}


def test_the_command_is_one_argument_after_the_alias(
    inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    fake_ssh(bin_dir, "echo listed; echo warn >&2; exit 3")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    shell = openssh.shells(inventory, [inventory.get("gpu1")])["gpu1"]
    command = "docker ps -q --filter 'label=x y'; echo $HOME"
    result = shell.exec(command)
    # The remote command's own failure is the command's, not ssh's: no fallback.
    assert (result.exit_code, result.text(), result.error_text()) == (3, "listed\n", "warn")
    argv = (bin_dir / "argv").read_text().splitlines()
    assert argv[-3:] == ["gpudesk-host-gpu1", "--", command]
    assert "BatchMode=yes" in argv


def test_ssh_failing_itself_asks_for_the_fallback(
    inventory: Inventory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_ssh(tmp_path / "bin", 'echo "Host key verification failed." >&2; exit 255')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    shell = openssh.shells(inventory, [inventory.get("gpu1")])["gpu1"]
    with pytest.raises(openssh.OpenSshFailed, match="Host key verification failed"):
        shell.exec("docker ps")
