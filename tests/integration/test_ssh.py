"""Connections against the real test bed sshd (and dockerd behind it)."""

from __future__ import annotations

import asyncio
import json
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core.config import Host, Inventory, Paths
from gpudesk.core.engine import engine_info, ssh_client
from gpudesk.core.ssh import (
    AuthFailed,
    ConnState,
    ConnStatus,
    HostKeyChanged,
    HostKeyUnknown,
    SshConnection,
    Unreachable,
)
from tests.integration.bed import bed_host


def gpudesk_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=60
    )


def test_key_auth_then_docker_version_over_the_same_connection(
    testbed: Any, known_hosts_file: Path, docker_client: Any
) -> None:
    conn = SshConnection(bed_host(testbed), Paths.from_env())
    conn.connect_once()
    try:
        assert conn.exec("whoami").text().strip() == "root"
        info = engine_info(ssh_client(conn), "bed")
        assert info.version == docker_client.version()["Version"]
        assert conn.probe_latency() is not None
    finally:
        conn.close()


def test_cli_refuses_unknown_host_key_and_accepts_it_with_the_flag(testbed: Any) -> None:
    dest = f"ssh://root@127.0.0.1:{testbed.ssh_port}"
    refused = gpudesk_cli("hosts", "add", "bed", dest, "--identity", testbed.ssh_client_key)
    assert refused.returncode == 1
    assert "is not known" in refused.stderr and "SHA256:" in refused.stderr
    assert "--accept-new-host-key" in refused.stderr
    assert "bed" not in gpudesk_cli("hosts", "ls").stdout

    accepted = gpudesk_cli(
        "hosts", "add", "bed", dest, "--identity", testbed.ssh_client_key, "--accept-new-host-key"
    )
    assert accepted.returncode == 0, accepted.stderr
    known = Paths.from_env().known_hosts.read_text()
    assert testbed.ssh_known_hosts_line.split()[2] in known

    check = gpudesk_cli("hosts", "check", "bed", "--json")
    assert check.returncode == 0, check.stderr
    (row,) = json.loads(check.stdout)["hosts"]
    assert row["state"] == "connected" and row["docker"]


def test_regenerated_host_key_is_refused_as_changed(testbed: Any, extra_sshd: Any) -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text(extra_sshd.known_hosts_line() + "\n")
    host = bed_host(testbed, extra_sshd.port, str(extra_sshd.client_key))
    SshConnection(host, paths).connect_once()

    extra_sshd.stop()
    extra_sshd.prepare(regenerate_host_key=True)
    extra_sshd.start()
    with pytest.raises(HostKeyChanged, match="CHANGED"):
        SshConnection(host, paths).connect_once(accept_new_host_key=True)
    # The flag for new keys never overrides a changed one, and nothing was written.
    assert extra_sshd.host_public_key().split()[1] not in paths.known_hosts.read_text()
    Inventory.load().add(host)
    check = gpudesk_cli("hosts", "check", "bed")
    assert check.returncode == 1 and "host-key-changed" in check.stdout
    assert "someone may be intercepting" in check.stderr


def test_wrong_client_key_gives_auth_failed(
    testbed: Any, known_hosts_file: Path, tmp_path: Path
) -> None:
    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    conn = SshConnection(bed_host(testbed, identity=str(key)), Paths.from_env())
    with pytest.raises(AuthFailed, match="refused every key"):
        conn.connect_once()


def test_closed_port_is_unreachable_within_the_timeout(known_hosts_file: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conn = SshConnection(
        Host(name="x", hostname="127.0.0.1", port=port, user="root"),
        Paths.from_env(),
        connect_timeout=3,
    )
    started = time.monotonic()
    with pytest.raises(Unreachable, match="Connection refused"):
        conn.connect_once()
    assert time.monotonic() - started < 3


def test_silent_port_is_unreachable_after_the_timeout_not_hung(known_hosts_file: Path) -> None:
    # A listener that accepts and never speaks: the banner wait must give up.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        conn = SshConnection(
            Host(name="x", hostname="127.0.0.1", port=server.getsockname()[1], user="root"),
            Paths.from_env(),
            connect_timeout=1.5,
        )
        started = time.monotonic()
        with pytest.raises(Unreachable):
            conn.connect_once()
        assert time.monotonic() - started < 6


def wait_state(
    events: queue.Queue[ConnStatus], state: ConnState, timeout: float = 30
) -> ConnStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if status.state is state:
            return status


