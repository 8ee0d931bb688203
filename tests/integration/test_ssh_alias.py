"""~/.ssh/config aliases resolved as OpenSSH resolves them, against the real test bed sshd."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any


def gpudesk_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=60
    )


def test_aliases_from_an_include_and_a_wildcard_block_add_and_connect(
    testbed: Any, known_hosts_file: Path, isolated_home: Path
) -> None:
    ssh_dir = isolated_home / ".ssh"
    (ssh_dir / "config.d").mkdir()
    (ssh_dir / "config.d" / "lab.conf").write_text(
        f"Host bedinc\n  HostName 127.0.0.1\n  Port {testbed.ssh_port}\n  User root\n"
        f"  IdentityFile {testbed.ssh_client_key}\n"
    )
    # The wildcard block's host name resolves nowhere: only the ProxyCommand (OpenSSH's own
    # client as the hop, as people write it) reaches the sshd.
    hop = (
        f"ssh -i {testbed.ssh_client_key} -o BatchMode=yes -o StrictHostKeyChecking=yes"
        f" -o UserKnownHostsFile={known_hosts_file} -p {testbed.ssh_port}"
        " -W 127.0.0.1:%p root@127.0.0.1"
    )
    (ssh_dir / "config").write_text(
        f"Include {ssh_dir}/config.d/*.conf\n\n"
        "Host bed-*\n  HostName behind-the-proxy.invalid\n"
        f"  Port {testbed.ssh_port}\n  User root\n  IdentityFile {testbed.ssh_client_key}\n"
        f"  ProxyCommand {hop}\n"
    )
    included = gpudesk_cli("hosts", "add", "inc", "bedinc")
    assert included.returncode == 0, included.stderr
    wild = gpudesk_cli("hosts", "add", "wild", "bed-7", "--accept-new-host-key")
    assert wild.returncode == 0, wild.stderr

    hosts_file = isolated_home / ".config" / "gpudesk" / "hosts.toml"
    saved = tomllib.loads(hosts_file.read_text())["hosts"]
    assert saved["inc"]["hostname"] == "127.0.0.1" and saved["inc"]["port"] == testbed.ssh_port
    assert saved["wild"]["hostname"] == "behind-the-proxy.invalid"
    assert saved["wild"]["proxy_command"] == hop
    text = hosts_file.read_text()
    assert "alias 'bedinc' (ssh -G)" in text and "alias 'bed-7' (ssh -G)" in text

    check = gpudesk_cli("hosts", "check", "inc", "wild", "--json")
    assert check.returncode == 0, check.stderr
    rows = {r["name"]: r for r in json.loads(check.stdout)["hosts"]}
    assert rows["inc"]["state"] == rows["wild"]["state"] == "connected"
    assert rows["wild"]["docker"]
