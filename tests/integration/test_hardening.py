"""Issue 11's attacks on the real test bed: a container's hostile run folder, workspaces gpudesk
must not hand over, and host keys and files gpudesk keeps.

The test bed's host is this machine (sshd and dockerd on loopback, SSH user root), so what a
container would write into its workspace is written here directly into the host folder, and
the host's processes are this machine's.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core.config import Inventory
from gpudesk.core.flavours import Flavour, GpudeskLabels
from tests.integration.bed import bed_host
from tests.integration.interrupt import interruptible

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=timeout
    )


def shadow_lines() -> list[str]:
    """The host's /etc/shadow lines with a hash or lock field: what must never be printed."""
    return [line for line in Path("/etc/shadow").read_text().splitlines() if line.strip()]


@pytest.fixture
def bed(testbed: Any, known_hosts_file: Path) -> str:
    Inventory.load().add(bed_host(testbed))
    return "bed"


@pytest.fixture
def hostile_workspace(bed: str, testbed: Any, docker_client: Any, tmp_path: Path) -> Iterator[Path]:
    """A gpudesk container (created, never started: its runs are listed all the same) whose
    workspace holds one run folder the test fills with what a hostile container would write."""
    workspace = tmp_path / f"ws-{uuid.uuid4().hex[:8]}"
    (workspace / "runs" / "evil").mkdir(parents=True)
    (workspace / "runs" / "evil" / "run.json").write_text(
        json.dumps({"name": "evil", "container": "", "started": time.time()})
    )
    name = f"hardtest-{uuid.uuid4().hex[:8]}"
    labels = GpudeskLabels(Flavour.SSH, "test", str(workspace), "dev").to_labels()
    container = docker_client.containers.create(
        testbed.base_image, command="true", name=name, labels=labels
    )
    yield workspace / "runs" / "evil"
    container.remove(force=True)