def test_sshd_restart_gives_retrying_then_connected_again(testbed: Any, extra_sshd: Any) -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text(extra_sshd.known_hosts_line() + "\n")
    events: queue.Queue[ConnStatus] = queue.Queue()
    conn = SshConnection(
        bed_host(testbed, extra_sshd.port, str(extra_sshd.client_key)),
        paths,
        on_status=events.put,
        probe_interval=0.2,
        max_backoff=1.0,
        connect_timeout=3,
    )
    supervisor = threading.Thread(target=conn.run, daemon=True)
    supervisor.start()
    try:
        assert wait_state(events, ConnState.CONNECTED).latency_ms is not None
        extra_sshd.stop()
        # sshd -D kills its sessions on SIGTERM, so the probe notices the drop.
        retrying = wait_state(events, ConnState.DISCONNECTED_RETRYING)
        assert "reconnecting" in retrying.message or "Cannot reach" in retrying.message
        extra_sshd.start()
        wait_state(events, ConnState.CONNECTED)
        assert conn.exec("echo back").text().strip() == "back"
    finally:
        conn.close()
        supervisor.join(timeout=10)
    assert not supervisor.is_alive()


def test_proxyjump_through_a_direct_tcpip_channel(testbed: Any, extra_sshd: Any) -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text(
        extra_sshd.known_hosts_line() + "\n" + testbed.ssh_known_hosts_line + "\n"
    )
    jump = SshConnection(
        Host(name="jump", hostname="127.0.0.1", user="root", port=extra_sshd.port,
             identity=str(extra_sshd.client_key)),
        paths,
    )  # fmt: skip
    target = SshConnection(bed_host(testbed), paths, jump=jump)
    try:
        target.connect_once()
        assert target.exec("echo $SSH_CONNECTION").text().split()[0] == "127.0.0.1"
        assert jump.connected
    finally:
        target.close()
        jump.close()


def test_unknown_key_during_supervision_waits_for_the_user(testbed: Any) -> None:
    events: queue.Queue[ConnStatus] = queue.Queue()
    conn = SshConnection(bed_host(testbed), Paths.from_env(), on_status=events.put)
    supervisor = threading.Thread(target=conn.run, daemon=True)
    supervisor.start()
    try:
        status = wait_state(events, ConnState.HOST_KEY_UNKNOWN)
        assert status.fingerprint and status.fingerprint.startswith("SHA256:")
        with pytest.raises(HostKeyUnknown):
            SshConnection(bed_host(testbed), Paths.from_env()).connect_once()
        conn.accept_pending_key()
        wait_state(events, ConnState.CONNECTED)
        # Accepted in the dialog, the key was written once the login succeeded: kept for later.
        again = SshConnection(bed_host(testbed), Paths.from_env())
        again.connect_once()
        again.close()
    finally:
        conn.close()
        supervisor.join(timeout=10)


def test_tui_shows_localhost_and_the_test_bed_host_with_a_true_state(
    testbed: Any, known_hosts_file: Path
) -> None:
    from gpudesk.app.app import GpudeskApp
    from gpudesk.app.messages import EngineStatus
    from gpudesk.app.widgets.host_list import HostList

    Inventory.load().add(bed_host(testbed))

    async def scenario() -> None:
        engine_seen = asyncio.Event()

        def hook(message: object) -> None:
            if isinstance(message, EngineStatus) and message.host == "bed" and message.info:
                engine_seen.set()

        app = GpudeskApp()
        async with app.run_test(size=(120, 30), message_hook=hook) as pilot:
            await asyncio.wait_for(engine_seen.wait(), 30)
            await pilot.pause()
            app.screen.flush()  # type: ignore[attr-defined]
            hosts = app.screen.query_one(HostList)
            assert hosts.row_names() == ["localhost", "bed"]
            row = hosts.cells("bed")
            assert row[2] == "connected"
            assert row[4].startswith(bed_docker_version(testbed))
            await pilot.press("q")

    asyncio.run(scenario())


