"""gpudesk's own OpenSSH client config, so ``ssh gpudesk-<name>`` (and editors' remote-SSH) reach
each SSH-flavour container.

The file lives at ``<gpudesk home>/ssh_config`` and holds one ``Host gpudesk-<name>`` block per
container: the container's sshd is published on the GPU host's 127.0.0.1 only, so each block
jumps through the GPU host (``ProxyJump``) unless the host is this machine.

Host keys are pinned, never trusted on first use: after a launch gpudesk reads the key the
container generated and records it in ``known_hosts_containers`` under ``HostKeyAlias
gpudesk-<name>``. The alias matters because every container is reached as 127.0.0.1 on some
port of some GPU host; keyed by ``[127.0.0.1]:<port>``, two hosts' containers on the same port
would collide, and a reused port would look like a changed key.

The user's ``~/.ssh/config`` gets one ``Include`` line at the very top. OpenSSH takes the first
value it finds for each option, so our blocks, read first, win over a later ``Host *`` that sets
``User`` or ``IdentityFile``; an Include further down, or inside a ``Host``/``Match`` block, would
lose to them or apply only conditionally.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from gpudesk.core.config import atomic_write, private_dir
from gpudesk.core.errors import GpudeskError
from gpudesk.core.flavours import SSH_HOST_PREFIX, validate_name, validate_user

CONFIG_NAME = "ssh_config"
HOSTS_NAME = "ssh_hosts"
HOST_ALIAS_PREFIX = "gpudesk-host-"
KNOWN_HOSTS_NAME = "known_hosts_containers"
CONTROL_DIR_NAME = "cm"
CONTROL_PERSIST = "10m"
# sun_path holds 108 bytes and OpenSSH first binds the path plus a 17-character random suffix.
MAX_CONTROL_PATH = 88
_HEADER = (
    "# Written by gpudesk: one block per SSH dev container. gpudesk rewrites this file;\n"
    "# edits here are lost. Included from ~/.ssh/config.\n"
)
_JUMP_RE = re.compile(r"[A-Za-z0-9_.@:\[\]/,-]+")
_KEY_RE = re.compile(r"(ssh-[a-z0-9-]+|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/=]+")


class SshConfigError(GpudeskError, ValueError):
    """A value gpudesk will not write into an ssh config; the message says which and why."""


@dataclass(frozen=True)
class ContainerEntry:
    name: str  # the container name; the ssh alias is gpudesk-<name>
    port: int  # published on the GPU host's 127.0.0.1
    user: str
    identity_file: str
    host_key: str  # "ssh-ed25519 AAAA...", as the container generated it
    jump: str | None = None  # "user@host:port" or an ssh alias; None when the host is local

    @property
    def alias(self) -> str:
        return SSH_HOST_PREFIX + self.name


def config_path(home: Path) -> Path:
    return home / CONFIG_NAME


def known_hosts_path(home: Path) -> Path:
    return home / KNOWN_HOSTS_NAME


def _config_value(what: str, value: str) -> str:
    # OpenSSH has no escape for '"' inside quotes, and expands '%' tokens in paths.
    if not value or any(ord(c) < 32 or c in '"' for c in value):
        raise SshConfigError(f"The {what} {value!r} cannot go into an ssh config; use another.")
    value = value.replace("%", "%%")
    return f'"{value}"' if any(c.isspace() for c in value) else value


def _read_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        raw = raw[1:-1]
    return raw.replace("%%", "%")


def _check(entry: ContainerEntry) -> None:
    validate_name(entry.name)
    validate_user(entry.user)
    if not 0 < entry.port < 65536:
        raise SshConfigError(f"{entry.port} is not a TCP port; the container's port is wrong.")
    if not _KEY_RE.fullmatch(entry.host_key.strip()):
        raise SshConfigError(
            f"The host key of {entry.name} does not look like an OpenSSH public key; relaunch it."
        )
    if entry.jump is not None and (
        not _JUMP_RE.fullmatch(entry.jump) or entry.jump.startswith("-")
    ):
        raise SshConfigError(
            f"The jump host {entry.jump!r} is not a plain ssh destination like user@host:port."
        )


def control_dir(home: Path) -> Path:
    return home / CONTROL_DIR_NAME


def control_path(home: Path, *identity: object) -> Path | None:
    """A short, fixed-length socket path under ``home`` for one ssh destination, or None when
    ``home`` is too deep for a Unix socket (then connections are simply not shared).

    The name hashes everything that makes the destination (alias, port, user, jump), so a
    container that came back on another port never meets the old master's socket.
    """
    digest = hashlib.sha256("\0".join(str(p) for p in identity).encode()).hexdigest()[:16]
    path = control_dir(home) / digest
    return path if len(str(path)) <= MAX_CONTROL_PATH else None


def _control_lines(path: Path | None) -> list[str]:
    # Connection sharing: the first ssh/scp/rsync opens a master that later ones reuse for
    # ControlPersist, so they skip both handshakes (the jump and the container).
    if path is None:
        return []
    return [
        "    ControlMaster auto",
        f"    ControlPath {_config_value('control path', str(path))}",
        f"    ControlPersist {CONTROL_PERSIST}",
    ]


def _ensure_control_dir(home: Path) -> None:
    # The sockets hand out logged-in connections: only the user may reach them.
    path = control_dir(home)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def render_block(entry: ContainerEntry, home: Path) -> str:
    _check(entry)
    lines = [
        f"Host {entry.alias}",
        "    HostName 127.0.0.1",
        f"    Port {entry.port}",
        f"    User {entry.user}",
        f"    IdentityFile {_config_value('identity file', entry.identity_file)}",
        "    IdentitiesOnly yes",
        f"    HostKeyAlias {entry.alias}",
        f"    UserKnownHostsFile {_config_value('path', str(known_hosts_path(home)))}",
        "    StrictHostKeyChecking yes",
    ]
    if entry.jump:
        lines.append(f"    ProxyJump {entry.jump}")
    lines += _control_lines(control_path(home, entry.alias, entry.port, entry.user, entry.jump))
    return "\n".join(lines) + "\n"


def render(entries_: list[ContainerEntry], home: Path) -> str:
    blocks = [render_block(e, home) for e in sorted(entries_, key=lambda e: e.name)]
    # The GPU hosts' own aliases, which the container blocks jump through.
    include = f"Include {_config_value('path', str(hosts_path(home)))}\n"
    return _HEADER + include + "".join("\n" + block for block in blocks)


def hosts_path(home: Path) -> Path:
    return home / HOSTS_NAME


@dataclass(frozen=True)
class HostAlias:
    """How OpenSSH reaches a GPU host exactly as gpudesk does (same key, port, jump)."""

    name: str
    hostname: str
    port: int
    user: str | None
    identity: str | None
    jump: str | None  # another alias or a plain destination
    known_hosts: tuple[str, ...]
    proxy_command: str | None = None  # OpenSSH's own ProxyCommand syntax, tokens kept

    @property
    def alias(self) -> str:
        return HOST_ALIAS_PREFIX + self.name


def render_host_block(host: HostAlias, home: Path | None = None) -> str:
    lines = [
        f"Host {host.alias}",
        f"    HostName {_config_value('host name', host.hostname)}",
        f"    Port {int(host.port)}",
    ]
    if host.user:
        lines.append(f"    User {_config_value('user', host.user)}")
    if host.identity:
        lines.append(f"    IdentityFile {_config_value('identity file', host.identity)}")
    if host.known_hosts:
        files = " ".join(_config_value("path", p) for p in host.known_hosts)
        lines.append(f"    UserKnownHostsFile {files}")
    lines.append("    StrictHostKeyChecking yes")
    if host.jump:
        if not _JUMP_RE.fullmatch(host.jump) or host.jump.startswith("-"):
            raise SshConfigError(f"The jump host {host.jump!r} is not a plain ssh destination.")
        lines.append(f"    ProxyJump {host.jump}")
    elif host.proxy_command:
        if any(ord(c) < 32 for c in host.proxy_command):
            raise SshConfigError(f"The ProxyCommand of {host.name} spans lines; fix hosts.toml.")
        lines.append(f"    ProxyCommand {host.proxy_command}")
    if home is not None:
        lines += _control_lines(
            control_path(home, host.alias, host.hostname, host.port, host.user, host.jump)
        )
    return "\n".join(lines) + "\n"


def write_host_aliases(home: Path, hosts: list[HostAlias]) -> None:
    """Rewrite the GPU hosts' aliases; container blocks name them in ProxyJump."""
    text = "# Written by gpudesk from hosts.toml; rewritten on each launch.\n" + "".join(
        "\n" + render_host_block(h, home) for h in sorted(hosts, key=lambda h: h.name)
    )
    with _locked(home):
        _ensure_control_dir(home)
        path = hosts_path(home)
        with contextlib.suppress(OSError):
            if path.read_text(encoding="utf-8") == text:
                return  # one-shot commands call this every time: no write when unchanged
        atomic_write(path, text)


