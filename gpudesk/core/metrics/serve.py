"""The exporter's HTTP listener: prometheus_client's WSGI server on one address.

Loopback by default; another address only when the user names it. A scrape runs the
collector on the server's thread, reading the latest snapshots (no IO on any host).
"""

from __future__ import annotations

import errno
import ipaddress
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpudesk.core.errors import GpudeskError
from gpudesk.core.metrics.board import HostSnapshot

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

DEFAULT_PORT = 9835
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"

_LISTEN = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>[0-9]{1,5})$")


class ExporterError(GpudeskError):
    """The exporter cannot listen where it was asked to; one sentence for the user."""


@dataclass(frozen=True)
class ListenAddress:
    host: str  # an IP address literal
    port: int  # 0: any free port (the started exporter knows which)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def url(self) -> str:
        return f"http://{self}/metrics"


def parse_listen(text: str) -> ListenAddress:
    """``ADDRESS:PORT``: an IPv4 address, ``[IPv6]`` or ``localhost``, and a port (0 = any)."""
    usage = "--listen takes ADDRESS:PORT, like 127.0.0.1:9835 or [::1]:9835"
    match = _LISTEN.match(text.strip())
    if match is None:
        raise ExporterError(f"{usage}, not {text!r}.")
    host = match.group("v6") or match.group("host")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ExporterError(f"{usage}: {host!r} is not an IP address.") from None
    if (match.group("v6") is not None) != (address.version == 6):
        raise ExporterError(f"{usage}: write an IPv6 address in brackets.")
    port = int(match.group("port"))
    if port > 65535:
        raise ExporterError(f"{usage}: the port must be from 0 to 65535, not {port}.")
    return ListenAddress(str(address), port)


def _listen_error(listen: ListenAddress, exc: OSError) -> ExporterError:
    if exc.errno == errno.EADDRINUSE:
        why = f"{listen} is already in use; stop what listens there or choose another --listen"
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"this machine has no address {listen.host} to listen on; use 127.0.0.1"
    elif exc.errno == errno.EACCES:
        why = f"listening on port {listen.port} needs privileges; choose a port above 1023"
    else:
        why = f"cannot listen on {listen}: {exc.strerror or exc}"
    return ExporterError(f"The exporter could not start: {why}.")


class Exporter:
    """Serves ``source()``'s snapshots as Prometheus metrics until :meth:`close`."""

    def __init__(
        self,
        source: Callable[[], Iterable[HostSnapshot]],
        listen: ListenAddress,
        *,
        allow_remote: bool = False,
    ) -> None:
        if not listen.loopback and not allow_remote:
            raise ExporterError(
                f"The exporter listens on a loopback address unless you name another one "
                f"yourself; {listen.host} is not loopback."
            )
        self.source = source
        self.requested = listen
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> ListenAddress:
        """Listen (raises :class:`ExporterError` in one sentence); returns the bound address."""
        from prometheus_client import CollectorRegistry, start_http_server

        from gpudesk.core.metrics.collect import FleetCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetCollector(self.source))
        try:
            server, thread = start_http_server(
                self.requested.port, addr=self.requested.host, registry=registry
            )
        except OSError as exc:
            raise _listen_error(self.requested, exc) from None
        self._server, self._thread = server, thread
        return self.address

    @property
    def address(self) -> ListenAddress:
        if self._server is None:
            return self.requested
        return ListenAddress(self.requested.host, int(self._server.server_port))

    @property
    def running(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
