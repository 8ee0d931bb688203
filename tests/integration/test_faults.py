"""The fault suite: faults on the real test bed end in a true, visible state with nothing lost.

gpudesk itself killed (SIGKILL) or interrupted (SIGINT) at several points of `submit`; the SSH
connection dropped under `logs -f` and under `runs`; a run's container stopped under it; a
forwarded container restarted (its published port moves) or replaced by another of the same
name. Faults that kill sshd use a test-own extra sshd, never the shared one; the shared dockerd
is never restarted (other sessions use it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Inventory
from gpudesk.core.containers import Containers, LaunchSpec
from gpudesk.core.devcontainers import DevContainers
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import HostService
from gpudesk.core.runs import CHECK_ARGS_ENV, RUNS_DIR, RunSpec, RunState, get_run, submit
from tests.integration.bed import bed_host
from tests.integration.interrupt import interruptible
from tests.integration.pace import Pace
from tests.integration.test_runs import (  # noqa: F401 - fixtures
    bed,
    torch_container,
    wait_for_run,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
# Long enough to be running when the test looks, and stopped by the test.
LONG = ("--steps", "100000", "--log-every", "1", "--eval-every", "100000", "--batch-size", "4")


def gpudesk(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "gpudesk"), *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def start_gpudesk(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        interruptible([str(BIN / "gpudesk"), *argv]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def workspace_of(docker_client: Any, container: str) -> Path:
    attrs = docker_client.containers.get(container).attrs
    (source,) = (m["Source"] for m in attrs["Mounts"] if m["Destination"] == "/workspace")
    return Path(source)


def wait_until(what: str, ready: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll ``ready`` (a file, a process: nothing to wait on) while gpudesk keeps making
    progress; fails if gpudesk ended first or nothing moved for the pace's stall limit."""
    pace = Pace()
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"gpudesk ended before {what}: {proc.communicate()}")
        pace.saw(None)
        assert not pace.stalled(), f"never saw {what}: {pace.describe()}"
        time.sleep(0.005)


def argument_check_running() -> bool:
    """A process started by submit's dry argument check (the host sees container processes)."""
    marker = f"{CHECK_ARGS_ENV}=1".encode()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    return True
    return False


def runs_json(host: str) -> tuple[int, dict[str, Any]]:
    done = gpudesk("runs", "--host", host, "--json")
    return done.returncode, json.loads(done.stdout or "{}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
@pytest.mark.parametrize("point", ["argument-check", "run-folder", "pid"])
def test_submit_interrupted_at_each_point_leaves_nothing_or_a_listed_run(
    bed: HostService,  # noqa: F811 - fixture
    torch_container: str,  # noqa: F811 - fixture
    docker_client: Any,
    point: str,
    sig: signal.Signals,
) -> None:
    name = f"cut-{point}-{sig.name.lower()}"
    runs = workspace_of(docker_client, torch_container) / "runs"
    folder = runs / name
    proc = start_gpudesk(
        "submit", "--host", "bed", "--container", torch_container, "--name", name, "textcls",
        "--", *LONG,
    )  # fmt: skip
    ready = {
        "argument-check": argument_check_running,
        "run-folder": folder.exists,
        "pid": (folder / "pid").exists,
    }[point]
    wait_until(point, ready, proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)

    if sig is signal.SIGINT:
        assert proc.returncode == 130, (out, err)
        assert err.count("\n") == 1 and err.startswith("gpudesk: interrupted: "), err
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL

    # Every folder is a whole run; nothing half made blocks a name.
    for made in runs.iterdir() if runs.exists() else []:
        assert (made / "run.json").is_file(), f"{made} has no run.json"
    if point == "argument-check":
        # Nothing was started, and the name is free.
        assert not folder.exists()
        if sig is signal.SIGINT:
            assert err == "gpudesk: interrupted: nothing was started.\n"
        return
    # The run exists: listed, in a true state (it runs, as its process does), and stoppable.
    assert folder.exists()
    run = wait_for_run(bed, name, lambda r: r.state is not RunState.STARTING)
    assert run.state is RunState.RUNNING, (run.state_text, run.log_tail)
    if sig is signal.SIGINT:
        assert f"run {name} is " in err and f"gpudesk stop-run {name} --host bed" in err, err
    code, listed = runs_json("bed")
    assert code == 0 and name in {r["name"] for r in listed["runs"]}
    stopped = gpudesk("stop-run", name, "--host", "bed", "--grace", "30")
    assert stopped.returncode == 0, stopped.stderr
    assert get_run(bed, name).state is RunState.STOPPED


@pytest.fixture
def bed2(testbed: Any, extra_sshd: Any, known_hosts_file: Path) -> Iterator[Any]:
    """Host `bed2`: the same dockerd through an sshd of this test's own, safe to kill."""
    with known_hosts_file.open("a") as f:
        f.write(extra_sshd.known_hosts_line() + "\n")
    Inventory.load().add(bed_host(testbed, extra_sshd.port, str(extra_sshd.client_key), "bed2"))
    yield extra_sshd


def read_lines(stream: Any, into: list[str], seen: threading.Event) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))
        seen.set()


