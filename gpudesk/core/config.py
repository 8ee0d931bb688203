"""The host inventory (``hosts.toml``), gpudesk's file locations, and ``~/.ssh/config`` import."""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paramiko
import tomli_w

from gpudesk.core.errors import GpudeskError

NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
LOCALHOST = "localhost"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"


class ConfigError(GpudeskError, ValueError):
    """A problem with gpudesk's configuration; the message is meant for the user."""


class HostKind(Enum):
    LOCAL = "local"
    SSH = "ssh"


@dataclass(frozen=True)
class Host:
    """One GPU host in the inventory."""

    name: str
    kind: HostKind = HostKind.SSH
    hostname: str = ""
    user: str | None = None
    port: int = 22
    identity: str | None = None
    jump: str | None = None
    builtin: bool = False

    @property
    def destination(self) -> str:
        """``user@host:port`` as shown to people and written into ssh configs."""
        if self.kind is HostKind.LOCAL:
            return "local"
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{user}{host}" + (f":{self.port}" if self.port != 22 else "")


LOCAL_HOST = Host(name=LOCALHOST, kind=HostKind.LOCAL, builtin=True)


@dataclass(frozen=True)
class Paths:
    """Where gpudesk keeps its files; ``GPUDESK_HOME`` moves all of them."""

    home: Path

    @classmethod
    def from_env(cls) -> Paths:
        explicit = os.environ.get("GPUDESK_HOME")
        if explicit:
            return cls(Path(explicit).expanduser())
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return cls(Path(xdg) / "gpudesk")

    @property
    def hosts_file(self) -> Path:
        return self.home / "hosts.toml"

    @property
    def known_hosts(self) -> Path:
        return self.home / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.home / "ssh_config"

    @property
    def state_dir(self) -> Path:
        return self.home / "state"


def validate_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ConfigError(
            f"Host name {name!r} is not valid: use 1 to 63 letters, digits, '.', '_' or '-'."
        )
    return name


def atomic_write(path: Path, data: str, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_HOST_KEYS = {"hostname", "user", "port", "identity", "jump"}


def _header_line(text: str, name: str) -> int | None:
    pattern = re.compile(r"^\s*\[\s*hosts\s*\.\s*[\"']?" + re.escape(name) + r"[\"']?\s*\]")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def _host_from_table(name: str, table: Any, where: str) -> Host:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [hosts.{name}] must be a table.")
    unknown = set(table) - _HOST_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: [hosts.{name}] has unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed are {', '.join(sorted(_HOST_KEYS))}."
        )
    hostname = table.get("hostname")
    if not isinstance(hostname, str) or not hostname:
        raise ConfigError(f"{where}: [hosts.{name}] needs a hostname string.")
    port = table.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ConfigError(f"{where}: [hosts.{name}] port must be a number from 1 to 65535.")
    for key in ("user", "identity", "jump"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}: [hosts.{name}] {key} must be a string.")
    return Host(
        name=name,
        hostname=hostname,
        user=table.get("user"),
        port=port,
        identity=table.get("identity"),
        jump=table.get("jump"),
    )


