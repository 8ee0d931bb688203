"""Local port forwards over a host's one SSH connection (``ssh -L`` without a second login)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable
from typing import Protocol


class _Endpoint(Protocol):
    def recv(self, n: int) -> bytes: ...
    def sendall(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def fileno(self) -> int: ...


Opener = Callable[[str, int], _Endpoint]
BUFFER = 65536


class Tunnel:
    """Listens on 127.0.0.1:``local_port`` and forwards each connection to ``remote`` via ``open``.

    ``open(host, port)`` is the connection's ``open_tcp``: the far end is reached from the GPU
    host, so ports published on its loopback only are reachable.
    """

    def __init__(
        self,
        open_channel: Opener,
        remote_host: str,
        remote_port: int,
        local_port: int = 0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._open = open_channel
        self._on_error = on_error
        self.remote_host = remote_host
        self.remote_port = remote_port
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", local_port))
        self._server.listen(16)
        self.local_port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="tunnel")
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            channel = self._open(self.remote_host, self.remote_port)
        except Exception as exc:
            # The browser only sees a closed connection: say why to whoever holds the tunnel,
            # before closing it, so the reason is there by the time the close is seen.
            if self._on_error is not None:
                with contextlib.suppress(Exception):
                    self._on_error(exc)
            client.close()
            return
        try:
            pump(client, channel, self._closed)
        finally:
            with contextlib.suppress(OSError):
                channel.close()
            client.close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        self._closed.set()
        # shutdown wakes the accept() blocked in the other thread; close alone would leave the
        # port listening until the next connection came.
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._server.close()


def pump(a: _Endpoint, b: _Endpoint, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    while not stop.is_set():
        readable, _, _ = select.select([a, b], [], [], 0.5)
        for src in readable:
            dst = b if src is a else a
            try:
                data = src.recv(BUFFER)
            except OSError:
                return
            if not data:
                return
            dst.sendall(data)
