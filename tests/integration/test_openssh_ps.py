"""`gpudesk ps --host H` through the OpenSSH client and a shared master (core/openssh.py), and
its fallback to gpudesk's own connection when OpenSSH cannot get in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import paramiko
import pytest

from gpudesk.core import sshconfig
from gpudesk.core.config import Inventory
from gpudesk.core.flavours import label
from tests.integration.bed import bed_host
from tests.json_contract import validate_text


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=120,
        env=env,
    )  # fmt: skip


def master_running(home: Path) -> bool:
    check = subprocess.run(
        ["ssh", "-F", str(sshconfig.hosts_path(home)), "-O", "check", "gpudesk-host-bed"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    return check.returncode == 0


@pytest.fixture
def labelled(docker_client: Any, testbed: Any) -> Any:
    """A stopped gpudesk-labelled container on the bed's engine, to be listed."""
    container = docker_client.containers.create(
        testbed.base_image, ["true"], name="gdps-listed",
        labels={label("flavour"): "ssh"},
    )  # fmt: skip
    yield container
    container.remove(force=True)


def test_ps_shares_an_openssh_master_and_lists_what_the_engine_has(
    testbed: Any, known_hosts_file: Path, short_home: Path, labelled: Any, docker_client: Any
) -> None:
    Inventory.load().add(bed_host(testbed))
    first = cli("ps", "--host", "bed", "--all", "--json")
    assert first.returncode == 0, first.stderr
    # The reference: the engine's own list of every container, asked over its socket.
    engine_names = sorted(c.name for c in docker_client.containers.list(all=True))
    listed = sorted(r["name"] for r in validate_text("ps", first.stdout)["containers"])
    assert listed == engine_names
    assert "gdps-listed" in listed
    assert master_running(short_home), "the first ps left no master for the next command"

    # The same answer again over the master, and the same through paramiko alone.
    again = cli("ps", "--host", "bed", "--all", "--json")
    paramiko_only = cli(
        "ps", "--host", "bed", "--all", "--json",
        env={**os.environ, "GPUDESK_OPENSSH": "0"},
    )  # fmt: skip
    for run in (again, paramiko_only):
        assert run.returncode == 0, run.stderr
        names = sorted(r["name"] for r in validate_text("ps", run.stdout)["containers"])
        assert names == engine_names


def test_ps_falls_back_and_refuses_a_changed_host_key(
    testbed: Any, known_hosts_file: Path, short_home: Path
) -> None:
    """OpenSSH refuses the changed key (no master to ride), and gpudesk's own path says so in
    its sentence, exit 1, nothing listed."""
    Inventory.load().add(bed_host(testbed))
    other = paramiko.Ed25519Key.from_private_key_file(testbed.ssh_client_key)  # any other key
    line = testbed.ssh_known_hosts_line.split()[0]
    known_hosts_file.write_text(f"{line} {other.get_name()} {other.get_base64()}\n")
    refused = cli("ps", "--host", "bed")
    assert refused.returncode == 1
    assert "CHANGED" in refused.stderr or "changed" in refused.stderr.lower(), refused.stderr
    assert "Traceback" not in refused.stderr and "unexpected error" not in refused.stderr
    assert not master_running(short_home)
