"""Idle GPUs in the TUI: the Fleet's count, the host screen's marker and X's stop question,
fed with recorded samples (the simulated 8-GPU stream, with the notebook container's process
on GPU 0, which the recording keeps at 0 %)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import ContainersUpdate, EngineStatus, GpuUpdate, HostStatus
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.widgets import container_table
from gpudesk.app.widgets.host_list import HostList, Line
from gpudesk.core.engine import EngineInfo
from gpudesk.core.gpu.sample import GpuProcess, GpuSample
from gpudesk.core.ssh import ConnState, ConnStatus
from tests.app.test_fleet import settle
from tests.app.test_gpu_processes import HOST, Killer, Source, make_app, real_sample
from tests.app.test_host_containers import CONTAINERS, STARTED

GIB = 1 << 30
SIZES = {"80x24": (80, 24), "200x50": (200, 50)}
T0 = 1_795_561_325.0


def samples(count: int, step: float, busy_at: int | None = None) -> list[GpuSample]:
    """``count`` recorded samples ``step`` s apart; the notebook holds 6 GiB on GPU 0, which
    is at 0 % except in sample ``busy_at``."""
    base = real_sample()
    notebook = GpuProcess(gpu=0, pid=41000, used_memory=6 * GIB, command="python -m ipykernel",
                          user="dev", container_id="notebook" * 4, container_name="notebook")  # fmt: skip
    out = []
    for n in range(count):
        gpus = list(base.gpus)
        gpus[0] = dataclasses.replace(gpus[0], util_gpu=90.0 if n == busy_at else 0.0)
        out.append(
            dataclasses.replace(
                base, seq=n, ts=T0 + n * step, gpus=tuple(gpus),
                processes=(*base.processes, notebook),
            )
        )  # fmt: skip
    return out


@pytest.fixture(autouse=True)
def pinned_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """UP is computed when drawn: pin the clock 5h07m after the containers started."""
    monkeypatch.setattr(container_table, "clock", lambda: STARTED + timedelta(hours=5, minutes=7))


async def connect(pilot: Pilot[Any], feed: list[GpuSample], *, direct: int = 0) -> None:
    """The host connected with its containers, then ``feed`` arrived: the first ``direct``
    samples straight into the state (a long recording), the rest as the stream's messages."""
    app: GpudeskApp = pilot.app  # type: ignore[assignment]
    app.post_message(HostStatus(ConnStatus(HOST, ConnState.CONNECTED, "", 3.2)))
    engine = EngineInfo("24.0.7", "1.43", "Ubuntu 22.04.4 LTS", ("nvidia", "runc"), True)
    app.post_message(EngineStatus(HOST, engine, None))
    app.post_message(ContainersUpdate(HOST, CONTAINERS, None))
    for sample in feed[:direct]:
        app.state.apply_gpu(HOST, sample)
    for sample in feed[direct:]:
        app.post_message(GpuUpdate(HOST, sample))
    await settle(pilot)


async def open_host(pilot: Pilot[Any]) -> HostScreen:
    screen = HostScreen(HOST, runs=Source(), killer=Killer())
    pilot.app.push_screen(screen)
    await settle(pilot)
    screen.query_one("#containers", DataTable).focus()
    return screen


def state_cell(screen: HostScreen, name: str) -> str:
    return str(screen.query_one("#containers", DataTable).get_row(name)[3])


def fleet_cells(app: GpudeskApp) -> str:
    return " ".join(app.screen.query_one(HostList).cells(HOST))


async def test_idle_after_the_window_not_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDESK_IDLE_AFTER", "10s")
    app = make_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await connect(pilot, samples(10, 1.0))  # 9 s low
        assert "idle" not in fleet_cells(app)
        await connect(pilot, samples(12, 1.0)[10:])  # 11 s low
        assert "2/3 up 1 idle" in fleet_cells(app)
        summary = app.screen.query_one("#fleet-summary", Line).plain
        assert "idle containers: 1 (X stops one)" in summary
        screen = await open_host(pilot)
        assert state_cell(screen, "notebook") == "running idle 11s"
        assert state_cell(screen, "train-a") == "running"  # its GPUs 1 and 2 are busy
        assert "1 idle (GPU utilisation under 5 % for 10s) · X stop idle" in str(
            screen.query_one("#containers-title", Static).render()
        )