def test_logs_follow_says_when_the_connection_is_lost_and_nothing_shown_is_wrong(
    bed: HostService,  # noqa: F811 - fixture
    torch_container: str,  # noqa: F811 - fixture
    bed2: Any,
) -> None:
    name = "cut-follow"
    submit(bed, torch_container, RunSpec("textcls", LONG, name=name))
    proc = start_gpudesk("logs", name, "-f", "-n", "100000", "--host", "bed2")
    shown: list[str] = []
    seen = threading.Event()
    reader = threading.Thread(target=read_lines, args=(proc.stdout, shown, seen), daemon=True)
    reader.start()
    try:
        pace = Pace()
        while len(shown) < 5:  # a few training lines arrived through bed2
            seen.wait(1.0)
            seen.clear()
            pace.saw(len(shown))
            assert proc.poll() is None and not pace.stalled(), (pace.describe(), shown)
        bed2.stop()  # sshd and its sessions die, as a host going down would
        code = proc.wait(timeout=60)
        reader.join(10)
        err = proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1, err
    assert err.count("\n") == 1 and "Lost the connection to bed2" in err, err
    assert f"gpudesk logs {name} -f --host bed2" in err

    # sshd back: a plain `runs` reads the host again; what was shown is the log's first lines,
    # in order, none doubled (the whole log read afresh is the reference).
    bed2.start()
    full = gpudesk("logs", name, "-n", "10000000", "--host", "bed2")
    assert full.returncode == 0, full.stderr
    lines = full.stdout.splitlines()
    assert shown == lines[: len(shown)]
    assert gpudesk("stop-run", name, "--host", "bed", "--grace", "30").returncode == 0


def test_runs_during_an_outage_says_the_host_is_down_and_exits_1(
    bed: HostService,  # noqa: F811 - fixture
    torch_container: str,  # noqa: F811 - fixture
    bed2: Any,
) -> None:
    code, listed = runs_json("bed2")
    assert code == 0 and listed["errors"] == []
    bed2.stop()
    down = gpudesk("runs", "--host", "bed2")
    assert down.returncode == 1
    assert down.stderr.count("\n") == 1 and down.stderr.startswith("gpudesk: bed2: ")
    assert "python3" not in down.stderr
    both = gpudesk("runs", "--json")
    doc = json.loads(both.stdout)
    assert both.returncode == 1 and "bed2" in {e["host"] for e in doc["errors"]}
    bed2.start()
    code, listed = runs_json("bed2")
    assert code == 0 and listed["errors"] == []


