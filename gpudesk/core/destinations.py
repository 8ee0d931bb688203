"""A host from what a user types: an ssh destination (``user@host:port``) or an alias of their
``~/.ssh/config`` (asked of OpenSSH's ``ssh -G`` where there is one), and jump hosts."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gpudesk.core.config import ConfigError, Host, HostKind, Inventory, validate_name


def user_ssh_config_path() -> Path:
    return Path.home() / ".ssh" / "config"


def ssh_config_lookup(alias: str, path: Path | None = None) -> dict[str, Any] | None:
    """What ``~/.ssh/config`` says about ``alias``, or None when it does not name it."""
    import paramiko  # only when there is no OpenSSH client to ask

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
