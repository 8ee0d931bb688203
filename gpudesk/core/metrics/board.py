"""The latest state of every host, as the exporter reads it at scrape time.

The loops that feed it (connection status, GPU stream, container watch, run listing) write
from their threads; a scrape takes :meth:`MetricsBoard.snapshots`, immutable copies, under the
same lock. A scrape never causes IO on a host.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gpudesk.core.connection import ConnState, ConnStatus
from gpudesk.core.gpu.sample import GpuSample

if TYPE_CHECKING:
    from gpudesk.core.containers import ContainerInfo
    from gpudesk.core.runs.model import Run


@dataclass(frozen=True)
class HostSnapshot:
    """One host as a scrape sees it; ``None`` where nothing is known (nothing is exported)."""

    name: str
    state: ConnState
    latency_ms: float | None = None
    # The latest GPU sample while the host is up and its agent streams; None otherwise.
    sample: GpuSample | None = None
    # The host's containers as last listed while up; None before a listing or while down.
    containers: tuple[ContainerInfo, ...] | None = None
    runs: tuple[Run, ...] = ()

    @property
    def up(self) -> bool:
        return self.state is ConnState.CONNECTED


class MetricsBoard:
    """Thread-safe latest state per host, written by the feeding loops."""

    def __init__(self, hosts: list[str] | None = None) -> None:
        self._lock = threading.Lock()
        self._hosts: dict[str, HostSnapshot] = {}
        for name in hosts or ():
            self.add_host(name)

    def add_host(self, name: str) -> None:
        with self._lock:
            self._hosts.setdefault(name, HostSnapshot(name, ConnState.CONNECTING))

    def remove_host(self, name: str) -> None:
        with self._lock:
            self._hosts.pop(name, None)

    def _update(self, name: str, **changes: object) -> None:
        with self._lock:
            current = self._hosts.get(name)
            if current is None:
                return
            if not current.up and ("sample" in changes or "containers" in changes):
                return  # a late report from a loop of a host that went down meanwhile
            self._hosts[name] = replace(current, **changes)  # type: ignore[arg-type]

    def set_status(self, status: ConnStatus) -> None:
        """A connection status; a host that is not up keeps no GPU sample or container list."""
        if status.state is ConnState.CONNECTED:
            self._update(status.host, state=status.state, latency_ms=status.latency_ms)
        else:
            self._update(
                status.host, state=status.state, latency_ms=None, sample=None, containers=None
            )

    def set_sample(self, host: str, sample: GpuSample | None) -> None:
        """The agent's latest sample, or ``None`` when its stream broke (nothing is current)."""
        self._update(host, sample=sample)

    def set_containers(self, host: str, infos: list[ContainerInfo] | None) -> None:
        self._update(host, containers=None if infos is None else tuple(infos))

    def change_containers(
        self,
        host: str,
        change: Callable[[list[ContainerInfo] | None], list[ContainerInfo] | None],
    ) -> None:
        """Replace the host's list by ``change(list)``, atomically with other writers."""
        with self._lock:
            current = self._hosts.get(host)
            if current is None or not current.up:
                return
            old = None if current.containers is None else list(current.containers)
            new = change(old)
            self._hosts[host] = replace(current, containers=None if new is None else tuple(new))

    def set_runs(self, host: str, runs: list[Run]) -> None:
        self._update(host, runs=tuple(runs))

    def get(self, name: str) -> HostSnapshot | None:
        with self._lock:
            return self._hosts.get(name)

    def snapshots(self) -> list[HostSnapshot]:
        with self._lock:
            return [self._hosts[name] for name in sorted(self._hosts)]