def test_a_run_whose_container_stops_is_lost_not_running(
    bed: HostService,  # noqa: F811 - fixture
    torch_container: str,  # noqa: F811 - fixture
    docker_client: Any,
) -> None:
    name = "cut-container"
    submit(bed, torch_container, RunSpec("textcls", LONG, name=name))
    wait_for_run(bed, name, lambda r: (r.metrics.step or 0) > 0)
    container = docker_client.containers.get(torch_container)
    container.stop(timeout=1)
    try:
        assert get_run(bed, name).state is RunState.LOST
        listed = gpudesk("runs", "--host", "bed")
        assert listed.returncode == 0
        (row,) = [line for line in listed.stdout.splitlines() if line.split()[:1] == [name]]
        assert " lost " in f" {row} "
    finally:
        container.start()
    # Back up: the container runs again, but the run's process did not come back with it.
    run = get_run(bed, name)
    assert run.state is RunState.LOST
    refused = gpudesk("stop-run", name, "--host", "bed")
    assert refused.returncode == 1 and "already ended (lost)" in refused.stderr


def banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.settimeout(10)
        try:
            return conn.recv(64)
        except (ConnectionResetError, TimeoutError):
            return b""


def test_a_forward_follows_a_restarted_container_and_refuses_a_new_one_of_that_name(
    testbed: Any,
    bed: HostService,  # noqa: F811 - fixture
    docker_client: Any,
    tmp_path: Path,
) -> None:
    name = "cut-forward"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)

    def launch() -> None:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)
        Containers(docker_client).launch(
            LaunchSpec(
                flavour=Flavour.SSH,
                name=name,
                workspace=str(tmp_path / "ws"),
                public_key=key.with_suffix(".pub").read_text(),
                base_image=testbed.base_image,
            ),
            lambda path: Path(path).mkdir(parents=True, exist_ok=True),
        )

    def published() -> str:
        attrs = docker_client.containers.get(name).attrs
        return str(attrs["NetworkSettings"]["Ports"]["22/tcp"][0]["HostPort"])

    launch()
    dev = DevContainers(bed, Inventory.load())
    forward = dev.forward(name, 22)
    errors: list[str] = []
    forward.on_error = errors.append
    try:
        assert banner(forward.local_port).startswith(b"SSH-2.0-"), errors
        before = published()
        dev.act("restart", name)
        assert published() != before  # Docker picked another port
        # The same local port reaches it again once its sshd is up (refusals until then).
        pace = Pace(startup=120)
        while not banner(forward.local_port).startswith(b"SSH-2.0-"):
            pace.saw(len(errors))
            assert not pace.stalled(), (pace.describe(), errors)
            time.sleep(0.2)  # the container's sshd starting; nothing announces it
        assert not any("not the container" in e for e in errors), errors
        launch()  # removed and created again under the same name
        assert banner(forward.local_port) == b""
        assert errors and "not the container this forward was opened for" in errors[-1]
    finally:
        forward.close()
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(name).remove(force=True)


def test_run_folders_and_scripts_are_the_container_users_and_private(
    bed: HostService,  # noqa: F811 - fixture
    torch_container: str,  # noqa: F811 - fixture
    docker_client: Any,
) -> None:
    name = "modes"
    submit(bed, torch_container, RunSpec("textcls", ("--steps", "2"), name=name))
    wait_for_run(bed, name, lambda r: r.state.finished)
    container = docker_client.containers.get(torch_container)
    user = container.attrs["Config"]["Labels"]["io.gpudesk.user"]
    script = (
        f"stat -c '%U %a %n' {RUNS_DIR}/{name} {RUNS_DIR}/{name}/* /workspace/.gpudesk/scripts/*"
        " /workspace/.gpudesk/scripts/*/*.py"
    )
    code, out = container.exec_run(["sh", "-c", script], user="root")
    assert code == 0, out
    rows = [line.split(" ", 2) for line in out.decode().splitlines()]
    assert len(rows) > 5
    for owner, mode, path in rows:
        assert owner == user, (owner, path)
        assert int(mode, 8) & 0o007 == 0, (mode, path)  # nothing for other accounts
        assert mode in ("640", "750"), (mode, path)
