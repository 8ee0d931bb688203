"""The set of hosts and, per host, its one connection and the services on it.

The TUI and the CLI both go through :class:`Fleet`; nothing here knows about Textual.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpudesk.core.config import ConfigError, Host, HostKind, Inventory
from gpudesk.core.destinations import resolve_jump
from gpudesk.core.engine import (
    EngineError,
    EngineInfo,
    engine_info,
    local_client,
    local_socket,
    ssh_client,
)
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import GpuStream, StreamState
from gpudesk.core.local import LocalConnection
from gpudesk.core.ssh import ConnStatus, SshConnection, StatusCallback

if TYPE_CHECKING:
    import docker

Connection = SshConnection | LocalConnection


SIMULATE_ENV = "GPUDESK_SIMULATE_GPUS"


def simulated_gpus() -> int | None:
    """GPUs to simulate per host, only when explicitly asked for with GPUDESK_SIMULATE_GPUS."""
    raw = os.environ.get(SIMULATE_ENV, "").strip()
    if not raw:
        return None
    try:
        count = int(raw)
    except ValueError:
        raise ConfigError(f"{SIMULATE_ENV} must be a number of GPUs, not {raw!r}.") from None
    return count if count > 0 else None


SIMULATE_PROCESSES_ENV = "GPUDESK_SIMULATE_PROCESSES"
_SIM_PROCESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*@[0-9]{1,3}$")


def simulated_processes() -> tuple[str, ...]:
    """``NAME@GPU`` specs from GPUDESK_SIMULATE_PROCESSES (comma-separated; with simulated GPUs
    only): that fake GPU sits idle holding memory for real container NAME's main process."""
    raw = os.environ.get(SIMULATE_PROCESSES_ENV, "").strip()
    specs = tuple(s.strip() for s in raw.split(",") if s.strip())
    for spec in specs:
        if not _SIM_PROCESS.match(spec):
            raise ConfigError(
                f"{SIMULATE_PROCESSES_ENV} must list CONTAINER@GPU items, not {spec!r}."
            )
    return specs


class HostService:
    """One host: its connection and a Docker client riding on it."""

    def __init__(self, host: Host, conn: Connection) -> None:
        self.host = host
        self.conn = conn
        self._docker: docker.DockerClient | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        if self.host.kind is HostKind.LOCAL:
            return f"localhost ({local_socket()})"
        return self.host.name

    def docker(self) -> docker.DockerClient:
        with self._lock:
            if self._docker is None:
                if isinstance(self.conn, LocalConnection):
                    self._docker = local_client()
                else:
                    self._docker = ssh_client(self.conn)
            return self._docker

    def engine(self) -> EngineInfo:
        """Ask the engine for its version; raises :class:`EngineError` with what to do."""
        try:
            return engine_info(self.docker(), self.where)
        except EngineError:
            # A client built on a dead connection stays dead; start afresh next time.
            self.reset_docker()
            raise

    def gpu_stream(
        self,
        on_sample: Callable[[GpuSample], None],
        on_state: Callable[[StreamState, str], None],
        interval: float = 1.0,
        simulate: int | None = None,
    ) -> GpuStream:
        """The host's GPU agent stream over its one connection; call ``run()`` in a worker."""
        # On this machine gpudesk's own interpreter has nvidia-ml-py; a host has its python3.
        python = sys.executable if isinstance(self.conn, LocalConnection) else "python3"
        return GpuStream(
            self.conn.open_lines,
            on_sample,
            on_state,
            interval=interval,
            simulate=simulate,
            python=python,
            sim_processes=simulated_processes() if simulate else (),
        )

    def reset_docker(self) -> None:
        with self._lock:
            client, self._docker = self._docker, None
        if client is not None:
            # Its channels may already be gone with the connection (a lost jump host); closing
            # is best effort and must not stop the rest of a shutdown.
            with contextlib.suppress(Exception):
                client.close()

    def close(self) -> None:
        self.reset_docker()
        self.conn.close()


@dataclass
class Fleet:
    inventory: Inventory
    services: dict[str, HostService]

    @classmethod
    def build(
        cls,
        inventory: Inventory,
        on_status: Callable[[ConnStatus], None] | None = None,
        connect_timeout: float = 10.0,
    ) -> Fleet:
        services: dict[str, HostService] = {}
        for host in inventory.hosts:
            services[host.name] = HostService(
                host, make_connection(host, inventory, services, on_status, connect_timeout)
            )
        return cls(inventory, services)

    def get(self, name: str) -> HostService:
        if name not in self.services:
            self.inventory.get(name)  # raises the user-facing "no host named" error
        return self.services[name]

    def add(self, host: Host, on_status: StatusCallback | None = None) -> HostService:
        self.inventory.add(host)
        service = HostService(host, make_connection(host, self.inventory, self.services, on_status))
        self.services[host.name] = service
        return service

    def remove(self, name: str) -> None:
        self.inventory.remove(name)
        service = self.services.pop(name, None)
        if service is not None:
            service.close()

    def close(self) -> None:
        # Hosts reached through a jump host first: closing the jump's transport under them
        # would leave their channels to fail mid-close.
        services = sorted(
            self.services.values(), key=lambda s: getattr(s.conn, "jump", None) is None
        )
        for service in services:
            service.close()


def make_connection(
    host: Host,
    inventory: Inventory,
    services: dict[str, HostService] | None = None,
    on_status: StatusCallback | None = None,
    connect_timeout: float = 10.0,
) -> Connection:
    if host.kind is HostKind.LOCAL:
        return LocalConnection(on_status)
    jump: SshConnection | None = None
    if host.jump:
        shared = (services or {}).get(host.jump)
        if shared is not None and isinstance(shared.conn, SshConnection):
            jump = shared.conn
        else:
            jump_host = resolve_jump(host.jump, inventory)
            jump = SshConnection(jump_host, inventory.paths, connect_timeout=connect_timeout)
    return SshConnection(
        host, inventory.paths, jump=jump, on_status=on_status, connect_timeout=connect_timeout
    )


def connect_blocking(conn: Connection, accept_new_host_key: bool = False) -> None:
    """Connect once, jump host first; for the CLI. Raises :class:`SshError`."""
    if isinstance(conn, LocalConnection):
        return
    conn.ensure_connected(accept_new_host_key=accept_new_host_key)