def readers_of(workspace: Path) -> list[int]:
    """The host's `python3 -` run readers working on this test's workspace."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        is_reader = len(argv) > 2 and os.path.basename(argv[0]).startswith(b"python3")
        if is_reader and argv[1] == b"-" and str(workspace).encode() in argv[2]:
            pids.append(int(entry.name))
    return pids


def test_a_log_symlinked_to_shadow_or_dev_zero_is_refused(hostile_workspace: Path) -> None:
    log = hostile_workspace / "train.log"
    for target in ("/etc/shadow", "/dev/zero"):
        log.unlink(missing_ok=True)
        log.symlink_to(target)
        done = cli("logs", "evil", "--host", "bed", "-n", "2", timeout=120)
        assert done.returncode != 0
        assert "not a regular file" in done.stderr and "Traceback" not in done.stderr
        printed = done.stdout + done.stderr
        assert not any(line in printed for line in shadow_lines())
    # The same file as a regular file is shown, as `tail -n 2` shows it.
    log.unlink()
    log.write_text("".join(f"step {i}\n" for i in range(50)))
    done = cli("logs", "evil", "--host", "bed", "-n", "2", timeout=120)
    assert done.returncode == 0, done.stderr
    tail = subprocess.run(["tail", "-n", "2", str(log)], capture_output=True, text=True)
    assert done.stdout == tail.stdout


def test_a_fifo_as_metrics_neither_hangs_runs_nor_leaves_a_reader(
    hostile_workspace: Path,
) -> None:
    os.mkfifo(hostile_workspace / "metrics.jsonl")
    (hostile_workspace / "pid").symlink_to("/dev/zero")
    (hostile_workspace / "exit_code").symlink_to("/etc/shadow")
    done = cli("runs", "--host", "bed", "--json", timeout=120)
    # Before: the reader blocked on the FIFO until gpudesk gave up after 60 s (exit 1) and the
    # host kept the blocked `python3 -` for good.
    assert done.returncode == 0, done.stderr
    runs = json.loads(done.stdout)["runs"]
    evil = next(r for r in runs if r["name"] == "evil")
    assert evil["exit_code"] is None and evil["pid"] is None
    assert readers_of(hostile_workspace.parent.parent) == []


def test_following_a_log_ends_its_host_reader_when_gpudesk_goes(hostile_workspace: Path) -> None:
    log = hostile_workspace / "train.log"
    log.write_text("first line\n")
    follow = subprocess.Popen(
        interruptible(
            [sys.executable, "-m", "gpudesk", "logs", "evil", "--host", "bed", "-f", "-n", "5"]
        ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first line\n"
        with log.open("a") as f:
            f.write("appended\n")
        assert follow.stdout.readline() == "appended\n"
        (reader,) = readers_of(hostile_workspace.parent.parent)
        gone = os.pidfd_open(reader)
        follow.send_signal(signal.SIGINT)
        assert follow.wait(60) == 130
    finally:
        follow.kill()
        follow.wait()
    # The reader notices its channel closed within its poll interval; 60 s is only the outer
    # bound for a busy machine. select() wakes the moment the process exits.
    try:
        ready, _, _ = select.select([gone], [], [], 60)
        assert ready, "the host's log reader outlived the operator's gpudesk"
    finally:
        os.close(gone)
    # And a log that is swapped for a symlink while followed is dropped, not followed.
    follow = subprocess.Popen(
        [sys.executable, "-m", "gpudesk", "logs", "evil", "--host", "bed", "-f", "-n", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "appended\n"
        log.unlink()
        log.symlink_to("/etc/shadow")
        out, err = follow.communicate(timeout=120)
    finally:
        follow.kill()
        follow.wait()
    assert follow.returncode != 0 and "regular file" in err
    assert not any(line in out + err for line in shadow_lines())


# ---------------------------------------------------------------------- workspaces


@pytest.fixture
def operator_key(isolated_home: Path) -> Path:
    key = isolated_home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture
def hardtest_containers(docker_client: Any) -> Iterator[None]:
    yield
    for container in docker_client.containers.list(all=True, filters={"name": "hardtest-"}):
        container.remove(force=True)


def launch(testbed: Any, name: str, workspace: str) -> subprocess.CompletedProcess[str]:
    return cli("launch", "ssh", "--host", "bed", "--name", name, "--base-image",
               testbed.base_image, "--workspace", workspace)  # fmt: skip


def test_workspaces_gpudesk_must_not_hand_over_are_refused(  # noqa: PLR0917 - fixtures
    bed: str,
    testbed: Any,
    operator_key: Path,
    hardtest_containers: None,
    docker_client: Any,
    tmp_path: Path,
) -> None:
    root_owned = tmp_path / "root-owned"
    root_owned.mkdir()
    (tmp_path / "to-etc").symlink_to("/etc")
    marker = f"gpudesk-hardtest-{uuid.uuid4().hex[:8]}"
    home_owner = os.stat("/root").st_uid
    cases = {
        str(root_owned): "belongs to root",
        f"~/../var/tmp/{marker}": "'..'",
        "~": "home folder",
        f"/etc/{marker}": "system folder",
        "/": "whole GPU host shares",
        f"{tmp_path}/to-etc/{marker}": "system folder",  # a symlink on the way to /etc
    }
    for workspace, why in cases.items():
        done = launch(testbed, "hardtest-ws", workspace)
        assert done.returncode != 0, workspace
        # Progress lines, then one sentence saying why; no traceback.
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("gpudesk: ") and why in last, (workspace, done.stderr)
        assert "Traceback" not in done.stderr
    assert root_owned.stat().st_uid == 0
    assert os.stat("/root").st_uid == home_owner
    assert not Path(f"/etc/{marker}").exists() and not Path(f"/var/tmp/{marker}").exists()
    assert docker_client.containers.list(all=True, filters={"name": "hardtest-ws"}) == []


def test_a_new_workspace_is_made_for_the_container_user_and_the_image_never_chowns(  # noqa: PLR0917
    bed: str,
    testbed: Any,
    operator_key: Path,
    hardtest_containers: None,
    docker_client: Any,
    tmp_path: Path,
) -> None:
    from gpudesk.core.containers import Containers, LaunchSpec

    fresh = tmp_path / "fresh" / "ws"
    done = launch(testbed, "hardtest-new", str(fresh))
    assert done.returncode == 0, done.stderr
    assert fresh.stat().st_uid == 1000 and fresh.parent.stat().st_uid == 0
    # Even when something else mounts a root-owned folder, the image leaves its owner alone
    # (before: its entrypoint chowned any root-owned /workspace to uid 1000).
    plain = tmp_path / "plain"
    Containers(docker_client).launch(
        LaunchSpec(
            flavour=Flavour.SSH,
            name="hardtest-plain",
            workspace=str(plain),
            public_key=operator_key.with_suffix(".pub").read_text(),
            base_image=testbed.base_image,
        ),
        lambda path: Path(path).mkdir(parents=True, exist_ok=True),
    )
    assert plain.stat().st_uid == 0


# ---------------------------------------------------------------------- host keys and modes


def test_a_trusted_key_is_shown_kept_only_after_login_and_gpudesk_home_is_private(
    testbed: Any, isolated_home: Path, tmp_path: Path
) -> None:
    gpudesk_home = Path(os.environ["GPUDESK_HOME"])
    assert not gpudesk_home.exists()
    dest = f"ssh://root@127.0.0.1:{testbed.ssh_port}"
    known_name = f"[127.0.0.1]:{testbed.ssh_port}"
    # The fingerprint as OpenSSH computes it from the test sshd's public key.
    line_file = tmp_path / "host_key_line"
    line_file.write_text(testbed.ssh_known_hosts_line + "\n")
    reference = subprocess.run(
        ["ssh-keygen", "-lf", str(line_file)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert reference.startswith("SHA256:")

    # A key nobody authorized: the host key is accepted, then login fails; nothing is kept.
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
                   check=True)  # fmt: skip
    failed = cli("hosts", "add", "bed", dest, "--identity", str(stranger), "--accept-new-host-key")
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    known = gpudesk_home / "known_hosts"
    assert not known.exists() or known_name not in known.read_text()
    assert "bed" not in cli("hosts", "ls").stdout

    added = cli("hosts", "add", "bed", dest, "--identity", testbed.ssh_client_key,
                "--accept-new-host-key")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert f"Trusted the new host key of {known_name}: ED25519 key fingerprint is {reference}" in (
        added.stderr
    )
    assert known_name in known.read_text()
    # Known now: nothing more is trusted, so nothing is said.
    again = cli("hosts", "check", "bed", "--accept-new-host-key")
    assert again.returncode == 0, again.stderr
    assert "Trusted" not in again.stderr

    # Everything gpudesk made under its home (and the home itself) is this user's only.
    cli("ps", "--host", "bed")  # writes state (completion names)
    assert gpudesk_home.stat().st_mode & 0o777 == 0o700
    for path in gpudesk_home.rglob("*"):
        want = 0o700 if path.is_dir() else 0o600
        assert path.stat().st_mode & 0o777 == want, path
