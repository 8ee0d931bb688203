"""Training runs on the real test bed: a CPU-torch container reached over real SSH.

The container image is the test-bed base plus CPU torch (built once, cached by tag); runs are
submitted, listed, followed and stopped through a HostService whose connection is real SSH to
the test bed's sshd and whose Docker client rides on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core import logs
from gpudesk.core.config import Inventory
from gpudesk.core.containers import Containers, LaunchSpec
from gpudesk.core.containers.workspace import prepare_workspace
from gpudesk.core.flavours import Flavour, GpudeskLabels
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.local import LocalConnection
from gpudesk.core.runs import (
    Run,
    RunError,
    RunSpec,
    RunState,
    get_run,
    list_runs,
    stop_run,
    submit,
)
from scripts import testbed as testbed_module
from tests.integration import early
from tests.integration.bed import bed_host
from tests.integration.pace import SLOW_OP_S, Pace

pytestmark = pytest.mark.slow

# A test-bed base image with CPU torch, built once from wheels that `pip download` put in the
# test bed cache, so the build needs no network; the tag hashes the Dockerfile and the wheels.
WHEELS = testbed_module.CACHE_DIR / "torch-wheels"
DOCKERFILE = f"""\
ARG BASE
FROM ${{BASE}}
COPY wheels/ /tmp/wheels/
RUN python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheels \\
        --break-system-packages {testbed_module.TORCH_SPEC} && rm -rf /tmp/wheels
