"""The TUI's container watcher against faults on the real test bed (issue 11 item 5).

The watcher rides on a host connection to a test sshd of this test's own; the fault is the
host-side ``docker system dial-stdio`` process that carries the event stream being killed (as
a dockerd restart or a dropped channel ends it). Meanwhile a container is stopped, so its
``die``/``stop`` events are lost with the stream: the list must say it is stale, resubscribe,
relist and show the container exited.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.app.state import FleetState, HostModel
from gpudesk.core.config import Inventory, Paths
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.containers.watch import ContainersStale
from gpudesk.core.fleet import Fleet, connect_blocking
from scripts import testbed as testbed_module
from tests.integration import early
from tests.integration.bed import bed_host

HOST = "watched"


class ApplyingSink:
    """Applies every report to the state as the app does, and lets the test await a condition."""

    def __init__(self) -> None:
        self.state: FleetState | None = None
        self.changed = threading.Condition()
        self.reports: list[str] = []
        self.stale_seen = False  # a ContainersStale was applied (it may be over already)

    def _apply(self, kind: str, apply: Callable[[FleetState], object]) -> None:
        with self.changed:
            assert self.state is not None
            apply(self.state)
            self.reports.append(kind)
            self.changed.notify_all()

    def wait_for(self, what: str, check: Callable[[HostModel], bool], timeout: float) -> None:
        with self.changed:
            assert self.state is not None
            model = self.state.models[HOST]
            if not self.changed.wait_for(lambda: check(model), timeout):
                shown = [(i.name, i.state) for i in model.containers or []]
                pytest.fail(f"never {what}; the list shows {shown}, reports {self.reports[-8:]}")

    def host_status(self, status: Any) -> None:
        pass

    def engine_status(self, host: str, info: Any, error: str | None) -> None:
        pass

    def gpu_sample(self, host: str, sample: Any) -> None:
        pass

    def gpu_stream_state(self, host: str, state: Any, detail: str) -> None:
        pass

    def containers(self, host: str, infos: list[ContainerInfo] | None, error: str | None) -> None:
        self._apply(
            "list" if infos is not None else "error",
            lambda s: s.apply_containers(host, infos, error),
        )

    def container_change(self, host: str, change: Any) -> None:
        if isinstance(change, ContainersStale):
            self.stale_seen = True
        self._apply(type(change).__name__, lambda s: s.apply_container_change(host, change))

    def loop_failed(self, name: str, error: Exception) -> None:
        self._apply("failed", lambda s: None)


def state_of(model: HostModel, name: str) -> str | None:
    return next((i.state for i in model.containers or [] if i.name == name), None)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_dial_stdio(sshd_pid: int) -> int:
    """Kill the host-side ``docker system dial-stdio`` processes of this sshd's sessions."""
    killed = 0
    for pid in descendants(sshd_pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if argv[:3] == [b"docker", b"system", b"dial-stdio"]:
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


@pytest.fixture
def watched(
    testbed: Any, extra_sshd: Any, isolated_home: Path
) -> Iterator[tuple[FleetState, ApplyingSink]]:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text(extra_sshd.known_hosts_line() + "\n")
    Inventory.load().add(bed_host(testbed, extra_sshd.port, str(extra_sshd.client_key), name=HOST))
    sink = ApplyingSink()
    state = FleetState(sink, lambda cb: Fleet.build(Inventory.load(), cb), connect=False)
    sink.state = state
    connect_blocking(state.service(HOST).conn)
    try:
        yield state, sink
    finally:
        state.shutdown()


@pytest.fixture
def container(testbed: Any, docker_client: Any) -> Iterator[Any]:
    name = f"gdt-watch-{uuid.uuid4().hex[:8]}"
    created = docker_client.containers.create(
        testbed.base_image, ["sleep", "600"], name=name, labels={"io.gpudesk.flavour": "ssh"}
    )
    try:
        yield created
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            created.remove(force=True)


def test_the_list_recovers_after_the_event_channel_drops_and_shows_a_container_stopped_meanwhile(
    watched: tuple[FleetState, ApplyingSink], container: Any, extra_sshd: Any
) -> None:
    state, sink = watched
    name = container.name
    container.start()
    started = time.monotonic()
    state.start_container_watch(HOST)
    sink.wait_for(f"listed {name} running", lambda m: state_of(m, name) == "running", 60)
    # A generous bound for what follows, from how long the first listing took here.
    bound = max(30.0, 20 * (time.monotonic() - started))

    assert kill_dial_stdio(extra_sshd.pid) >= 1
    container.stop(timeout=0)  # its events go nowhere: the stream is gone

    sink.wait_for("said the list is stale", lambda m: sink.stale_seen, bound)
    sink.wait_for(f"showed {name} exited", lambda m: state_of(m, name) == "exited", bound)
    model = state.models[HOST]
    assert model.containers_stale is None  # relisted: live again

    # And it is live again: a start after the recovery shows up without another fault.
    container.start()
    sink.wait_for(f"showed {name} running again", lambda m: state_of(m, name) == "running", bound)

    # Leaving the host ends its watch and the thread reading the events over SSH.
    state.remove_host(HOST)
    for thread in [t for t in threading.enumerate() if t.name.startswith("gpudesk-container")]:
        thread.join(bound)
        assert not thread.is_alive(), thread.name


def restart_dockerd(bound: float) -> None:
    """Stop the test bed's dockerd (its containers stop with it) and start it again, once the
    work started early in the background (the README install's container) has ended."""
    early.settle()
    pid = testbed_module._read_pid(testbed_module.RUN_DIR / "docker" / "docker.pid")
    assert pid, "the test bed's dockerd has no pid file"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + bound
    while testbed_module._pid_alive(pid):
        assert time.monotonic() < deadline, "dockerd did not stop"
        time.sleep(0.1)
    testbed_module.start_docker()


@pytest.mark.slow
@pytest.mark.restarts_dockerd
def test_the_list_recovers_after_dockerd_restarts(
    watched: tuple[FleetState, ApplyingSink], testbed: Any, docker_client: Any
) -> None:
    state, sink = watched
    name = f"gdt-watch-{uuid.uuid4().hex[:8]}"
    # Exits at once on SIGTERM, so dockerd's shutdown does not wait out its stop timeout.
    script = "trap 'exit 0' TERM; sleep 600 & wait"
    created = docker_client.containers.create(
        testbed.base_image, ["sh", "-c", script], name=name, labels={"io.gpudesk.flavour": "ssh"}
    )
    try:
        created.start()
        started = time.monotonic()
        state.start_container_watch(HOST)
        sink.wait_for(f"listed {name} running", lambda m: state_of(m, name) == "running", 60)
        bound = max(60.0, 20 * (time.monotonic() - started))

        restart_dockerd(bound)

        sink.wait_for("said the list is stale", lambda m: sink.stale_seen, bound)
        sink.wait_for(
            f"relisted with {name} exited",
            lambda m: m.containers_stale is None and state_of(m, name) == "exited",
            bound,
        )
        docker_client.containers.get(name).start()
        sink.wait_for(
            f"showed {name} running again", lambda m: state_of(m, name) == "running", bound
        )
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)
