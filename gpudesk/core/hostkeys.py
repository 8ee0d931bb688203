"""Host keys: the user's known_hosts (read only) plus gpudesk's own, where accepted keys go."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpudesk.core.config import Paths, atomic_write

if TYPE_CHECKING:
    import paramiko
else:
    from gpudesk.core.lazy import lazy_module

    paramiko = lazy_module("paramiko")


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:...`` form."""
    return str(key.fingerprint)


def key_label(key: paramiko.PKey) -> str:
    """OpenSSH's short name of the key type: ED25519, ECDSA, RSA."""
    name = key.get_name()
    if name.startswith("ecdsa-"):
        return "ECDSA"
    return name.removeprefix("ssh-").upper()


def trusted_message(known_name: str, key: paramiko.PKey) -> str:
    """What the CLI says after trusting a new host key, with the fingerprint as ssh shows it."""
    return (
        f"Trusted the new host key of {known_name}: {key_label(key)} key fingerprint is"
        f" {fingerprint(key)}; compare it with the host's (ssh-keygen -lf on its host keys)."
    )


def known_hosts_name(hostname: str, port: int) -> str:
    return hostname if port == 22 else f"[{hostname}]:{port}"


class HostKeyStore:
    """The user's known_hosts (read only) plus gpudesk's own (where accepted keys go)."""

    def __init__(self, paths: Paths, user_known_hosts: Path | None = None) -> None:
        self.paths = paths
        self.user_file = user_known_hosts or Path.home() / ".ssh" / "known_hosts"

    def _load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        for path in (self.user_file, self.paths.known_hosts):
            if path.exists():
                # paramiko skips lines it cannot parse, as OpenSSH does.
                keys.load(str(path))
        return keys

    def known_types(self, name: str) -> list[str]:
        entry = self._load().lookup(name)
        return list(entry.keys()) if entry else []

    def check(self, name: str, key: paramiko.PKey) -> str:
        """'ok', 'unknown' or 'changed'."""
        entry = self._load().lookup(name)
        if not entry:
            return "unknown"
        known = entry.get(key.get_name())
        if known is not None and known == key:
            return "ok"
        return "changed"

    def add(self, name: str, key: paramiko.PKey) -> None:
        path = self.paths.known_hosts
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write(path, f"{old}{name} {key.get_name()} {key.get_base64()}\n")