ENV OMP_NUM_THREADS=1
"""


def ensure_wheels() -> list[Path]:
    wheels = sorted(WHEELS.glob("*.whl"))
    if not any(w.name.startswith("torch-") for w in wheels):
        WHEELS.mkdir(parents=True, exist_ok=True)
        # For the Debian base's Python (bookworm: 3.11), whatever Python runs the tests.
        testbed_module.pip_cpu_torch(
            sys.executable, "download", "-d", str(WHEELS), "--only-binary=:all:",
            "--python-version", "3.11",
        )  # fmt: skip
        wheels = sorted(WHEELS.glob("*.whl"))
    return wheels


def ensure_torch_image(client: Any, base: str) -> str:
    """The tag of the CPU-torch image on ``base``; one build per session, started early."""
    return early.start(("torch-image", base), lambda: build_torch_image(client, base)).result()


def start_torch_image(bed: Any) -> None:
    """Download the wheels and build the image beside the first tests (a fresh machine only)."""

    def work() -> str:
        client = docker.DockerClient(base_url=bed.docker_host, timeout=600)
        try:
            return build_torch_image(client, bed.base_image)
        finally:
            client.close()

    early.start(("torch-image", bed.base_image), work)


START_EARLY = (start_torch_image,)


def build_torch_image(client: Any, base: str) -> str:
    wheels = ensure_wheels()
    digest = hashlib.sha256(DOCKERFILE.encode() + base.encode())
    for wheel in wheels:
        digest.update(wheel.name.encode())
    tag = f"gpudesk-test/torch-cpu:{digest.hexdigest()[:12]}"
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(DOCKERFILE)
        tar.addfile(info, io.BytesIO(DOCKERFILE.encode()))
        for wheel in wheels:
            tar.add(str(wheel), arcname=f"wheels/{wheel.name}")
    buf.seek(0)
    client.images.build(
        fileobj=buf, custom_context=True, tag=tag, buildargs={"BASE": base}, rm=True, pull=False
    )
    return tag


# One intra-op thread per run (ENV above), as tests/scripts/util.py's env() gives the scripts'
# own tests: the bed's 2 cores are shared by pytest, sshd, dockerd, up to two runs and, in the
# busy-core check, a neighbour; a 2-thread OpenMP team there spins waiting for its descheduled
# half (textcls FAST: 349 s wall / 89 s CPU with 2 threads, 55 s / 22 s with 1, loaded machine).
# The model is the scripts' tests' tiny one: these tests check gpudesk's handling of a run, and
# the scripts' own tests cover the model sizes.
TINY_CLS = ("--layers", "1", "--dim", "64", "--heads", "2", "--max-len", "64")
FAST = (
    "--steps", "24", "--log-every", "4", "--eval-every", "12", "--batch-size", "16", *TINY_CLS,
)  # fmt: skip


@pytest.fixture(scope="module")
def torch_container(
    testbed: Any, docker_client: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    image = ensure_torch_image(docker_client, testbed.base_image)
    # Containers of an interrupted earlier session hold runs of the same names (cls-ok, ...),
    # which would make those names ambiguous here.
    for stale in docker_client.containers.list(all=True, filters={"name": "^gdr-"}):
        with contextlib.suppress(docker.errors.NotFound):
            stale.remove(force=True)
    where = tmp_path_factory.mktemp("runs-bed")
    key = where / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    name = f"gdr-{uuid.uuid4().hex[:8]}"
    workspace = where / "hostfs" / name
    Containers(docker_client).launch(
        LaunchSpec(
            flavour=Flavour.SSH,
            name=name,
            workspace=str(workspace),
            public_key=key.with_suffix(".pub").read_text(),
            base_image=image,
        ),
        lambda path: prepare_workspace(LocalConnection().exec, path),
    )
    yield name
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(name).remove(force=True)


def bed_fleet(testbed: Any) -> tuple[Fleet, HostService]:
    inventory = Inventory.load()
    if "bed" not in inventory.names():
        inventory.add(bed_host(testbed))
    fleet = Fleet.build(Inventory.load())
    service = fleet.get("bed")
    connect_blocking(service.conn)
    return fleet, service


@pytest.fixture
def bed(testbed: Any, known_hosts_file: Path) -> Iterator[HostService]:
    fleet, service = bed_fleet(testbed)
    yield service
    fleet.close()


def wait_for_run(service: HostService, name: str, done: Callable[[Run], bool]) -> Run:
    # Nothing announces a state change in a run folder, so this polls, as the runs view does;
    # the deadline follows the run's own pace (tests/integration/pace.py).
    pace = Pace()
    while True:
        run = get_run(service, name)
        if done(run):
            return run
        pace.saw((run.state_text, run.metrics.step, tuple(run.log_tail[-1:])))
        assert not pace.stalled(), (
            f"{name} stuck in {run.state_text}, {pace.describe()}: {run.log_tail}"
        )
        time.sleep(0.5)


def follow_until(service: HostService, name: str, needle: str) -> list[str]:
    seen = threading.Event()
    total = [0]

    def on_batch(lines: list[str], count: int) -> None:
        total[0] = count
        if any(needle in line for line in lines):
            seen.set()

    follower = logs.follower(service, logs.LogTarget.run(name), on_batch, tail=1000)
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    pace = Pace()
    try:
        while not seen.wait(1.0):  # wakes at once when the line arrives
            pace.saw(total[0])
            assert not pace.stalled(), (
                f"{needle!r} never appeared in {name}'s log: {pace.describe()}"
            )
    finally:
        follower.stop()
        thread.join(10)
    assert not thread.is_alive()
    return follower.lines()


def test_textcls_run_succeeds_and_outlives_gpudesk(
    bed: HostService, torch_container: str, testbed: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run = submit(bed, torch_container, RunSpec("textcls", FAST, name="cls-ok"))
    assert run.state in (RunState.STARTING, RunState.RUNNING)
    assert run.pid and run.record["gpudesk_version"]
    record = json.loads(Path(run.dir, "run.json").read_text())
    # run.json is whole before the process starts (one rename); the pid has a file of its own.
    assert record["container"] == torch_container
    assert Path(run.dir, "pid").read_text().split()[0] == str(run.pid)

    # A fresh fleet (gpudesk killed and started again) still finds the run, still running.
    fleet2, service2 = bed_fleet(testbed)
    try:
        again = get_run(service2, "cls-ok")
        assert again.state in (RunState.RUNNING, RunState.SUCCEEDED)
    finally:
        fleet2.close()

    lines = follow_until(bed, "cls-ok", "done (completed)")
    assert any(line.startswith("step ") for line in lines)
    final = wait_for_run(bed, "cls-ok", lambda r: r.state.finished)
    assert final.state is RunState.SUCCEEDED and final.exit_code == 0
    records = [json.loads(x) for x in Path(final.dir, "metrics.jsonl").read_text().splitlines()]
    last_loss = [r["loss"] for r in records if r["event"] == "train"][-1]
    assert final.metrics.loss == pytest.approx(last_loss)
    assert final.metrics.step == 24 and final.eta is None
    listed = {r.name: r for r in list_runs(bed)}
    assert listed["cls-ok"].state is RunState.SUCCEEDED

    from gpudesk.cli.main import main

    capsys.readouterr()
    assert main(["runs", "--host", "bed", "--json"]) == 0
    listed_json = {r["name"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert listed_json["cls-ok"]["state"] == "succeeded"
    assert listed_json["cls-ok"]["loss"] == pytest.approx(last_loss)
    assert main(["logs", "cls-ok", "--host", "bed", "-n", "3"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "done (completed) at step 24"
    assert main(["stop-run", "cls-ok", "--host", "bed"]) == 1
    assert "already ended" in capsys.readouterr().err


def test_failing_script_shows_failed_with_exit_code_and_log(
    bed: HostService, torch_container: str
) -> None:
    submit(bed, torch_container, RunSpec("textcls", ("--data", "/nope.tsv"), name="cls-bad"))
    run = wait_for_run(bed, "cls-bad", lambda r: r.state.finished)
    assert run.state is RunState.FAILED and run.exit_code == 2
    assert run.state_text == "failed (2)"
    assert any("error" in line for line in run.log_tail)


def test_stop_run_checkpoints_and_ends_stopped(bed: HostService, torch_container: str) -> None:
    args = (
        "--steps", "100000", "--log-every", "1", "--ckpt-every", "50", "--batch-size", "8",
        *TINY_CLS,
    )  # fmt: skip
    submit(bed, torch_container, RunSpec("textcls", args, name="cls-long"))
    follow_until(bed, "cls-long", "step 2/")
    result = stop_run(bed, "cls-long", grace=60)
    assert result.outcome == "terminated", result.message
    run = wait_for_run(bed, "cls-long", lambda r: r.state.finished)
    assert run.state is RunState.STOPPED
    assert run.metrics.done_reason == "sigterm"
    assert list(Path(run.dir, "ckpt").glob("step_*.pt"))
    with pytest.raises(RunError, match="already ended"):
        stop_run(bed, "cls-long")


@pytest.mark.parametrize(
    ("name", "nproc", "extra"),
    [("lm-workers", 1, ("--workers", "2")), ("lm-ddp", 2, ())],
)
def test_stop_run_with_dataloader_workers_or_torchrun_checkpoints_the_current_step(
    bed: HostService, torch_container: str, name: str, nproc: int, extra: tuple[str, ...]
) -> None:
    """stop-run signals the whole process group: DataLoader workers must not die first, and
    torchrun (whose ranks run in sessions of their own) must hand the stop to the ranks."""
    args = (
        "--steps", "100000", "--log-every", "1", "--eval-every", "0", "--ckpt-every", "0",
        "--layers", "1", "--dim", "32", "--heads", "2", "--seq-len", "32", "--batch-size", "4",
        *extra,
    )  # fmt: skip
    submit(bed, torch_container, RunSpec("lm", args, nproc=nproc, name=name))
    follow_until(bed, name, "step 3/")
    result = stop_run(bed, name, grace=60)
    assert result.outcome == "terminated", result.message
    run = wait_for_run(bed, name, lambda r: r.state.finished)
    assert run.state is RunState.STOPPED and run.exit_code == 0, run.log_tail
    assert not any("Traceback" in line or "killed by signal" in line for line in run.log_tail)
    records = [json.loads(x) for x in Path(run.dir, "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records[-2:]] == ["ckpt", "done"]
    last_train = [r["step"] for r in records if r["event"] == "train"][-1]
    # the checkpoint is of the step the run was at (not rounded to a check interval)
    assert records[-2]["step"] == records[-1]["step"] == last_train >= 3
    ckpt = f"{run.container_dir}/ckpt/step_{last_train:08d}.pt"
    resumed_args = (*args[2:], "--steps", str(last_train + 2), "--resume", ckpt)
    submit(bed, torch_container, RunSpec("lm", resumed_args, nproc=nproc, name=f"{name}-2"))
    again = wait_for_run(bed, f"{name}-2", lambda r: r.state.finished)
    assert again.state is RunState.SUCCEEDED, again.log_tail
    steps = [json.loads(x) for x in Path(again.dir, "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps if r["event"] == "train"] == [last_train + 1, last_train + 2]


def test_bad_submissions_leave_nothing_behind(
    bed: HostService, torch_container: str, docker_client: Any, tmp_path: Path
) -> None:
    with pytest.raises(RunError, match="Unknown script"):
        submit(bed, torch_container, RunSpec("nosuch", name="x1"))
    with pytest.raises(RunError, match="no file"):
        submit(bed, torch_container, RunSpec("/workspace/missing.py", name="x2"))
    with pytest.raises(RunError, match="cannot name a run"):
        submit(bed, torch_container, RunSpec("textcls", name="Bad Name"))
    submit(bed, torch_container, RunSpec("textcls", ("--steps", "1"), name="taken"))
    with pytest.raises(RunError, match="already exists"):
        submit(bed, torch_container, RunSpec("textcls", name="taken"))
    names = {r.name for r in list_runs(bed)}
    assert "x1" not in names and "x2" not in names

    idle = f"gdr-idle-{uuid.uuid4().hex[:6]}"
    labels = GpudeskLabels(Flavour.SSH, "t", str(tmp_path), "dev").to_labels()
    docker_client.containers.create(
        docker_client.containers.get(torch_container).image.id, name=idle, labels=labels
    )
    try:
        with pytest.raises(RunError, match="start it first"):
            submit(bed, idle, RunSpec("textcls", name="x3"))
    finally:
        docker_client.containers.get(idle).remove(force=True)
    assert not (tmp_path / "runs").exists()


def test_follow_survives_truncation_and_rotation(bed: HostService, tmp_path: Path) -> None:
    # The test bed host is this machine, so tmp_path is a file on the GPU host too.
    log = tmp_path / "train.log"
    log.write_text("".join(f"old {i}\n" for i in range(1000)))
    seen: list[str] = []
    arrived = threading.Condition()

    def on_batch(lines: list[str], total: int) -> None:
        with arrived:
            seen.extend(lines)
            arrived.notify_all()

    def wait_for(line: str) -> None:
        with arrived:
            assert arrived.wait_for(lambda: line in seen, 20), f"never saw {line!r}: {seen[-5:]}"

    follower = logs.follower(bed, logs.LogTarget.file(str(log)), on_batch, tail=10)
    thread = threading.Thread(target=follower.run, daemon=True)
    thread.start()
    try:
        wait_for("old 999")
        assert seen[0] == "old 990"  # only the last N lines, not the whole file
        with log.open("a") as f:
            f.write("grown\n")
        wait_for("grown")
        log.write_text("after truncation\n")
        wait_for("after truncation")
        log.rename(tmp_path / "train.log.1")
        log.write_text("after rotation\n")
        wait_for("after rotation")
    finally:
        follower.stop()
        thread.join(10)
    assert not thread.is_alive() and follower.total == len(seen)


def test_logs_of_a_container_and_a_run_through_the_cli(
    bed: HostService, torch_container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpudesk.cli.main import main

    lines = logs.read_tail(bed, logs.LogTarget.container(torch_container), 50)
    assert isinstance(lines, list)
    assert main(["logs", torch_container, "--host", "bed", "-n", "5"]) == 0
    assert main(["logs", "no-such-thing", "--host", "bed"]) == 1
    assert "No run or container is named no-such-thing" in capsys.readouterr().err


def test_full_or_read_only_workspace_is_refused_cleanly(
    bed: HostService, torch_container: str, docker_client: Any, tmp_path: Path
) -> None:
    from docker.types import Mount

    image = docker_client.containers.get(torch_container).image.id
    (tmp_path / "ro").mkdir()
    (tmp_path / "full").mkdir()
    # A tiny filesystem on the host, bind-mounted like any workspace (Docker's archive API does
    # not reach into a container's own tmpfs mounts).
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=1777", "tmpfs", str(tmp_path / "full")],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    cases = {
        "read-only": Mount("/workspace", str(tmp_path / "ro"), type="bind", read_only=True),
        "full": Mount("/workspace", str(tmp_path / "full"), type="bind"),
    }
    made = []
    try:
        for why, mount in cases.items():
            name = f"gdr-{why}-{uuid.uuid4().hex[:6]}"
            labels = GpudeskLabels(Flavour.SSH, "t", str(tmp_path / why), "dev").to_labels()
            made.append(name)
            docker_client.containers.run(
                image, ["sleep", "infinity"], entrypoint=[], detach=True, name=name,
                labels=labels, mounts=[mount],
            )  # fmt: skip
            with pytest.raises(RunError, match=f"workspace of {name} is {why}"):
                submit(bed, name, RunSpec("textcls", name="x"))
            code, out = docker_client.containers.get(name).exec_run(["ls", "/workspace/runs"])
            assert code != 0 or out.strip() == b"", out
    finally:
        for name in made:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.containers.get(name).remove(force=True)
        subprocess.run(["umount", str(tmp_path / "full")], check=False)


def test_tui_submits_a_run_and_the_runs_view_follows_it_to_the_end(
    testbed: Any, known_hosts_file: Path, torch_container: str
) -> None:
    import asyncio

    from textual.widgets import DataTable, Input

    from gpudesk.app.app import GpudeskApp
    from gpudesk.app.messages import ContainerChange
    from gpudesk.app.modals.submit_run import SubmitRunModal, Submitted
    from gpudesk.app.screens.host import HostScreen
    from gpudesk.app.screens.run_detail import RunDetailScreen
    from gpudesk.app.screens.runs import RunsLoaded, RunsScreen
    from gpudesk.core.containers.watch import ContainersListed

    bed_fleet(testbed)[0].close()  # registers host `bed`

    async def scenario() -> None:
        listed = asyncio.Event()
        submitted = asyncio.Event()
        loads: asyncio.Queue[RunsLoaded] = asyncio.Queue()

        def hook(message: object) -> None:
            if (
                isinstance(message, ContainerChange)
                and message.host == "bed"
                and isinstance(message.change, ContainersListed)
                and any(i.name == torch_container for i in message.change.infos)
            ):
                listed.set()
            if isinstance(message, RunsLoaded):
                loads.put_nowait(message)
            if isinstance(message, Submitted):
                submitted.set()

        app = GpudeskApp()
        async with app.run_test(size=(140, 40), message_hook=hook) as pilot:
            try:
                await asyncio.wait_for(listed.wait(), SLOW_OP_S)
                app.open_host("bed")
                await pilot.pause()
                assert isinstance(app.screen, HostScreen)
                table = app.screen.query_one("#containers", DataTable)
                table.move_cursor(row=table.get_row_index(torch_container))
                await pilot.press("R")
                assert isinstance(app.screen, SubmitRunModal)
                app.screen.query_one("#submit-args", Input).value = " ".join(FAST)
                app.screen.query_one("#submit-name", Input).value = "tui-run"
                app.screen.query_one("#submit-name", Input).focus()
                await pilot.press("enter")
                await asyncio.wait_for(submitted.wait(), SLOW_OP_S)
                await pilot.pause()
                assert not isinstance(app.screen, SubmitRunModal), app.screen.query_one(
                    "#submit-error"
                ).render()
                app.pop_screen()
                app.open_runs()
                await pilot.pause()
                assert isinstance(app.screen, RunsScreen)
                # The view polls the run folders every few seconds until the run ends; the
                # deadline follows the run's pace.
                pace = Pace()
                while True:
                    loaded = await asyncio.wait_for(loads.get(), pace.allowance())
                    mine = [r for r in loaded.runs if r.name == "tui-run"]
                    if mine and mine[0].state.value == "succeeded":
                        break
                    if mine:
                        pace.saw((mine[0].state, mine[0].metrics.step))
                    assert not pace.stalled(), pace.describe()
                await pilot.pause()
                runs_table = app.screen.query_one(DataTable)
                key = next(k for k in runs_table.rows if "tui-run" in str(k.value))
                cells = [str(c) for c in runs_table.get_row(key)]
                assert "succeeded" in cells[3] and cells[5] != "-"  # the final loss
                runs_table.move_cursor(row=runs_table.get_row_index(key))
                await pilot.press("enter")
                await pilot.pause()
                assert isinstance(app.screen, RunDetailScreen)
            finally:
                await app.action_quit()

    asyncio.run(scenario())
