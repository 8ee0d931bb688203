"""The host inventory (``hosts.toml``), gpudesk's file locations, and ``~/.ssh/config`` import."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paramiko
import tomlkit
import tomlkit.items

from gpudesk.core.errors import GpudeskError

NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}")
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
    # Run instead of a TCP connection (OpenSSH's ProxyCommand; %h %p %r %n %% are expanded).
    proxy_command: str | None = None
    builtin: bool = False
    # Where the values came from (e.g. an ~/.ssh/config alias); written as a comment when the
    # host is added, never read back.
    source: str | None = field(default=None, compare=False)

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
    if not NAME_RE.fullmatch(name):  # match() lets "name\n" through
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


_HOST_KEYS = {"hostname", "user", "port", "identity", "jump", "proxy_command"}


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
    for key in ("user", "identity", "jump", "proxy_command"):
        if key in table and not isinstance(table[key], str):
            raise ConfigError(f"{where}: [hosts.{name}] {key} must be a string.")
    return Host(
        name=name,
        hostname=hostname,
        user=table.get("user"),
        port=port,
        identity=table.get("identity"),
        jump=table.get("jump"),
        proxy_command=table.get("proxy_command"),
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


HEADER = "# gpudesk hosts; edit freely or use `gpudesk hosts add/rm`."


def _host_entries(host: Host) -> dict[str, Any]:
    entry: dict[str, Any] = {"hostname": host.hostname}
    if host.user:
        entry["user"] = host.user
    if host.port != 22:
        entry["port"] = host.port
    if host.identity:
        entry["identity"] = host.identity
    if host.jump:
        entry["jump"] = host.jump
    if host.proxy_command:
        entry["proxy_command"] = host.proxy_command
    return entry


def render_hosts(hosts: list[Host], existing: str = "") -> str:
    """The hosts.toml text for ``hosts``, edited into ``existing`` so the user's comments,
    blank lines and order survive: only tables and keys that changed are touched."""
    doc = tomlkit.parse(existing) if existing.strip() else tomlkit.document()
    if not existing.strip():
        doc.add(tomlkit.comment(HEADER.removeprefix("# ")))
    found = doc.get("hosts")
    if isinstance(found, tomlkit.items.Table):
        table = found
    else:
        table = tomlkit.table(is_super_table=True)
        doc["hosts"] = table
    wanted = [h for h in hosts if not h.builtin]
    for name in [n for n in table if n not in {h.name for h in wanted}]:
        del table[name]
    for host in wanted:
        entry = _host_entries(host)
        current = table.get(host.name)
        if isinstance(current, dict):
            for key in [k for k in current if k in _HOST_KEYS and k not in entry]:
                del current[key]
            for key, value in entry.items():
                if current.get(key) != value:
                    current[key] = value
            continue
        new = tomlkit.table()
        if host.source:
            new.add(tomlkit.comment(host.source))
        for key, value in entry.items():
            new.add(key, value)
        table.append(host.name, new)
    return tomlkit.dumps(doc)


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
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{paths.hosts_file} is not UTF-8 text (byte {exc.start}); fix or remove it."
            ) from exc
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
        try:
            existing = self.paths.hosts_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            existing = ""
        except OSError as exc:
            raise ConfigError(f"Cannot read {self.paths.hosts_file}: {exc.strerror}.") from exc
        atomic_write(self.paths.hosts_file, render_hosts(self.hosts, existing))


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
        port = 22 if parts.port is None else parts.port
        if not 0 < port < 65536:  # urlsplit lets port 0 through
            raise ValueError(f"port {port} is not 1 to 65535")
    except ValueError as exc:
        raise ConfigError(f"{dest!r} is not a valid destination: {exc}.") from exc
    if parts.scheme != "ssh" or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"{dest!r} is not a destination; use ssh://user@host[:port] or an alias "
            "from ~/.ssh/config."
        )
    return parts.username or None, parts.hostname, port


_G_KEYS = ("hostname", "user", "port", "identityfile", "proxyjump", "proxycommand")


def _ssh_g(ssh: str, alias: str, config: str | None) -> dict[str, list[str]]:
    argv = [ssh, "-G"] + (["-F", config] if config else []) + ["--", alias]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"`ssh -G {alias}` did not run: {exc}.") from exc
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1:] or ["it failed"]
        raise ConfigError(f"OpenSSH could not resolve {alias!r}: {reason[0]}.")
    found: dict[str, list[str]] = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in _G_KEYS:
            found.setdefault(key, []).append(value.strip())
    return found


def _user_config_for_ssh() -> str | None:
    """The -F argument that makes OpenSSH read the same ~/.ssh/config gpudesk means.

    OpenSSH reads the passwd entry's home, not $HOME; when they differ (a moved HOME, tests),
    the config under $HOME is named explicitly (or none at all when it does not exist).
    """
    mine = user_ssh_config_path()
    try:
        passwd_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        passwd_home = None
    if passwd_home is not None and passwd_home.resolve() == Path.home().resolve():
        return None
    return str(mine) if mine.exists() else os.devnull


def resolve_alias(alias: str) -> dict[str, Any] | None:
    """What OpenSSH's own config reading (``ssh -G``) makes of ``alias``, or None if nothing.

    Include, wildcard ``Host`` and ``Match`` blocks all count, exactly as for ``ssh ALIAS``.
    Only what the config changed is kept: the same query against an empty config gives
    OpenSSH's defaults (the local user, the default key list, the alias as host name), and
    values equal to those are dropped. Without an OpenSSH client, paramiko reads the file.
    """
    ssh = shutil.which("ssh")
    if ssh is None:
        return ssh_config_lookup(alias)
    configured = _ssh_g(ssh, alias, _user_config_for_ssh())
    defaults = _ssh_g(ssh, alias, os.devnull)
    changed = {k: v for k, v in configured.items() if v != defaults.get(k)}
    if not changed:
        return None
    found: dict[str, Any] = {}
    for key, values in changed.items():
        if key == "identityfile":
            found[key] = [v for v in values if v not in defaults.get(key, [])] or values
        else:
            found[key] = values[0]
    return found


def host_from_destination(
    name: str, dest: str, identity: str | None = None, jump: str | None = None
) -> Host:
    """Make a Host from ``gpudesk hosts add NAME DEST``: a URL or a ~/.ssh/config alias."""
    validate_name(name)
    looked_up = None if dest.startswith("ssh://") or "@" in dest else resolve_alias(dest)
    if looked_up is not None:
        files = looked_up.get("identityfile") or []
        proxy = looked_up.get("proxyjump")
        command = looked_up.get("proxycommand")
        via = "ssh -G" if shutil.which("ssh") else "paramiko"
        host = Host(
            name=name,
            hostname=str(looked_up.get("hostname", dest)),
            user=looked_up.get("user"),
            port=int(looked_up.get("port", 22)),
            identity=os.path.expanduser(files[0]) if files else None,
            jump=None if proxy in (None, "none") else str(proxy).split(",")[0],
            proxy_command=(
                None
                if command in (None, "none")
                # %n is the alias typed on ssh's command line; gpudesk never types it.
                else re.sub(r"%([%n])", lambda m: "%%" if m[1] == "%" else dest, str(command))
            ),
            source=(
                f"from ~/.ssh/config alias {dest!r} ({via}): "
                + ", ".join(sorted(_G_NAMES.get(k, k) for k in looked_up))
            ),
        )
    else:
        user, hostname, port = parse_destination(dest)
        host = Host(name=name, hostname=hostname, user=user, port=port)
    if identity:
        host = replace(host, identity=identity)
    if jump:
        host = replace(host, jump=jump, proxy_command=None)
    return host


_G_NAMES = {"identityfile": "identity", "proxyjump": "jump", "proxycommand": "proxy_command"}


def resolve_jump(spec: str, inventory: Inventory) -> Host:
    """A jump host given as an inventory name, a ~/.ssh/config alias, or a destination."""
    for host in inventory.hosts:
        if host.name == spec and host.kind is HostKind.SSH:
            return host
    name = re.sub(r"[^A-Za-z0-9._-]", "_", spec)[:63] or "jump"
    return host_from_destination(name, spec)
