"""One-shot commands through the OpenSSH client, riding a shared master connection.

A one-shot CLI command (``gpudesk ps --host H``) pays for a whole SSH handshake with paramiko
every time, while ``ssh H docker ps`` behind a warm ControlMaster skips it. So where the
``ssh`` client is installed, one-shot listings go through it with the host's own block of
gpudesk's generated ssh config (``~/.gpudesk/ssh_hosts``: gpudesk's known_hosts and the
user's, ``StrictHostKeyChecking yes``, the same identity, jump and ProxyCommand), whose
``ControlMaster auto``/``ControlPersist`` keep the connection for the next command, the same
master ``ssh gpudesk-<name>`` and scp use.

Anything that stops OpenSSH itself (exit 255: unreachable, refused key, unknown or changed
host key, a passphrase it may not ask for in batch mode) raises :class:`OpenSshFailed` and the
caller takes the usual paramiko path, which says what went wrong in gpudesk's own sentences.
``GPUDESK_OPENSSH=0`` turns this path off.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from gpudesk.core import sshconfig
from gpudesk.core.config import Host, HostKind, Inventory
from gpudesk.core.connection import ExecResult
from gpudesk.core.errors import GpudeskError

CONNECT_TIMEOUT_S = 10
# ssh's own exit status when it, not the remote command, failed.
SSH_FAILED = 255


class OpenSshFailed(GpudeskError):
    """OpenSSH could not run the command on the host (take the paramiko path instead)."""


class OpenSshShell:
    """``exec`` of a host's shell through ``ssh -F <gpudesk's hosts config> gpudesk-host-<name>``."""

    def __init__(self, host: Host, config: str) -> None:
        self.host = host
        self.config = config
        self.alias = sshconfig.HOST_ALIAS_PREFIX + host.name

    def argv(self, command: str) -> list[str]:
        return [
            "ssh", "-F", self.config, "-T",
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
            "-o", "LogLevel=ERROR",
            self.alias, "--", command,
        ]  # fmt: skip

    def exec(
        self, command: str, input: bytes | None = None, timeout: float | None = 60.0
    ) -> ExecResult:
        try:
            done = subprocess.run(
                self.argv(command),
                input=input or b"",
                capture_output=True,
                timeout=timeout,
                # A master that ssh starts detaches itself; it must not hold our pipes open.
                start_new_session=True,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise OpenSshFailed(f"ssh to {self.host.name} failed: {exc}.") from exc
        if done.returncode == SSH_FAILED:
            first = done.stderr.decode("utf-8", "replace").strip().splitlines()[:1]
            raise OpenSshFailed(f"ssh to {self.host.name} failed: {''.join(first)}.")
        return ExecResult(done.returncode, done.stdout, done.stderr)


def enabled() -> bool:
    return os.environ.get("GPUDESK_OPENSSH", "1") != "0" and shutil.which("ssh") is not None


def shells(inventory: Inventory, hosts: list[Host]) -> dict[str, OpenSshShell]:
    """An OpenSSH shell for each SSH host in ``hosts`` that can share a master connection
    (none when the path is off, ``ssh`` is missing or gpudesk's home is too deep for a
    control socket)."""
    remote = [h for h in hosts if h.kind is HostKind.SSH]
    home = inventory.paths.home
    if not remote or not enabled() or sshconfig.control_path(home, "probe") is None:
        return {}
    # Imported here: devcontainers pulls in the container modules a listing needs anyway.
    from gpudesk.core.devcontainers import write_host_aliases

    write_host_aliases(inventory)
    config = str(sshconfig.hosts_path(home))
    return {h.name: OpenSshShell(h, config) for h in remote}
