"""Idle GPUs on the test bed: a real container, a simulated GPU holding its real main process.

The agent runs on the bed over real SSH with ``--simulate 2 --simulate-process nb1@0``: it finds
``nb1``'s main process with ``docker inspect`` and maps it back to ``nb1`` through the host's
``/proc/<pid>/cgroup`` and ``docker inspect``, as it maps a real GPU process. Fake GPU 0 stays at
0 %, so a 2 s window flags the container; stopping it takes the process (and the flag) away. The
README's ``Idle GPUs`` command lines run here as written, through the ``gpudesk`` script.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Inventory
from gpudesk.core.containers import Containers, LaunchSpec
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.gpu.idle import IdlePolicy, IdleTracker
from gpudesk.core.gpu.sample import GpuSample
from tests.integration.bed import bed_host
from tests.integration.pace import Pace
from tests.json_contract import validate_text

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NAME = "nb1"  # the README's example container
README_LINES = [
    "gpudesk ps --idle --host gpu1",
    "gpudesk ps --idle --host gpu1 --for 2s --below 10 --json",
    "GPUDESK_SIMULATE_GPUS=2 GPUDESK_SIMULATE_PROCESSES=nb1@0 gpudesk ps --idle --host gpu1 --for 2s",
]


def readme_lines() -> list[str]:
    """The command lines of the README's Idle GPUs section, without trailing comments."""
    text = (ROOT / "README.md").read_text().split("### Idle GPUs", 1)[1].split("\n### ", 1)[0]
    block = text.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


def shell(line: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["sh", "-c", line], capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PATH": path, **env},
    )  # fmt: skip


@pytest.fixture
def nb1(testbed: Any, docker_client: Any, known_hosts_file: Path, tmp_path: Path) -> Iterator[Any]:
    """Host gpu1 (the bed) in the inventory and a running container nb1 on it."""
    Inventory.load().add(bed_host(testbed, name="gpu1"))
    with contextlib.suppress(docker.errors.NotFound):  # left over by an interrupted run
        docker_client.containers.get(NAME).remove(force=True)
    Containers(docker_client).launch(
        LaunchSpec(
            flavour=Flavour.SSH,
            name=NAME,
            workspace=str(tmp_path / NAME),
            public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdrZ2RrZ2RrZ2RrZ2RrZ2RrZ2RrZ2RrZ2RrZ2Rr x",
            base_image=testbed.base_image,
        ),
        lambda path: Path(path).mkdir(parents=True, exist_ok=True),
    )
    try:
        yield docker_client.containers.get(NAME)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(NAME).remove(force=True)


@pytest.fixture
def gpu1(nb1: Any) -> Iterator[HostService]:
    fleet = Fleet.build(Inventory.load())
    service = fleet.get("gpu1")
    connect_blocking(service.conn)
    try:
        yield service
    finally:
        fleet.close()


def next_sample(samples: queue.Queue[GpuSample], pace: Pace, what: str) -> GpuSample:
    """The stream's next sample; fails when the stream stops moving (no fixed deadline)."""
    try:
        sample = samples.get(timeout=pace.allowance())
    except queue.Empty:
        raise AssertionError(f"waiting for {what}: {pace.describe()}") from None
    pace.saw(sample.seq)
    return sample


