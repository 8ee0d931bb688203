"""The container CLI end to end over real SSH: launch, reach with OpenSSH, Jupyter tunnel, rm."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core import sshconfig
from gpudesk.core.config import Inventory, Paths
from tests.integration.bed import bed_host
from tests.json_contract import validate_text

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def bed(
    testbed: Any, known_hosts_file: Path, isolated_home: Path, docker_client: Any
) -> Iterator[str]:
    """The test bed registered as host `bed`, and an operator key pair in ~/.ssh."""
    key = isolated_home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Inventory.load().add(bed_host(testbed))
    yield "bed"
    for container in docker_client.containers.list(all=True, filters={"name": "clitest-"}):
        container.remove(force=True)


def test_launch_ssh_then_openssh_reaches_it_and_rm_cleans_up(
    bed: str, testbed: Any, isolated_home: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    done = cli("launch", "ssh", "--host", bed, "--name", "clitest-ssh", "--json",
               "--base-image", testbed.base_image, "--workspace", str(workspace))  # fmt: skip
    assert done.returncode == 0, done.stderr
    launched = validate_text("launch", done.stdout)
    assert launched["reach"]["ssh_alias"] == "gpudesk-clitest-ssh"
    assert all(p["host_ip"] == "127.0.0.1" for p in launched["ports"])

    include = cli("ssh-include")
    assert include.returncode == 0
    user_config = isolated_home / ".ssh" / "config"
    assert user_config.read_text().startswith("Include ")
    # OpenSSH reads the passwd home, not $HOME, so name the (isolated) user config explicitly.
    ssh = ["ssh", "-F", str(user_config), "-o", "BatchMode=yes"]
    who = subprocess.run([*ssh, "gpudesk-clitest-ssh", "whoami"], capture_output=True, text=True,
                         timeout=60)  # fmt: skip
    assert who.returncode == 0, who.stderr
    assert who.stdout.strip() == "dev"
    (workspace / "keep.txt").write_text("precious")

    ps = cli("ps", "--host", bed, "--json")
    assert ps.returncode == 0, ps.stderr
    assert [r["name"] for r in validate_text("ps", ps.stdout)["containers"]] == ["clitest-ssh"]

    rm = cli("rm", "clitest-ssh", "--host", bed)
    assert rm.returncode == 0, rm.stderr
    assert "is kept" in rm.stdout
    assert (workspace / "keep.txt").read_text() == "precious"
    assert sshconfig.entries(Paths.from_env().home) == []
    gone = subprocess.run([*ssh, "gpudesk-clitest-ssh", "true"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert gone.returncode != 0


def test_restart_moves_the_port_and_ssh_still_works(bed: str, testbed: Any) -> None:
    done = cli("launch", "ssh", "--host", bed, "--name", "clitest-rs", "--json",
               "--base-image", testbed.base_image)  # fmt: skip
    assert done.returncode == 0, done.stderr
    before = sshconfig.entries(Paths.from_env().home)[0].port
    assert cli("restart", "clitest-rs").returncode == 0
    after = sshconfig.entries(Paths.from_env().home)[0].port
    assert after != before
    config = str(sshconfig.config_path(Paths.from_env().home))
    probe = subprocess.run(
        ["ssh", "-F", config, "-o", "BatchMode=yes", "-o", "ConnectionAttempts=5",
         "gpudesk-clitest-rs", "echo", "ok"], capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert probe.stdout.strip() == "ok", probe.stderr


def test_jupyter_through_the_forward(bed: str, testbed: Any) -> None:
    done = cli("launch", "jupyter", "--host", bed, "--name", "clitest-jup", "--json",
               "--base-image", testbed.base_image)  # fmt: skip
    assert done.returncode == 0, done.stderr
    validate_text("launch", done.stdout)
    reach = json.loads(done.stdout)["reach"]
    # Both URLs, named for where they work: the host's loopback, and here through the forward.
    assert reach["url_on_host"].startswith(
        f"http://127.0.0.1:{json.loads(done.stdout)['host_port']}/"
    )
    assert reach["forward_command"] == f"gpudesk jupyter clitest-jup --host {bed}"
    assert reach["url_here"] != reach["url_on_host"]
    forward = subprocess.Popen(
        [sys.executable, "-m", "gpudesk", "jupyter", "clitest-jup", "--host", bed],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        url = forward.stdout.readline().strip()
        # The forward listens on the local port the launch announced.
        assert url == reach["url_here"]
        base, token = url.split("/lab?token=")
        request = urllib.request.Request(
            f"{base}/api/status", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=20) as answer:
            assert answer.status == 200
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(f"{base}/api/status", timeout=20)
        assert denied.value.code == 403
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_gpus_on_a_host_without_nvidia_runtime_is_refused_and_creates_nothing(
    bed: str, testbed: Any, docker_client: Any
) -> None:
    done = cli("launch", "ssh", "--host", bed, "--name", "clitest-gpu", "--gpus", "all",
               "--base-image", testbed.base_image)  # fmt: skip
    assert done.returncode == 1
    assert "no NVIDIA runtime" in done.stderr and "CPU-only" in done.stderr
    assert "Traceback" not in done.stderr
    assert docker_client.containers.list(all=True, filters={"name": "clitest-gpu"}) == []
    assert sshconfig.entries(Paths.from_env().home) == []


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=20) as answer:
        return str(answer.read().decode())


def _serve(docker_client: Any, name: str, marker: str) -> None:
    container = docker_client.containers.get(name)
    container.exec_run(["sh", "-c", f"mkdir -p /srv/{marker} && cd /srv && "
                        "exec python3 -m http.server 6006 --bind 0.0.0.0"], detach=True)  # fmt: skip


def test_forward_any_port_follows_the_container_across_a_restart(
    bed: str, testbed: Any, docker_client: Any
) -> None:
    done = cli("launch", "ssh", "--host", bed, "--name", "clitest-fwd",
               "--base-image", testbed.base_image)  # fmt: skip
    assert done.returncode == 0, done.stderr
    _serve(docker_client, "clitest-fwd", "before")
    forward = subprocess.Popen(
        [sys.executable, "-m", "gpudesk", "forward", "clitest-fwd", "6006"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert forward.stdout is not None
        url = forward.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), forward.stderr
        # The server inside may still be starting; the forward itself is up.
        for _ in range(50):
            try:
                assert "before/" in _get(url)
                break
            except (urllib.error.URLError, ConnectionError):
                threading.Event().wait(0.2)
        else:
            pytest.fail("the server in the container never answered through the forward")
        assert cli("restart", "clitest-fwd").returncode == 0
        _serve(docker_client, "clitest-fwd", "after")
        for _ in range(50):
            try:
                assert "after/" in _get(url)
                break
            except (urllib.error.URLError, ConnectionError):
                threading.Event().wait(0.2)
        else:
            pytest.fail("the forward did not follow the restarted container")
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    # The same local port is taken again next time.
    again = subprocess.Popen(
        [sys.executable, "-m", "gpudesk", "forward", "clitest-fwd", "6006"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert again.stdout is not None
        assert again.stdout.readline().strip() == url
    finally:
        again.terminate()
        again.wait(timeout=10)