def parse_hosts(text: str, source: Path) -> list[Host]:
    """Parse the text of a hosts.toml; errors name the file and the line."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}. Fix the file; gpudesk left it unchanged.") from exc
    hosts_table = doc.get("hosts", {})
    if not isinstance(hosts_table, dict):
        raise ConfigError(f"{source}: 'hosts' must be a table of [hosts.NAME] sections.")
    hosts: list[Host] = []
    for name, table in hosts_table.items():
        line = _header_line(text, name)
        where = f"{source}, line {line}" if line else str(source)
        try:
            validate_name(name)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if name == LOCALHOST:
            raise ConfigError(f"{where}: 'localhost' is built in and cannot be redefined.")
        hosts.append(_host_from_table(name, table, where))
    return hosts


def render_hosts(hosts: list[Host]) -> str:
    doc: dict[str, dict[str, dict[str, Any]]] = {"hosts": {}}
    for host in hosts:
        if host.builtin:
            continue
        entry: dict[str, Any] = {"hostname": host.hostname}
        if host.user:
            entry["user"] = host.user
        if host.port != 22:
            entry["port"] = host.port
        if host.identity:
            entry["identity"] = host.identity
        if host.jump:
            entry["jump"] = host.jump
        doc["hosts"][host.name] = entry
    header = "# gpudesk hosts; edit freely or use `gpudesk hosts add/rm`.\n"
    return header + tomli_w.dumps(doc)


@dataclass
class Inventory:
    """The hosts gpudesk knows: the built-in localhost first, then hosts.toml in file order."""

    paths: Paths
    hosts: list[Host] = field(default_factory=list)

    @classmethod
    def load(cls, paths: Paths | None = None) -> Inventory:
        paths = paths or Paths.from_env()
        try:
            text = paths.hosts_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(paths, [LOCAL_HOST])
        except OSError as exc:
            raise ConfigError(f"Cannot read {paths.hosts_file}: {exc.strerror}.") from exc
        return cls(paths, [LOCAL_HOST, *parse_hosts(text, paths.hosts_file)])

    def get(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        known = ", ".join(h.name for h in self.hosts)
        raise ConfigError(f"No host named {name!r}; known hosts are: {known}.")

    def names(self) -> list[str]:
        return [h.name for h in self.hosts]

    def add(self, host: Host) -> None:
        validate_name(host.name)
        if host.name in self.names():
            raise ConfigError(
                f"A host named {host.name!r} already exists; pick another name "
                f"or remove it first with `gpudesk hosts rm {host.name}`."
            )
        self.hosts.append(host)
        self.save()

    def remove(self, name: str) -> Host:
        host = self.get(name)
        if host.builtin:
            raise ConfigError(f"{name!r} is built in and cannot be removed.")
        self.hosts.remove(host)
        self.save()
        return host

    def save(self) -> None:
        atomic_write(self.paths.hosts_file, render_hosts(self.hosts))


def user_ssh_config_path() -> Path:
    return Path.home() / ".ssh" / "config"


def ssh_config_lookup(alias: str, path: Path | None = None) -> dict[str, Any] | None:
    """What ``~/.ssh/config`` says about ``alias``, or None when it does not name it."""
    path = path or user_ssh_config_path()
    if not path.exists():
        return None
    try:
        config = paramiko.SSHConfig.from_path(str(path))
    except (OSError, paramiko.ssh_exception.ConfigParseError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}.") from exc
    if alias not in config.get_hostnames():
        return None
    found: dict[str, Any] = dict(config.lookup(alias))
    return found


def parse_destination(dest: str) -> tuple[str | None, str, int]:
    """``ssh://user@host:port`` or ``user@host:port`` to (user, host, port)."""
    raw = dest if dest.startswith("ssh://") else f"ssh://{dest}"
    try:
        parts = urlsplit(raw)
        port = parts.port or 22
    except ValueError as exc:
        raise ConfigError(f"{dest!r} is not a valid destination: {exc}.") from exc
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"{dest!r} is not a destination; use ssh://user@host[:port] or an alias "
            "from ~/.ssh/config."
        )
    return parts.username or None, parts.hostname, port


def host_from_destination(
    name: str, dest: str, identity: str | None = None, jump: str | None = None
) -> Host:
    """Make a Host from ``gpudesk hosts add NAME DEST``: a URL or a ~/.ssh/config alias."""
    validate_name(name)
    looked_up = None if dest.startswith("ssh://") or "@" in dest else ssh_config_lookup(dest)
    if looked_up is not None:
        files = looked_up.get("identityfile") or []
        proxy = looked_up.get("proxyjump")
        host = Host(
            name=name,
            hostname=str(looked_up.get("hostname", dest)),
            user=looked_up.get("user"),
            port=int(looked_up.get("port", 22)),
            identity=files[0] if files else None,
            jump=None if proxy in (None, "none") else str(proxy).split(",")[0],
        )
    else:
        user, hostname, port = parse_destination(dest)
        host = Host(name=name, hostname=hostname, user=user, port=port)
    if identity:
        host = replace(host, identity=identity)
    if jump:
        host = replace(host, jump=jump)
    return host


def resolve_jump(spec: str, inventory: Inventory) -> Host:
    """A jump host given as an inventory name, a ~/.ssh/config alias, or a destination."""
    for host in inventory.hosts:
        if host.name == spec and host.kind is HostKind.SSH:
            return host
    name = re.sub(r"[^A-Za-z0-9._-]", "_", spec)[:63] or "jump"
    return host_from_destination(name, spec)