def bed_docker_version(testbed: Any) -> str:
    return subprocess.run(
        ["docker", "-H", testbed.docker_host, "version", "--format", "{{.Server.Version}}"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


def test_accepting_new_keys_covers_the_jump_host_too(testbed: Any, extra_sshd: Any) -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text(testbed.ssh_known_hosts_line + "\n")  # the target only
    jump_host = Host(name="jump", hostname="127.0.0.1", user="root", port=extra_sshd.port,
                     identity=str(extra_sshd.client_key))  # fmt: skip
    target = SshConnection(bed_host(testbed), paths, jump=SshConnection(jump_host, paths))
    with pytest.raises(Unreachable, match="is not known"):
        target.connect_once()
    target.connect_once(accept_new_host_key=True)
    try:
        assert extra_sshd.host_public_key().split()[1] in paths.known_hosts.read_text()
        assert target.exec("true").ok
    finally:
        target.close()
        assert target.jump is not None
        target.jump.close()


def test_a_host_behind_a_jump_host_checks_lists_and_closes_cleanly(
    testbed: Any, known_hosts_file: Path
) -> None:
    """The jump host is in the inventory too: connected in parallel with the host behind it,
    one transport serves both, and closing the fleet never trips over the shared hop."""
    from gpudesk.core.fleet import Fleet

    inventory = Inventory.load()
    inventory.add(bed_host(testbed))
    inventory.add(
        Host(name="behind", hostname="127.0.0.1", user="root", port=testbed.ssh_port,
             identity=testbed.ssh_client_key, jump="bed")
    )  # fmt: skip
    for attempt in range(3):  # the race was between parallel connects: try it more than once
        check = gpudesk_cli("hosts", "check", "--json")
        assert check.returncode == 0 or "localhost" in check.stdout, check.stderr
        rows = {r["name"]: r for r in json.loads(check.stdout)["hosts"]}
        assert rows["bed"]["state"] == "connected", (attempt, rows)
        assert rows["behind"]["state"] == "connected", (attempt, rows)
        assert rows["behind"]["docker"], rows
        assert "unexpected error" not in check.stderr and "Traceback" not in check.stderr
    listed = gpudesk_cli("ps", "--host", "behind")
    assert listed.returncode == 0, listed.stderr
    assert "unexpected error" not in listed.stderr

    fleet = Fleet.build(Inventory.load())
    behind, bed = fleet.get("behind"), fleet.get("bed")
    assert getattr(behind.conn, "jump", None) is bed.conn  # one connection to the jump host
    behind.conn.ensure_connected()
    behind.docker().ping()
    fleet.close()  # must not raise, whatever the order the hosts were added in
    assert not behind.conn.connected and not bed.conn.connected


def test_an_over_long_host_label_ends_in_a_state_with_a_reason(known_hosts_file: Path) -> None:
    """A DNS label over 63 characters made the IDNA codec raise outside the caught errors,
    and the TUI showed the host as connecting forever."""
    host = Host(name="long", hostname="a" * 64 + ".example", user="root", port=22)
    with pytest.raises(Unreachable, match="not a valid host name"):
        SshConnection(host, Paths.from_env()).connect_once()
    events: queue.Queue[ConnStatus] = queue.Queue()
    conn = SshConnection(host, Paths.from_env(), on_status=events.put, max_backoff=1.0)
    supervisor = threading.Thread(target=conn.run, daemon=True)
    supervisor.start()
    try:
        status = wait_state(events, ConnState.UNREACHABLE)
        assert "not a valid host name" in status.message
    finally:
        conn.close()
        supervisor.join(timeout=10)


def test_hosts_check_prints_the_gpu_host_checklist(
    testbed: Any, known_hosts_file: Path, docker_client: Any
) -> None:
    Inventory.load().add(bed_host(testbed))
    done = gpudesk_cli("hosts", "check", "bed", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["hosts"]
    checks = {c["key"]: c for c in row["checks"]}
    assert list(checks) == ["driver", "nvidia_runtime", "python3", "disk", "docker"]
    # The test bed has Docker and python3 but neither an NVIDIA driver nor its runtime.
    python3 = subprocess.run(["python3", "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert checks["python3"] == {
        "key": "python3", "ok": True, "detail": f"python3 {python3}", "fix": None
    }  # fmt: skip
    assert (
        checks["docker"]["ok"]
        and docker_client.version()["Version"] in (checks["docker"]["detail"])
    )
    assert not checks["driver"]["ok"] and "nvidia-smi" in checks["driver"]["fix"]
    assert not checks["nvidia_runtime"]["ok"]
    assert "nvidia-ctk runtime configure --runtime=docker" in checks["nvidia_runtime"]["fix"]
    root = docker_client.info()["DockerRootDir"]
    free_gb = shutil.disk_usage(root).free / 1024**3
    shown = float(checks["disk"]["detail"].split()[0])
    assert abs(shown - free_gb) < max(1.0, free_gb * 0.05)
    assert root in checks["disk"]["detail"]

    text = gpudesk_cli("hosts", "check", "bed")
    assert text.returncode == 0, text.stderr
    assert "[missing] driver" in text.stdout and "[ok] python3" in text.stdout
    assert "fix: install the NVIDIA Container Toolkit" in text.stdout
