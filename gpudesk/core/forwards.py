"""Forward any port of a dev container to this machine, and remember the local port.

A forward is a local listener (:class:`~gpudesk.core.tunnels.Tunnel`) whose far end is looked
up again for every connection: a restarted container comes back with another published port
(Docker picks one at each start) or another address, and the forward follows it, so the local
port and every bookmark on it keep working. It never follows the name to another container.

The far end, as seen from the GPU host: a port the container publishes is reached on the
host's 127.0.0.1; any other port on the container's own address on its Docker network.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpudesk.core.config import Paths, atomic_write
from gpudesk.core.containers import ContainerError
from gpudesk.core.containers.model import listen_binding, network_mode
from gpudesk.core.tunnels import Tunnel

STATE_NAME = "forwards.json"
CONNECT_TIMEOUT = 5.0

Inspector = Callable[[], dict[str, Any]]
Opener = Callable[[str, int], Any]


class ForwardError(ContainerError):
    """A forward could not be set up; the message says why and what to do."""


@dataclass(frozen=True)
class ForwardKey:
    host: str
    container: str
    port: int  # inside the container

    @property
    def text(self) -> str:
        return f"{self.host}/{self.container}:{self.port}"


class PortMemory:
    """The local port each forward used last (``state/forwards.json``), so it is reused."""

    def __init__(self, paths: Paths) -> None:
        self.path = paths.state_dir / STATE_NAME
        self._lock = threading.Lock()

    def _read(self) -> dict[str, int]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: v for k, v in raw.items() if isinstance(v, int) and 0 < v < 65536}

    def get(self, key: ForwardKey) -> int | None:
        return self._read().get(key.text)

    def remember(self, key: ForwardKey, local_port: int) -> None:
        with self._lock:
            data = self._read()
            if data.get(key.text) != local_port:
                data[key.text] = local_port
                atomic_write(self.path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def choose(self, key: ForwardKey, requested: int | None = None) -> int:
        """``requested``, else the remembered port when it is free here, else a free one."""
        if requested:
            return requested
        remembered = self.get(key)
        if remembered and port_free(remembered):
            return remembered
        return free_port()


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def target_from_attrs(attrs: dict[str, Any], port: int) -> tuple[str, int]:
    """Where the GPU host reaches ``port`` of the container described by ``docker inspect``."""
    state = attrs.get("State") or {}
    name = str(attrs.get("Name", "")).lstrip("/") or "the container"
    if state.get("Status") != "running":
        raise ForwardError(f"{name} is {state.get('Status', 'not running')}; start it first.")
    if network_mode(attrs):
        # The host's network: the container's ports are the host's; its SSH or Jupyter server
        # listens on the port gpudesk picked rather than on 22 or 8888.
        for binding in listen_binding(attrs):
            if binding.container_port == f"{port}/tcp":
                return binding.host_ip, binding.host_port
        return "127.0.0.1", port
    settings = attrs.get("NetworkSettings") or {}
    for binding in (settings.get("Ports") or {}).get(f"{port}/tcp") or []:
        host_port = str(binding.get("HostPort") or "")
        if host_port.isdigit():
            ip = binding.get("HostIp") or "127.0.0.1"
            return ("127.0.0.1" if ip in ("0.0.0.0", "::", "") else ip), int(host_port)
    for network in (settings.get("Networks") or {}).values():
        address = (network or {}).get("IPAddress")
        if address:
            return str(address), port
    raise ForwardError(
        f"{name} has no address on a Docker network, so port {port} cannot be reached; "
        "publish it or attach the container to a network."
    )


class Forward:
    """127.0.0.1:``local_port`` here → ``port`` in a container, following it across restarts.

    ``inspect`` returns the container's ``docker inspect``; it is asked again for every new
    connection, so the far end is always the port the container publishes now, and a
    connection is refused when the name has come to mean another container (removed and
    created again): a stale port must never hand a Jupyter token to someone else's container.
    """

    def __init__(
        self,
        key: ForwardKey,
        inspect: Inspector,
        open_tcp: Opener,
        local_port: int = 0,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.key = key
        self._inspect = inspect
        self._open_tcp = open_tcp
        self.on_error = on_error
        self.last_error: str | None = None
        attrs = inspect()
        target_from_attrs(attrs, key.port)  # refuse a stopped container now
        self.container_id = str(attrs.get("Id") or "")
        try:
            self.tunnel = Tunnel(self._open, "container", key.port, local_port, self._failed)
        except OSError as exc:
            raise ForwardError(
                f"Port {local_port} is already in use on this machine; pick another with --local."
            ) from exc
        self.local_port = self.tunnel.local_port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}"

    def target(self) -> tuple[str, int]:
        """Where the container's port is now; ForwardError if it is not the same container."""
        attrs = self._inspect()
        found = str(attrs.get("Id") or "")
        if self.container_id and found != self.container_id:
            raise ForwardError(
                f"{self.key.container} on {self.key.host} is not the container this forward was"
                " opened for (it was removed and created again); open the forward again."
            )
        return target_from_attrs(attrs, self.key.port)

    def follows(self) -> bool:
        """Whether the forward still leads to its container (for callers that cache its URL)."""
        try:
            self.target()
        except Exception:
            return False
        return not self.tunnel.closed

    def _open(self, _host: str, _port: int) -> Any:
        return self._open_tcp(*self.target())

    def _failed(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        changed = message != self.last_error
        self.last_error = message
        if changed and self.on_error is not None:
            self.on_error(message)

    def close(self) -> None:
        self.tunnel.close()


def local_opener(host: str, port: int) -> socket.socket:
    return socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)


def forwards_file(paths: Paths) -> Path:
    return paths.state_dir / STATE_NAME


def close_all(forwards: list[Forward]) -> None:
    for forward in forwards:
        with contextlib.suppress(OSError):
            forward.close()
