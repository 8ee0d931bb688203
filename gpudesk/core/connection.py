"""A host connection's vocabulary, shared by SSH hosts (``ssh``) and this machine (``local``):
its states and status, its errors, and what commands return.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from gpudesk.core.config import Host
from gpudesk.core.errors import GpudeskError

if TYPE_CHECKING:
    import paramiko


class ConnState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    AUTH_FAILED = "auth-failed"
    UNREACHABLE = "unreachable"
    HOST_KEY_UNKNOWN = "host-key-unknown"
    HOST_KEY_CHANGED = "host-key-changed"
    DISCONNECTED_RETRYING = "disconnected-retrying"
    CLOSED = "closed"

    @property
    def needs_user(self) -> bool:
        """States gpudesk will not leave on its own: the user must act."""
        return self in (
            ConnState.AUTH_FAILED,
            ConnState.HOST_KEY_UNKNOWN,
            ConnState.HOST_KEY_CHANGED,
        )


@dataclass(frozen=True)
class ConnStatus:
    """What the UI and CLI show about a host's connection."""

    host: str
    state: ConnState
    message: str = ""
    latency_ms: float | None = None
    retry_in: float | None = None
    fingerprint: str | None = None
    key_type: str | None = None


class SshError(GpudeskError):
    """A connection problem; ``str(exc)`` is one sentence for the user."""

    state = ConnState.UNREACHABLE


class Unreachable(SshError):
    state = ConnState.UNREACHABLE


class AuthFailed(SshError):
    state = ConnState.AUTH_FAILED


class HostKeyUnknown(SshError):
    state = ConnState.HOST_KEY_UNKNOWN

    def __init__(self, message: str, key: paramiko.PKey, known_name: str) -> None:
        super().__init__(message)
        self.key = key
        self.known_name = known_name


class HostKeyChanged(SshError):
    state = ConnState.HOST_KEY_CHANGED

    def __init__(self, message: str, key: paramiko.PKey, known_name: str) -> None:
        super().__init__(message)
        self.key = key
        self.known_name = known_name


class NotConnected(SshError):
    state = ConnState.DISCONNECTED_RETRYING


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    def error_text(self) -> str:
        return self.stderr.decode("utf-8", "replace").strip()


StatusCallback = Callable[[ConnStatus], None]


# One read of a streamed command's stdout: large enough that a log flood is split into lines in
# bulk, and a read returns whatever has arrived, so a slow stream is not held back.
CHUNK_BYTES = 256 * 1024


class LineStream:
    """Decoded lines of a command's stdout; ``close()`` from any thread ends the iteration.

    ``chunks()`` gives the same stdout as raw byte chunks of whatever size has arrived (one
    channel read each), for readers that split lines in bulk; use one way or the other.
    """

    def __init__(
        self,
        raw: Iterable[bytes],
        closer: Callable[[], object],
        read_chunk: Callable[[], bytes] | None = None,
    ) -> None:
        self._raw = raw
        self._closer = closer
        self._read_chunk = read_chunk

    def __iter__(self) -> Iterator[str]:
        for line in self._raw:
            yield line.decode("utf-8", "replace").rstrip("\r\n")

    def chunks(self) -> Iterator[bytes]:
        if self._read_chunk is None:
            yield from self._raw
            return
        while chunk := self._read_chunk():
            yield chunk

    def close(self) -> None:
        self._closer()


def expand_proxy_command(host: Host) -> str:
    """OpenSSH's tokens in a ProxyCommand: %h host, %p port, %r user, %% a percent."""
    values = {
        "h": host.hostname,
        "p": str(host.port),
        "r": host.user or getpass.getuser(),
        "%": "%",
    }
    raw = host.proxy_command or ""
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] == "%" and i + 1 < len(raw) and raw[i + 1] in values:
            out.append(values[raw[i + 1]])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)
