"""Readiness probes: does a dev container answer on its published port yet?

One implementation for both ways of reaching the port: a TCP socket here (a local engine) or an
SSH channel to the GPU host's loopback (a remote one, see ``devcontainers``). Either is an
:class:`Endpoint`; the probe opens one, reads the SSH banner or asks Jupyter's ``/api/status``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gpudesk.core.containers.model import ContainerError
from gpudesk.core.errors import GpudeskError
from gpudesk.core.flavours import Flavour


@dataclass(frozen=True)
class ReadyResult:
    ready: bool
    detail: str = ""


Probe = Callable[[int], ReadyResult]


class Endpoint(Protocol):
    """A byte stream to the container's port: a socket or a paramiko channel."""

    def recv(self, size: int, /) -> bytes: ...

    def sendall(self, data: bytes, /) -> None: ...

    def settimeout(self, timeout: float, /) -> None: ...

    def close(self) -> None: ...


Opener = Callable[[int], Endpoint]


def read_banner(endpoint: Endpoint) -> ReadyResult:
    data = endpoint.recv(256)
    if data.startswith(b"SSH-"):
        return ReadyResult(True, data.split(b"\r", 1)[0].decode("ascii", "replace"))
    return ReadyResult(False, "the port answered without an SSH banner")


def http_status(endpoint: Endpoint, path: str, token: str) -> int:
    """Send one GET over an already-open stream (socket or SSH channel); return the status."""
    request = (
        f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n\r\n"
    ).encode()
    endpoint.sendall(request)
    head = b""
    while b"\r\n" not in head:
        chunk = endpoint.recv(1024)
        if not chunk:
            break
        head += chunk
    parts = head.split(b"\r\n", 1)[0].split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ContainerError("Jupyter answered something that is not HTTP.")
    return int(parts[1])


def ready_probe(flavour: Flavour, token: str | None, open_port: Opener, timeout: float) -> Probe:
    """A probe for ``flavour``: an SSH banner, or Jupyter's /api/status answering 200."""

    def check(port: int) -> ReadyResult:
        try:
            endpoint = open_port(port)
        except (OSError, GpudeskError) as exc:
            return ReadyResult(False, f"no answer on port {port}: {exc}")
        try:
            endpoint.settimeout(timeout)
            if flavour is Flavour.SSH:
                return read_banner(endpoint)
            status = http_status(endpoint, "/api/status", token or "")
            if status == 200:
                return ReadyResult(True, "Jupyter is up")
            return ReadyResult(False, f"Jupyter answered {status}")
        except (OSError, ContainerError) as exc:
            return ReadyResult(False, f"no answer yet on port {port}: {exc}")
        finally:
            endpoint.close()

    return check


def tcp_opener(host: str, timeout: float) -> Opener:
    """Opens a TCP connection to ``host`` on the probed port."""

    def open_port(port: int) -> Endpoint:
        return socket.create_connection((host, port), timeout=timeout)

    return open_port


def probe_ssh_banner(host: str, port: int, timeout: float = 2.0) -> ReadyResult:
    """Ready once something on ``host:port`` greets with an SSH banner."""
    return ready_probe(Flavour.SSH, None, tcp_opener(host, timeout), timeout)(port)


def probe_jupyter(host: str, port: int, token: str, timeout: float = 2.0) -> ReadyResult:
    """Ready once Jupyter answers GET /api/status with 200 for ``token``."""
    return ready_probe(Flavour.JUPYTER, token, tcp_opener(host, timeout), timeout)(port)


def local_probe(flavour: Flavour, token: str | None) -> Probe:
    """The probe for a container on this machine's engine: straight to 127.0.0.1."""
    return ready_probe(flavour, token, tcp_opener("127.0.0.1", 2.0), 2.0)