def parse(config_text: str, known_hosts_text: str = "") -> list[ContainerEntry]:
    """The entries in a config gpudesk wrote (blocks it did not write are skipped)."""
    keys: dict[str, str] = {}
    for line in known_hosts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            keys[parts[0]] = f"{parts[1]} {parts[2]}"
    blocks: list[dict[str, str]] = []
    for line in config_text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = stripped.partition(" ")
        if key.lower() == "host":
            blocks.append({"host": value.strip()})
        elif blocks:
            blocks[-1][key.lower()] = _read_value(value)
    result: list[ContainerEntry] = []
    for block in blocks:
        alias = block["host"]
        if not alias.startswith(SSH_HOST_PREFIX):
            continue
        try:
            result.append(
                ContainerEntry(
                    name=alias.removeprefix(SSH_HOST_PREFIX),
                    port=int(block.get("port", "0")),
                    user=block.get("user", ""),
                    identity_file=block.get("identityfile", ""),
                    host_key=keys.get(block.get("hostkeyalias", alias), ""),
                    jump=block.get("proxyjump"),
                )
            )
        except ValueError:
            continue
    return result


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    # Two gpudesk windows launching at once must not drop each other's entries.
    private_dir(home)
    fd = os.open(home / ".ssh_config.lock", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with open(fd, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def entries(home: Path) -> list[ContainerEntry]:
    return parse(_read(config_path(home)), _read(known_hosts_path(home)))


def _write_all(home: Path, all_entries: list[ContainerEntry]) -> None:
    ordered = sorted(all_entries, key=lambda e: e.name)
    text = render(ordered, home)
    known = "".join(f"{e.alias} {e.host_key.strip()}\n" for e in ordered)
    _ensure_control_dir(home)
    atomic_write(known_hosts_path(home), known)
    atomic_write(config_path(home), text)


def add_entry(home: Path, entry: ContainerEntry) -> None:
    """Add or replace the block (and pinned host key) for ``entry.name``."""
    _check(entry)
    with _locked(home):
        others = [e for e in entries(home) if e.name != entry.name]
        _write_all(home, [*others, entry])


def remove_entry(home: Path, name: str) -> bool:
    """Drop the block and host key for ``name``; False if there was none."""
    with _locked(home):
        current = entries(home)
        kept = [e for e in current if e.name != name]
        if len(kept) == len(current):
            return False
        _write_all(home, kept)
        return True


def update_ports(home: Path, ports: Mapping[str, int]) -> list[str]:
    """Rewrite the ports of entries whose container now publishes another one.

    Docker picks a new random host port each time a container starts (restart, host reboot),
    so callers pass the ports from a fresh container listing; returns the names changed.
    """
    with _locked(home):
        current = entries(home)
        changed = [e.name for e in current if e.name in ports and ports[e.name] != e.port]
        if changed:
            _write_all(
                home,
                [replace(e, port=ports[e.name]) if e.name in changed else e for e in current],
            )
        return changed


def _include_line(gpudesk_config: Path) -> str:
    return f"Include {_config_value('gpudesk config path', str(gpudesk_config))}"


def _is_our_include(line: str, gpudesk_config: Path) -> bool:
    key, _, value = line.strip().partition(" ")
    if key.lower() != "include":
        return False
    return Path(os.path.expanduser(_read_value(value))) == gpudesk_config


def include_present(user_ssh_config: Path, gpudesk_config: Path) -> bool:
    """Whether ``user_ssh_config`` starts with (before any Host/Match) our Include line."""
    for line in _read(user_ssh_config).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if _is_our_include(stripped, gpudesk_config):
            return True
        if stripped.split()[0].lower() in ("host", "match"):
            return False
    return False


def ensure_include(user_ssh_config: Path, gpudesk_config: Path) -> bool:
    """Put one ``Include <gpudesk_config>`` at the top of ``user_ssh_config``; True if changed.

    The rest of the file is kept as it was. A missing file is created with mode 0600; a
    symlinked one (dotfile managers) is edited at its target so the link survives.
    """
    target = user_ssh_config.resolve() if user_ssh_config.is_symlink() else user_ssh_config
    if include_present(target, gpudesk_config):
        ours = [ln for ln in _read(target).splitlines() if _is_our_include(ln, gpudesk_config)]
        if len(ours) == 1:
            return False
    existing = _read(target)
    mode = 0o600
    with contextlib.suppress(FileNotFoundError):
        mode = target.stat().st_mode & 0o777
    kept = [
        ln for ln in existing.splitlines(keepends=True) if not _is_our_include(ln, gpudesk_config)
    ]
    rest = "".join(kept).lstrip("\n")
    if rest and not rest.endswith("\n"):
        rest += "\n"
    text = f"{_include_line(gpudesk_config)}\n" + ("\n" + rest if rest.strip() else "")
    if not target.parent.exists():
        target.parent.mkdir(parents=True, mode=0o700)
    atomic_write(target, text, mode)
    return True
