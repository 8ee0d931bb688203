"""The HTTP transport that carries Docker SDK requests over ``docker system dial-stdio`` exec
channels of a host's one :class:`SshConnection` (see :mod:`gpudesk.core.engine`).

Its own module because its classes subclass urllib3's and docker-py's: importing it imports
both, which only a client being built should pay for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import urllib3
import urllib3.connection
import urllib3.connectionpool
from docker.transport.basehttpadapter import BaseHTTPAdapter

if TYPE_CHECKING:
    import paramiko

    from gpudesk.core.ssh import SshConnection

DIAL_STDIO = "docker system dial-stdio"
POOL_SIZE = 3


class ChannelConnection(urllib3.connection.HTTPConnection):
    def __init__(self, conn: SshConnection, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.ssh = conn
        self._session: Any = None

    def connect(self) -> None:
        # Held open for the lifetime of the HTTP connection; released in close().
        self._session = self.ssh.session(self.timeout)  # type: ignore[arg-type]
        channel: paramiko.Channel = self._session.__enter__()
        channel.exec_command(DIAL_STDIO)
        self.sock = channel  # type: ignore[assignment]

    def close(self) -> None:
        super().close()
        session, self._session = self._session, None
        if session is not None:
            session.__exit__(None, None, None)


class ChannelPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, conn: SshConnection, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=POOL_SIZE, block=False)
        self.ssh = conn
        self.channel_timeout = timeout

    def _new_conn(self) -> ChannelConnection:
        return ChannelConnection(self.ssh, self.channel_timeout)


class SshAdapter(BaseHTTPAdapter):  # type: ignore[misc]
    def __init__(self, conn: SshConnection, timeout: float) -> None:
        super().__init__()
        self.pool = ChannelPool(conn, timeout)

    def get_connection(self, url: Any, proxies: Any = None) -> ChannelPool:
        return self.pool

    def get_connection_with_tls_context(
        self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
    ) -> ChannelPool:
        return self.pool

    def close(self) -> None:
        self.pool.close()