async def test_a_busy_moment_or_a_gap_clears_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUDESK_IDLE_AFTER", "10s")
    app = make_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await connect(pilot, samples(20, 1.0, busy_at=15))
        assert "idle" not in fleet_cells(app)  # low for 3 s since GPU 0 was busy
        app.state.apply_stream_state(HOST, *_restarting())
        # The restart comes 1 s after the last sample: low for 23 s, but seen for only 19 s.
        late = [dataclasses.replace(s, seq=s.seq + 100) for s in samples(40, 1.0)[20:]]
        await connect(pilot, late)
        screen = await open_host(pilot)
        assert state_cell(screen, "notebook") == "running idle 19s"


def _restarting() -> tuple[Any, str]:
    from gpudesk.core.gpu.stream import StreamState

    return StreamState.RESTARTING, "agent stream ended"


async def test_x_asks_with_name_time_and_memory_then_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUDESK_IDLE_AFTER", "10s")
    app = make_app()
    acted: list[tuple[str, str]] = []

    class Dev:
        def act(self, verb: str, name: str) -> Any:
            acted.append((verb, name))
            return dataclasses.make_dataclass("R", [("status", str)])("exited")

    async with app.run_test(size=(200, 50)) as pilot:
        monkeypatch.setattr(app.state, "devcontainers", lambda host: Dev())
        await connect(pilot, samples(16, 1.0))
        app.screen.query_one(HostList).select(HOST)
        await pilot.press("X")  # on the Fleet, the selected host's longest idle container
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        assert modal.question == f"Stop idle container notebook on {HOST}?"
        assert "GPU 0 under 5 % utilisation for 15s" in modal.detail
        assert "holds 6.0GiB of GPU memory" in modal.detail
        await pilot.press("escape")
        await settle(pilot)
        assert acted == []
        screen = await open_host(pilot)
        await pilot.press("X")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("y")
        await settle(pilot)
        assert acted == [("stop", "notebook")]
        assert app.screen is screen


async def test_x_without_idle_containers_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app()
    async with app.run_test(size=(200, 50)) as pilot:
        await connect(pilot, samples(3, 1.0))
        app.screen.query_one(HostList).select(HOST)
        await pilot.press("X")
        assert not isinstance(app.screen, ConfirmModal)
        assert [n.message for n in app._notifications] == [
            f"No idle containers on {HOST} (GPU utilisation under 5 % for 30m)."
        ]


# ---------------------------------------------------------------------- snapshots


def recorded() -> list[GpuSample]:
    """31 min of samples every 4 s: idle by the default 30 min window."""
    return samples(31 * 15 + 1, 4.0)


async def fleet_before(pilot: Pilot[Any]) -> None:
    await connect(pilot, recorded(), direct=31 * 15)


async def host_before(pilot: Pilot[Any]) -> None:
    await fleet_before(pilot)
    await open_host(pilot)
    assert isinstance(pilot.app.screen, HostScreen)


async def question_before(pilot: Pilot[Any]) -> None:
    await host_before(pilot)
    await pilot.press("X")
    await pilot.pause()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize(
    "before", [fleet_before, host_before, question_before], ids=["fleet", "host", "question"]
)
def test_snapshot(snap_compare: Any, before: Any, size: str) -> None:
    assert snap_compare(make_app(), terminal_size=SIZES[size], run_before=before)


def test_cells_are_plain_text() -> None:
    # The marker is styled, the host's status is not read as markup.
    from gpudesk.app.widgets.container_table import state_cell as cell
    from gpudesk.core.gpu.idle import IdleContainer

    info = dataclasses.replace(CONTAINERS[1], status="[bold]Up[/]")
    text = cell(info, IdleContainer("notebook", None, (0,), None, 0.0, 1900.0))
    assert isinstance(text, Text) and text.plain == "[bold]Up[/] idle 31m"
