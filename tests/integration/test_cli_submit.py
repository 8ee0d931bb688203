"""The README's submit line, as written, on the test bed; and the --json contract on real hosts.

Host `gpu1` is the test bed's sshd and `dev1` a CPU-torch dev container on it, so the README's
line runs through the `gpudesk` console script and a shell exactly as a user types it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Host, Inventory
from gpudesk.core.containers import Containers, LaunchSpec
from gpudesk.core.containers.workspace import prepare_workspace
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.local import LocalConnection
from gpudesk.core.runs import RunState
from tests.integration.bed import bed_host
from tests.integration.test_runs import ensure_torch_image, wait_for_run
from tests.json_contract import validate_text

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # where the `gpudesk` console script is installed


def readme_line(start: str) -> str:
    """The README's command line that begins with ``start``, without its trailing comment."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(start):
            return line.split("  #", 1)[0].strip()
    raise AssertionError(f"the README has no line starting {start!r}")


def shell(line: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``line`` run by sh, with this environment's `gpudesk` first on PATH."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", "-c", line], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.fixture
def gpu1_dev1(
    testbed: Any, docker_client: Any, known_hosts_file: Path, tmp_path: Path
) -> Iterator[HostService]:
    """Host gpu1 (the test bed) in the inventory, with a running torch container dev1 on it."""
    Inventory.load().add(bed_host(testbed, name="gpu1"))
    image = ensure_torch_image(docker_client, testbed.base_image)
    with contextlib.suppress(docker.errors.NotFound):  # left over by an interrupted run
        docker_client.containers.get("dev1").remove(force=True)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Containers(docker_client).launch(
        LaunchSpec(
            flavour=Flavour.SSH,
            name="dev1",
            workspace=str(tmp_path / "dev1"),
            public_key=key.with_suffix(".pub").read_text(),
            base_image=image,
        ),
        lambda path: prepare_workspace(LocalConnection().exec, path),
    )
    fleet = Fleet.build(Inventory.load())
    service = fleet.get("gpu1")
    connect_blocking(service.conn)
    try:
        yield service
    finally:
        fleet.close()
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get("dev1").remove(force=True)


def test_the_readme_submit_line_runs_to_success_and_a_typo_starts_nothing(
    gpu1_dev1: HostService, tmp_path: Path
) -> None:
    line = readme_line("gpudesk submit ")
    argv = shlex.split(line)
    assert argv[argv.index("--host") + 1] == "gpu1" and "--" in argv
    name = argv[argv.index("--name") + 1]

    # A typo in the script's arguments: refused before anything starts, in one line.
    typo = line.replace("--steps", "--stpes").replace(f"--name {name}", "--name typo1")
    assert typo != line
    refused = shell(typo)
    assert refused.returncode == 1, refused.stdout
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert "unrecognized arguments: --stpes" in refused.stderr
    assert "nothing was started" in refused.stderr

    started = time.monotonic()
    done = shell(line)
    submit_s = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"submitted {name} on gpu1/dev1 (pid ")
    print(f"README submit line took {submit_s:.1f} s (includes the in-container dry parse)")

    run = wait_for_run(gpu1_dev1, name, lambda r: r.state.finished)
    assert run.state is RunState.SUCCEEDED, run.log_tail
    steps = int(argv[argv.index("--steps") + 1])
    assert run.metrics.step == steps and run.nproc == 1
    assert run.args == argv[argv.index("--") + 1 :]

    listed = shell("gpudesk runs --host gpu1 --json")
    assert listed.returncode == 0, listed.stderr
    runs = {r["name"]: r for r in validate_text("runs", listed.stdout)["runs"]}
    assert set(runs) == {name}  # the refused typo1 left no run folder
    assert runs[name]["state"] == "succeeded" and runs[name]["ended"] >= runs[name]["started"]


def test_json_of_real_hosts_follows_the_contract(
    gpu1_dev1: HostService, monkeypatch: pytest.MonkeyPatch
) -> None:
    ps = shell("gpudesk ps --host gpu1 --json")
    assert ps.returncode == 0, ps.stderr
    doc = validate_text("ps", ps.stdout)
    (dev1,) = (c for c in doc["containers"] if c["name"] == "dev1")
    assert dev1["state"] == "running" and dev1["uptime_s"] >= 0 and dev1["gpus"] is None
    assert dev1["started_at"] >= dev1["created"] and doc["errors"] == []

    check = shell("gpudesk hosts check gpu1 --json")
    assert check.returncode == 0, check.stderr
    (row,) = validate_text("hosts check", check.stdout)["hosts"]
    assert row["state"] == "connected" and row["docker"] and row["error"] is None

    # Simulated GPUs fill every GPU and process field the contract documents.
    monkeypatch.setenv("GPUDESK_SIMULATE_GPUS", "2")
    stats = shell("gpudesk stats --host gpu1 --once --json")
    assert stats.returncode == 0, stats.stderr
    (sample,) = validate_text("stats", stats.stdout)
    assert sample["host_name"] == "gpu1" and len(sample["gpus"]) == 2 and sample["simulated"]

    # One host down among good ones: the good host's answer, an error entry, exit 1.
    # (Port 1 on loopback is closed: refused at once.)
    Inventory.load().add(Host(name="dead", hostname="127.0.0.1", user="root", port=1))
    both = shell("gpudesk ps --json")
    assert both.returncode == 1
    doc = validate_text("ps", both.stdout)
    assert ("gpu1", "dev1") in {(c["host"], c["name"]) for c in doc["containers"]}
    assert "dead" in {e["host"] for e in doc["errors"]}