def test_the_simulated_gpu_holding_nb1_flags_it_idle_until_it_stops(
    gpu1: HostService, nb1: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUDESK_SIMULATE_PROCESSES", f"{NAME}@0")
    samples: queue.Queue[GpuSample] = queue.Queue()
    tracker = IdleTracker(IdlePolicy(after_s=2.0))
    stream = gpu1.gpu_stream(samples.put, lambda state, detail: None, interval=0.25, simulate=2)
    runner = threading.Thread(target=stream.run, daemon=True)
    runner.start()
    try:
        pace, seen = Pace(), 0
        while not tracker.idle():
            sample = next_sample(samples, pace, "2 s of samples with nb1 idle on GPU 0")
            tracker.add(sample)
            seen += 1
            assert seen < 400, f"100 s of samples and nb1 is not idle: {sample.processes}"
        (idle,) = tracker.idle()
        on_gpu0 = [p for p in sample.processes if p.gpu == 0]
        assert len(on_gpu0) == 1 and sample.simulated
        # The mapping is the agent's own: nb1's real main process, its real id and name.
        assert on_gpu0[0].pid == nb1.attrs["State"]["Pid"]
        assert (idle.name, idle.container_id, idle.gpus) == (NAME, nb1.id, (0,))
        assert idle.mem_used == 6 << 30 and idle.low_s >= 2.0

        nb1.stop(timeout=1)
        seen = 0
        while tracker.low():
            sample = next_sample(samples, pace, "nb1's process to leave GPU 0")
            tracker.add(sample)
            seen += 1
            assert seen < 400, "100 s of samples after the stop and nb1 still holds GPU 0"
        assert [p for p in sample.processes if p.gpu == 0] == []
    finally:
        stream.stop()
        runner.join(timeout=30)


def test_the_readme_idle_lines_as_written(nb1: Any) -> None:
    assert readme_lines() == README_LINES
    plain, as_json, simulated = README_LINES

    # No GPUs on the bed and nothing simulated: nothing holds a GPU, so nothing is idle.
    done = shell(plain)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "No idle containers: watched 1 host(s) for 10s, none held GPUs under 5 %.\n"
    )

    done = shell(as_json)
    assert done.returncode == 0, done.stderr
    doc = validate_text("ps --idle", done.stdout)
    assert doc["containers"] == [] and not doc["simulated"] and doc["below"] == 10.0

    done = shell(simulated)
    assert done.returncode == 0, done.stderr
    head, header, row = done.stdout.splitlines()
    assert head.startswith("Idle: GPU utilisation under 5 % all the time (watched 1 host(s)")
    assert head.endswith("(SIMULATED GPUs)")
    assert header.split() == ["HOST", "NAME", "GPUS", "GPU", "MEM", "IDLE"]
    assert row.split()[:4] == ["gpu1", NAME, "0", "6.0GiB"] and row.split()[4].startswith("≥")
    # The same with --json: the container's real id.
    done = shell(simulated + " --json")
    (found,) = validate_text("ps --idle", done.stdout)["containers"]
    assert (found["name"], found["id"], found["gpus"]) == (NAME, nb1.id, [0])
    assert found["gpu_memory"] == 6 << 30 and found["idle_s"] >= 2.0


def test_the_tui_flags_nb1_and_x_stops_it(
    nb1: Any, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole TUI on the bed: the Fleet's gpu1 row says `1 idle` once its 2 s window is
    covered, X on it asks about nb1 and yes stops the real container."""
    from textual.pilot import Pilot

    from gpudesk.app.app import GpudeskApp
    from gpudesk.app.messages import GpuUpdate
    from gpudesk.app.modals.confirm import ConfirmModal
    from gpudesk.app.screens.fleet import FleetScreen
    from gpudesk.app.widgets.host_list import HostList

    monkeypatch.setenv("GPUDESK_SIMULATE_GPUS", "2")
    monkeypatch.setenv("GPUDESK_SIMULATE_PROCESSES", f"{NAME}@0")
    monkeypatch.setenv("GPUDESK_IDLE_AFTER", "2s")

    async def scenario() -> None:
        updates: asyncio.Queue[int] = asyncio.Queue()

        def hook(message: object) -> None:
            if isinstance(message, GpuUpdate) and message.host == "gpu1":
                updates.put_nowait(message.sample.seq)

        async def until(pilot: Pilot[Any], done: Any, what: str) -> None:
            pace, seen = Pace(), 0
            while not done():
                try:
                    pace.saw(await asyncio.wait_for(updates.get(), pace.allowance()))
                except TimeoutError:
                    raise AssertionError(f"waiting for {what}: {pace.describe()}") from None
                await pilot.pause()
                seen += 1
                assert seen < 400, f"{seen} GPU samples from gpu1 and still not {what}"

        app = GpudeskApp()
        async with app.run_test(size=(200, 50), message_hook=hook) as pilot:
            model = app.models["gpu1"]
            await until(pilot, lambda: model.gpu_idle.get(NAME) is not None, "nb1 idle")
            fleet = app.screen
            assert isinstance(fleet, FleetScreen)
            fleet.flush()
            assert "1 idle" in " ".join(fleet.query_one(HostList).cells("gpu1"))
            fleet.query_one(HostList).select("gpu1")
            await pilot.press("X")
            modal = app.screen
            assert isinstance(modal, ConfirmModal)
            assert modal.question == f"Stop idle container {NAME} on gpu1?"
            assert "GPU 0 under 5 % utilisation for" in modal.detail
            assert "it holds 6.0GiB of GPU memory" in modal.detail
            await pilot.press("y")
            await until(pilot, lambda: model.gpu_idle.low() == [], "nb1 gone from GPU 0")
            await app.workers.wait_for_complete()
            assert docker_client.containers.get(NAME).status == "exited"
            fleet.flush()
            assert "idle" not in " ".join(fleet.query_one(HostList).cells("gpu1"))

    asyncio.run(scenario())
