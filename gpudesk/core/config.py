"""The host inventory (``hosts.toml``) and gpudesk's file locations."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

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


def private_dir(path: Path) -> None:
    """Make ``path`` and its missing parents 0700 (keys, ssh configs); others keep their modes."""
    for folder in reversed([p for p in (path, *path.parents) if not p.exists()]):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another gpudesk
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # whatever the umask says


def atomic_write(path: Path, data: str, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half of one."""
    private_dir(path.parent)
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


_HEADER_RE = re.compile(r"^\s*\[\s*hosts\s*\.\s*[\"']?([^\"'\]]*?)[\"']?\s*\]")


def _header_lines(text: str) -> dict[str, int]:
    """The line of each ``[hosts.NAME]`` header, in one pass (for errors that name the line)."""
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("[") and (match := _HEADER_RE.match(line)):
            found.setdefault(match[1].strip(), number)
    return found


def check_table(header: str, table: Any, known: set[str], where: str) -> dict[str, Any]:
    """``table`` (read from ``[header]`` in ``where``) as a dict of only ``known`` keys."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{header}] must be a table.")
    unknown = set(table) - known
    if unknown:
        raise ConfigError(
            f"{where}: [{header}] has unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed are {', '.join(sorted(known))}."
        )
    return table


def _host_from_table(name: str, table: Any, where: str) -> Host:
    table = check_table(f"hosts.{name}", table, _HOST_KEYS, where)
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
    lines = _header_lines(text)
    for name, table in hosts_table.items():
        line = lines.get(name)
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
    import tomlkit  # only writing needs it; loading uses tomllib
    import tomlkit.items

    doc = tomlkit.parse(existing) if existing.strip() else tomlkit.document()
    if not existing.strip():
        doc.add(tomlkit.comment(HEADER.removeprefix("# ")))
    found = doc.get("hosts")
    if isinstance(found, tomlkit.items.Table):
        table = found
    else:
        table = tomlkit.table(is_super_table=True)
        doc["hosts"] = table
    # Comment lines after the last host belong to what follows ([templates.*], say); tomlkit
    # keeps them in that host's table, so they move to whichever host ends up last.
    trail = _pop_trailing(table)
    wanted = [h for h in hosts if not h.builtin]
    wanted_names = {h.name for h in wanted}
    for name in [n for n in table if n not in wanted_names]:
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
    last = _last_host(table)
    if last is not None:
        last.value.body.extend(trail)
    elif trail:
        doc.add(tomlkit.nl())
        for _key, item in trail:
            doc.add(item)
    return tomlkit.dumps(doc)


def _last_host(table: Any) -> Any:
    import tomlkit.items

    tables = [v for v in table.values() if isinstance(v, tomlkit.items.Table)]
    return tables[-1] if tables else None


def _pop_trailing(table: Any) -> list[Any]:
    """The comment lines ending the last host's table after a blank line, taken out of it
    (a comment right under a host's keys, such as a commented-out key, stays with it)."""
    import tomlkit.items

    last = _last_host(table)
    if last is None:
        return []
    body = last.value.body
    end = len(body)
    while end and body[end - 1][0] is None:
        end -= 1
    while end < len(body) and not isinstance(body[end][1], tomlkit.items.Whitespace):
        end += 1  # comments right under the keys stay
    trail: list[Any] = body[end:]
    del body[end:]
    return trail


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
