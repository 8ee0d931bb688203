"""The built-in ``localhost`` host: the same surface as an SSH connection, without SSH."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gpudesk.core.config import LOCAL_HOST, Host
from gpudesk.core.connection import (
    CHUNK_BYTES,
    ConnState,
    ConnStatus,
    ExecResult,
    LineStream,
    SshError,
    StatusCallback,
)


class LocalConnection:
    """Runs commands with ``sh -c`` on this machine; always connected."""

    def __init__(self, on_status: StatusCallback | None = None) -> None:
        self.host: Host = LOCAL_HOST
        self.on_status = on_status
        self.status = ConnStatus(self.host.name, ConnState.CONNECTED, "this machine", 0.0)
        self._stop = threading.Event()

    @property
    def connected(self) -> bool:
        return True

    def run(self) -> None:
        if self.on_status is not None:
            self.on_status(self.status)
        self._stop.wait()

    def retry(self) -> None:
        if self.on_status is not None:
            self.on_status(self.status)

    def close(self) -> None:
        self._stop.set()

    def exec(
        self, command: str, input: bytes | None = None, timeout: float | None = 60.0
    ) -> ExecResult:
        try:
            done = subprocess.run(
                ["sh", "-c", command], input=input or b"", capture_output=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            raise SshError(f"`{command[:60]}` timed out on localhost.") from exc
        return ExecResult(done.returncode, done.stdout, done.stderr)

    @contextmanager
    def open_lines(self, command: str, stdin: bytes = b"") -> Iterator[LineStream]:
        proc = subprocess.Popen(
            ["sh", "-c", command],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdin is not None and proc.stdout is not None
        stdout = proc.stdout
        try:
            if stdin:
                proc.stdin.write(stdin)
            proc.stdin.close()
            yield LineStream(stdout, proc.kill, lambda: os.read(stdout.fileno(), CHUNK_BYTES))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def open_tcp(self, host: str, port: int, timeout: float | None = None) -> socket.socket:
        try:
            return socket.create_connection((host, port), timeout=timeout or 10.0)
        except OSError as exc:
            raise SshError(
                f"Cannot open {host}:{port} on localhost: {exc.strerror or exc}."
            ) from exc
