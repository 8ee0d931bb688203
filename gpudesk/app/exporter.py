"""The TUI's background Prometheus exporter: the state's own streams, served while toggled on.

No Textual here: the app only toggles it and shows where it listens. A scrape reads the host
models the UI thread keeps current (each attribute is replaced, never mutated in place), so
the exporter adds no stream, no thread per host and no IO on any host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpudesk.core.connection import ConnState
from gpudesk.core.metrics.board import HostSnapshot
from gpudesk.core.metrics.serve import DEFAULT_LISTEN, Exporter, ListenAddress, parse_listen

if TYPE_CHECKING:
    from gpudesk.app.state import FleetState


def fleet_snapshots(state: FleetState) -> list[HostSnapshot]:
    """Every host as a scrape sees it: GPU samples and containers only while it is up."""
    snapshots = []
    for name, model in sorted(list(state.models.items())):
        status = model.status
        up = status.state is ConnState.CONNECTED
        containers = model.containers if up else None
        snapshots.append(
            HostSnapshot(
                name,
                status.state,
                latency_ms=status.latency_ms if up else None,
                sample=model.gpu if up and not model.gpu_note else None,
                containers=None if containers is None else tuple(containers),
            )
        )
    return snapshots


class BackgroundExporter:
    """Serves ``state``'s hosts on ``listen`` (loopback) while on."""

    def __init__(self, state: FleetState, listen: str = DEFAULT_LISTEN) -> None:
        self.state = state
        self.listen = parse_listen(listen)
        self._exporter: Exporter | None = None

    @property
    def address(self) -> ListenAddress | None:
        return None if self._exporter is None else self._exporter.address

    def toggle(self) -> ListenAddress | None:
        """Start (raises :class:`ExporterError`) or stop; the address while on, else None."""
        if self._exporter is not None:
            self.stop()
            return None
        exporter = Exporter(lambda: fleet_snapshots(self.state), self.listen)
        exporter.start()
        self._exporter = exporter
        return exporter.address

    def stop(self) -> None:
        exporter, self._exporter = self._exporter, None
        if exporter is not None:
            exporter.close()
