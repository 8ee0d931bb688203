"""One verified SSH connection per host: host-key checks, auth, keepalive, reconnect, exec.

Everything that talks to a host shares that host's :class:`SshConnection`. Host keys are
always verified against ``~/.ssh/known_hosts`` and gpudesk's own known_hosts; an unknown
key is never accepted without the user saying so, and a changed key is always refused.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from gpudesk.core.config import Host, Paths
from gpudesk.core.connection import (
    CHUNK_BYTES,
    AuthFailed,
    ConnState,
    ConnStatus,
    ExecResult,
    HostKeyChanged,
    HostKeyUnknown,
    LineStream,
    NotConnected,
    SshError,
    StatusCallback,
    Unreachable,
    expand_proxy_command,
)
from gpudesk.core.hostkeys import HostKeyStore, fingerprint, known_hosts_name
from gpudesk.core.sshauth import authenticate

if TYPE_CHECKING:
    import paramiko
else:
    from gpudesk.core.lazy import lazy_module

    # Imported on the first connection, not for `gpudesk --help` or the TUI's first frame.
    paramiko = lazy_module("paramiko")

# The connection's vocabulary lives in core/connection.py and host keys in core/hostkeys.py;
# importing them from here still works.
__all__ = [
    "AuthFailed",
    "ConnState",
    "ConnStatus",
    "ExecResult",
    "HostKeyChanged",
    "HostKeyStore",
    "HostKeyUnknown",
    "LineStream",
    "NotConnected",
    "SshConnection",
    "SshError",
    "StatusCallback",
    "Unreachable",
    "fingerprint",
    "known_hosts_name",
]

# OpenSSH's default MaxSessions is 10; leave room for the user's own `ssh` multiplexing.
MAX_SESSION_CHANNELS = 8


class SshConnection:
    """The single SSH connection to one host, with a supervisor that keeps it up."""

    def __init__(
        self,
        host: Host,
        paths: Paths,
        *,
        jump: SshConnection | None = None,
        on_status: StatusCallback | None = None,
        connect_timeout: float = 10.0,
        probe_interval: float = 5.0,
        max_backoff: float = 20.0,
        keepalive: int = 15,
    ) -> None:
        self.host = host
        self.paths = paths
        self.jump = jump
        self.on_status = on_status
        self.connect_timeout = connect_timeout
        self.probe_interval = probe_interval
        self.max_backoff = max_backoff
        self.keepalive = keepalive
        self.keys = HostKeyStore(paths)
        self.known_name = known_hosts_name(host.hostname, host.port)
        self._transport: paramiko.Transport | None = None
        self._lock = threading.Lock()
        # Held while connecting: this host's supervisor, a CLI command and the hosts that use it
        # as their jump may all ask at once, and a second transport would replace (and kill)
        # the first along with every channel riding on it.
        self._connecting = threading.Lock()
        self._sessions = threading.BoundedSemaphore(MAX_SESSION_CHANNELS)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.status = ConnStatus(host.name, ConnState.CONNECTING)
        self.pending_key: paramiko.PKey | None = None
        self.accepted_key: paramiko.PKey | None = None  # trusted by accept_new_host_key
        self._accepted_by_user: paramiko.PKey | None = None  # in the TUI's dialog

    # ------------------------------------------------------------------ status

    def _set(self, state: ConnState, message: str = "", **extra: object) -> None:
        self.status = ConnStatus(self.host.name, state, message, **extra)  # type: ignore[arg-type]
        if self.on_status is not None:
            self.on_status(self.status)

    @property
    def connected(self) -> bool:
        t = self._transport
        return t is not None and t.is_active() and t.is_authenticated()

    # ------------------------------------------------------------------ connect

    def _open_socket(
        self, accept_new_host_key: bool = False
    ) -> socket.socket | paramiko.Channel | paramiko.ProxyCommand:
        dest = self.host.destination
        if self.jump is not None:
            try:
                # The user's "accept new host key" covers the hop they asked to go through.
                self.jump.ensure_connected(accept_new_host_key)
                return self.jump.open_tcp(self.host.hostname, self.host.port, self.connect_timeout)
            except SshError as exc:
                raise Unreachable(
                    f"Cannot reach {dest} through {self.jump.host.name}: {exc}"
                ) from exc
        if self.host.proxy_command:
            return self._proxy_command()
        try:
            return socket.create_connection(
                (self.host.hostname, self.host.port), timeout=self.connect_timeout
            )
        except TimeoutError as exc:
            raise Unreachable(
                f"{dest} did not answer within {self.connect_timeout:.0f}s; "
                "check the address and your network."
            ) from exc
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise Unreachable(
                f"Cannot reach {dest}: {reason}; check the address and that sshd runs there."
            ) from exc
        except UnicodeError as exc:  # the IDNA codec refuses the name (a label over 63 chars)
            raise Unreachable(
                f"{self.host.hostname!r} is not a valid host name ({exc}); fix the address."
            ) from exc

    def ensure_connected(self, accept_new_host_key: bool = False) -> None:
        """Connect unless already connected; one caller at a time. Raises :class:`SshError`."""
        with self._connecting:
            if not self.connected:
                self.connect_once(accept_new_host_key)

    def _proxy_command(self) -> paramiko.ProxyCommand:
        command = expand_proxy_command(self.host)
        try:
            return paramiko.ProxyCommand(command)
        except (paramiko.SSHException, OSError) as exc:
            raise Unreachable(
                f"The ProxyCommand for {self.host.name} ({command}) did not start: {exc}."
            ) from exc

    def connect_once(self, accept_new_host_key: bool = False) -> None:
        """Open, verify and authenticate; raises an :class:`SshError` on failure."""
        sock = self._open_socket(accept_new_host_key)
        transport = paramiko.Transport(sock)
        transport.banner_timeout = self.connect_timeout
        transport.auth_timeout = self.connect_timeout
        _prefer_fast_ciphers(transport)
        known_types = self.keys.known_types(self.known_name)
        if known_types:
            # Ask for the key type we already know, so a host with several keys is not
            # mistaken for a changed one.
            options = transport.get_security_options()
            preferred = [t for t in options.key_types if t in known_types]
            options.key_types = preferred + [t for t in options.key_types if t not in preferred]
        try:
            transport.start_client(timeout=self.connect_timeout)
            new_key = self._verify_host_key(transport, accept_new_host_key)
            self._authenticate(transport)
            if new_key is not None:
                # Kept only after the login: a host that refused us (a typo) is not trusted.
                self.keys.add(self.known_name, new_key)
                self.accepted_key = new_key
        except SshError:
            transport.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise Unreachable(
                f"SSH handshake with {self.host.destination} failed: {exc or type(exc).__name__}; "
                "check that the port belongs to an SSH server."
            ) from exc
        transport.set_keepalive(self.keepalive)
        with self._lock:
            old, self._transport = self._transport, transport
        if old is not None:
            old.close()

    def _verify_host_key(
        self, transport: paramiko.Transport, accept_new: bool
    ) -> paramiko.PKey | None:
        """None if known; the new key if ``accept_new`` (kept after login); else raises."""
        key = transport.get_remote_server_key()
        verdict = self.keys.check(self.known_name, key)
        if verdict == "ok":
            return None
        fp = fingerprint(key)
        if verdict == "changed":
            raise HostKeyChanged(
                f"WARNING: the host key of {self.known_name} has CHANGED (now {key.get_name()} "
                f"{fp}); someone may be intercepting the connection. If the host was really "
                f"reinstalled, remove its old key with `ssh-keygen -R '{self.known_name}'` "
                "and connect again.",
                key,
                self.known_name,
            )
        accepted = self._accepted_by_user
        if accept_new or (accepted is not None and accepted.asbytes() == key.asbytes()):
            return key
        self.pending_key = key
        raise HostKeyUnknown(
            f"The host key of {self.known_name} is not known ({key.get_name()} {fp}); "
            "compare the fingerprint with the host's and accept it "
            "(in the CLI: --accept-new-host-key).",
            key,
            self.known_name,
        )

    def _authenticate(self, transport: paramiko.Transport) -> None:
        authenticate(transport, self.host)

    def accept_pending_key(self) -> None:
        """The user accepted the unknown host key shown to them: trust it and reconnect."""
        if self.pending_key is not None:
            # Written to known_hosts by the next connect, once the login succeeded there.
            self._accepted_by_user = self.pending_key
            self.pending_key = None
        self.retry()

    # ------------------------------------------------------------------ supervisor

    def run(self) -> None:
        """Keep the connection up until :meth:`close`; blocks, so run it in a worker thread."""
        attempt = 0
        ever_connected = False
        while not self._stop.is_set():
            self._set(
                ConnState.CONNECTING if attempt == 0 else self.status.state, self.status.message
            )
            try:
                self.ensure_connected()
            except (HostKeyUnknown, HostKeyChanged) as exc:
                self._set(
                    exc.state,
                    str(exc),
                    fingerprint=fingerprint(exc.key),
                    key_type=exc.key.get_name(),
                )
                self._wait_for_user()
                attempt = 0
                continue
            except AuthFailed as exc:
                self._set(exc.state, str(exc))
                self._wait_for_user()
                attempt = 0
                continue
            except Exception as exc:  # every failure must end in a visible state
                if not isinstance(exc, SshError):
                    exc = Unreachable(f"Connecting to {self.host.destination} failed: {exc!r}.")
                attempt += 1
                delay = min(2.0 ** (attempt - 1), self.max_backoff)
                state = ConnState.DISCONNECTED_RETRYING if ever_connected else ConnState.UNREACHABLE
                self._set(state, str(exc), retry_in=delay)
                self._wake.wait(delay)
                self._wake.clear()
                continue
            attempt = 0
            ever_connected = True
            self._watch()
            if not self._stop.is_set():
                self._set(
                    ConnState.DISCONNECTED_RETRYING,
                    f"Lost the connection to {self.host.destination}; reconnecting.",
                    retry_in=0.0,
                )
        self._set(ConnState.CLOSED, "closed")

    def _wait_for_user(self) -> None:
        self._wake.wait()
        self._wake.clear()

    def _watch(self) -> None:
        while not self._stop.is_set():
            latency = self.probe_latency()
            if latency is None:
                return
            self._set(ConnState.CONNECTED, "", latency_ms=latency)
            self._wake.wait(self.probe_interval)
            self._wake.clear()

    def probe_latency(self, timeout: float = 10.0) -> float | None:
        """Round-trip time of one global request in ms, or None if the connection is gone."""
        transport = self._transport
        if transport is None or not transport.is_active():
            return None
        # paramiko waits for the reply without a deadline; a dead peer would hang us here.
        watchdog = threading.Timer(timeout, transport.close)
        watchdog.daemon = True
        watchdog.start()
        start = time.perf_counter()
        try:
            transport.global_request("keepalive@openssh.com", wait=True)
        except (paramiko.SSHException, OSError, EOFError):
            return None
        finally:
            watchdog.cancel()
        if not transport.is_active():
            return None
        return (time.perf_counter() - start) * 1000.0

    def retry(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    # ------------------------------------------------------------------ channels

    def _require(self) -> paramiko.Transport:
        transport = self._transport
        if transport is None or not transport.is_active():
            raise NotConnected(
                f"{self.host.name} is not connected ({self.status.state.value}); "
                "wait for it to reconnect or check the host."
            )
        return transport

    @contextmanager
    def session(self, timeout: float | None = None) -> Iterator[paramiko.Channel]:
        """One session channel, counted against the per-host budget."""
        if not self._sessions.acquire(timeout=30):
            raise SshError(f"Too many open channels to {self.host.name}; close some views.")
        try:
            try:
                channel = self._require().open_session(timeout=self.connect_timeout)
            except (paramiko.SSHException, OSError) as exc:
                raise NotConnected(f"Cannot open a channel to {self.host.name}: {exc}.") from exc
            channel.settimeout(timeout)
            try:
                yield channel
            finally:
                channel.close()
        finally:
            self._sessions.release()

    def exec(
        self, command: str, input: bytes | None = None, timeout: float | None = 60.0
    ) -> ExecResult:
        """Run a command built by :mod:`gpudesk.core.shell` and collect its output."""
        with self.session(timeout) as channel:
            channel.exec_command(command)
            errors: list[bytes] = []
            reader = threading.Thread(
                target=lambda: errors.append(channel.makefile_stderr("rb").read()), daemon=True
            )
            reader.start()
            if input is not None:
                channel.sendall(input)
            channel.shutdown_write()
            try:
                out = channel.makefile("rb").read()
                code = channel.recv_exit_status()
            except TimeoutError as exc:
                raise SshError(f"`{command[:60]}` on {self.host.name} timed out.") from exc
            reader.join(timeout=5)
            return ExecResult(code, out, errors[0] if errors else b"")

    @contextmanager
    def open_lines(self, command: str, stdin: bytes = b"") -> Iterator[LineStream]:
        """Run a long-lived command and iterate over its stdout lines until it ends."""
        with self.session(None) as channel:
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            yield LineStream(
                channel.makefile("rb"), channel.close, lambda: channel.recv(CHUNK_BYTES)
            )

    def open_tcp(self, host: str, port: int, timeout: float | None = None) -> paramiko.Channel:
        """A ``direct-tcpip`` channel to ``host:port`` as seen from this host."""
        try:
            return self._require().open_channel(
                "direct-tcpip",
                (host, port),
                ("127.0.0.1", 0),
                timeout=timeout or self.connect_timeout,
            )
        except paramiko.ChannelException as exc:
            raise SshError(f"{self.host.name} could not open {host}:{port}: {exc.text}.") from exc
        except (paramiko.SSHException, OSError) as exc:
            raise NotConnected(
                f"Cannot open {host}:{port} through {self.host.name}: {exc}."
            ) from exc


# AES-GCM authenticates as it decrypts, in one pass in OpenSSL; paramiko lists it last, after
# CTR + HMAC, which costs a second pass over every byte of a followed log.
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _prefer_fast_ciphers(transport: paramiko.Transport) -> None:
    options = transport.get_security_options()
    fast = [c for c in FAST_CIPHERS if c in options.ciphers]
    options.ciphers = tuple(fast + [c for c in options.ciphers if c not in fast])
