"""SSH public-key authentication as OpenSSH's BatchMode does it: ssh-agent's keys, then the
host's identity file or the default ones; encrypted files are left to the agent."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from gpudesk.core.config import Host
from gpudesk.core.connection import AuthFailed, Unreachable

if TYPE_CHECKING:
    import paramiko
else:
    from gpudesk.core.lazy import lazy_module

    paramiko = lazy_module("paramiko")

DEFAULT_IDENTITIES = ("id_ed25519", "id_ecdsa", "id_rsa")


def candidate_keys(host: Host) -> Iterator[tuple[str, paramiko.PKey]]:
    """The keys to offer, in OpenSSH's order: the agent's, then the identity or the defaults."""
    with suppress(paramiko.SSHException, OSError):
        for agent_key in paramiko.Agent().get_keys():
            yield "ssh-agent key", agent_key
    files: list[Path] = []
    if host.identity:
        files.append(Path(host.identity).expanduser())
    else:
        files += [Path.home() / ".ssh" / name for name in DEFAULT_IDENTITIES]
    for path in files:
        if not path.exists():
            continue
        try:
            yield str(path), paramiko.PKey.from_path(str(path))
        except paramiko.PasswordRequiredException:
            # Encrypted keys are reached through ssh-agent, as in OpenSSH's BatchMode.
            continue
        except (paramiko.SSHException, OSError, ValueError):
            continue


def authenticate(transport: paramiko.Transport, host: Host) -> None:
    """Public-key authentication as the host's user; AuthFailed names every key tried."""
    user = host.user or getpass.getuser()
    tried: list[str] = []
    for label, key in candidate_keys(host):
        tried.append(label)
        try:
            transport.auth_publickey(user, key)
        except paramiko.AuthenticationException:
            continue
        except paramiko.SSHException as exc:
            raise Unreachable(f"Authentication with {host.destination} broke off: {exc}.") from exc
        if transport.is_authenticated():
            return
    if not tried:
        raise AuthFailed(
            f"No SSH key to offer {host.destination}: start ssh-agent with your key, "
            "or give one with --identity."
        )
    raise AuthFailed(
        f"{host.destination} refused every key offered as {user} "
        f"({', '.join(tried)}); add your public key to its authorized_keys or use --identity."
    )
