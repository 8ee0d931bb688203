"""Container port forwards: where the far end is, which local port, following a moved target."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from gpudesk.core.config import Paths
from gpudesk.core.forwards import (
    Forward,
    ForwardError,
    ForwardKey,
    PortMemory,
    local_opener,
    target_from_attrs,
)


def attrs(status: str = "running", ports: dict | None = None, ip: str = "172.17.0.5") -> dict:
    return {
        "Name": "/box",
        "State": {"Status": status},
        "NetworkSettings": {"Ports": ports or {}, "Networks": {"bridge": {"IPAddress": ip}}},
    }


def test_published_ports_are_reached_on_the_hosts_loopback_others_on_the_container() -> None:
    published = attrs(ports={"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}]})
    assert target_from_attrs(published, 8888) == ("127.0.0.1", 49153)
    assert target_from_attrs(published, 6006) == ("172.17.0.5", 6006)
    with pytest.raises(ForwardError, match="start it first"):
        target_from_attrs(attrs(status="exited"), 6006)
    with pytest.raises(ForwardError, match="no address"):
        target_from_attrs(attrs(ip=""), 6006)


def test_the_local_port_is_remembered_and_reused_when_free() -> None:
    memory = PortMemory(Paths.from_env())
    key = ForwardKey("gpu1", "nb1", 8888)
    first = memory.choose(key)
    memory.remember(key, first)
    assert PortMemory(Paths.from_env()).choose(key) == first
    assert memory.choose(ForwardKey("gpu1", "nb1", 6006)) != 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", first))
        busy.listen()
        assert memory.choose(key) != first
    assert memory.choose(key, requested=4242) == 4242


class Server:
    """A one-line TCP server that answers with its own tag."""

    def __init__(self, tag: bytes) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.tag = tag
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.tag)

    def close(self) -> None:
        # shutdown wakes the blocked accept(); close alone would leave it listening.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made = [Server(b"first"), Server(b"second")]
    yield made
    for s in made:
        s.close()


def fetch(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        return conn.recv(100)


def published(port: int, cid: str = "c1") -> dict:
    return {**attrs(ports={"6006/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}),
            "Id": cid}  # fmt: skip


def test_a_forward_follows_its_container_to_its_new_port(servers: list[Server]) -> None:
    now = {"attrs": published(servers[0].port)}
    lookups: list[int] = []

    def inspect() -> dict:
        lookups.append(1)
        return now["attrs"]

    forward = Forward(ForwardKey("h", "c", 6006), inspect, local_opener)
    try:
        assert fetch(forward.local_port) == b"first"
        # The container restarted: same container, another published port. The old port now
        # answers for someone else (the second server), yet the forward goes where it is now.
        now["attrs"] = published(servers[1].port)
        assert fetch(forward.local_port) == b"second"
        assert len(lookups) == 3  # at the start, then once per connection
        assert forward.follows() and forward.last_error is None
    finally:
        forward.close()


def test_a_forward_refuses_a_new_container_under_the_same_name(servers: list[Server]) -> None:
    now = {"attrs": published(servers[0].port, "c1")}
    errors: list[str] = []
    forward = Forward(
        ForwardKey("h", "nb", 6006), lambda: now["attrs"], local_opener, on_error=errors.append
    )
    try:
        assert fetch(forward.local_port) == b"first"
        now["attrs"] = published(servers[0].port, "c2")  # removed and created again
        assert fetch(forward.local_port) == b""  # closed at once, nothing forwarded
        assert not forward.follows()
        assert errors == [forward.last_error]
        assert "not the container this forward was opened for" in errors[0]
        assert fetch(forward.local_port) == b""
        assert len(errors) == 1  # the same reason is said once
    finally:
        forward.close()


def test_a_busy_local_port_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ForwardError, match=r"already in use.*--local"):
            Forward(ForwardKey("h", "c", 1), lambda: published(1), local_opener, port)
