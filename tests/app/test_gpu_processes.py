"""The host screen's GPU process table: each process's run (enter opens it) and killing one
(k), fed with the recorded 8-GPU sample whose processes are placed in recorded containers."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import ContainersUpdate, EngineStatus, GpuUpdate, HostStatus
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.app.widgets.gpu_panel import GpuProcessTable
from gpudesk.core.config import Host, Inventory
from gpudesk.core.engine import EngineInfo
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.kill import KillPlan, KillResult, Via
from gpudesk.core.gpu.sample import GpuSample, parse_sample
from gpudesk.core.runs import Run, StopResult
from gpudesk.core.ssh import ConnState, ConnStatus
from tests.app.test_host_containers import CONTAINERS
from tests.app.test_runs_ui import METRICS, recorded_run

SIZE = (140, 50)
HOST = "gpu-a100"  # recorded_run's host
SAMPLE = Path(__file__).parents[1] / "fixtures/gpu/simulated_h100x8_agent_stream.jsonl"


def real_sample() -> GpuSample:
    """The recording as a real host's: processes in train-a (a gpudesk container whose run
    cls-live has process group 4242), in postgres (not gpudesk's) and on the host."""
    sample = parse_sample(SAMPLE.read_text().splitlines()[0])
    p = list(sample.processes)  # GPUs 1..6
    p[0] = dataclasses.replace(p[0], container_name="train-a", ns_pid=4250, ns_pgid=4242,
                               user="root", command="python textcls.py --steps 40")  # fmt: skip
    p[1] = dataclasses.replace(p[1], container_name="train-a", ns_pid=77, ns_pgid=77)
    p[2] = dataclasses.replace(p[2], container_name="postgres")
    p[3] = dataclasses.replace(p[3], container_id=None, container_name=None, user="alice")
    p[4] = dataclasses.replace(p[4], container_id=None, container_name=None, user="bob")
    return dataclasses.replace(sample, simulated=False, processes=tuple(p))


class Source:
    """A recorded run source: cls-live runs in train-a as process group 4242."""

    def __init__(self) -> None:
        run = recorded_run("cls-live", "train-a", METRICS[:14], alive=True, now_offset=1.0)
        self.live = dataclasses.replace(run, host=HOST)

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]:
        return [self.live], []

    def run(self, host: str, name: str, container: str) -> Run:
        return self.live

    def stop(self, run: Run, grace: float) -> StopResult:
        raise AssertionError("not asked here")

    def rerun(self, run: Run) -> Run:
        raise AssertionError("not asked here")


class Killer:
    def __init__(self) -> None:
        self.plans: list[tuple[str, KillPlan, float]] = []

    def __call__(self, host: str, plan: KillPlan, grace: float) -> KillResult:
        self.plans.append((host, plan, grace))
        return KillResult("terminated", f"pid {plan.host_pid} ended after SIGTERM.")


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_host(
    pilot: Pilot[Any], sample: GpuSample, killer: Killer | None = None
) -> tuple[HostScreen, GpuProcessTable]:
    app: GpudeskApp = pilot.app  # type: ignore[assignment]
    app.post_message(HostStatus(ConnStatus(HOST, ConnState.CONNECTED, "", 3.2)))
    engine = EngineInfo("24.0.7", "1.43", "Ubuntu 22.04.4 LTS", ("nvidia", "runc"), True)
    app.post_message(EngineStatus(HOST, engine, None))
    app.post_message(ContainersUpdate(HOST, CONTAINERS, None))
    app.post_message(GpuUpdate(HOST, sample))
    await settle(pilot)
    screen = HostScreen(HOST, runs=Source(), killer=killer or Killer())
    app.push_screen(screen)
    await settle(pilot)
    table = screen.query_one(GpuProcessTable)
    table.focus()
    await pilot.pause()
    return screen, table


def make_app() -> GpudeskApp:
    Inventory.load().add(Host(name=HOST, hostname="10.0.0.5", user="alice"))
    return GpudeskApp(fleet_factory=lambda cb: Fleet.build(Inventory.load(), cb), connect=False)


def run_cell(table: GpuProcessTable, key: str) -> str:
    return str(table.get_row(key)[GpuProcessTable.COLUMNS.index("run")])


async def select(pilot: Pilot[Any], table: GpuProcessTable, key: str) -> None:
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


def notes(app: GpudeskApp) -> list[str]:
    return [n.message for n in app._notifications]


async def test_each_process_names_its_run_and_enter_opens_it() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen, table = await open_host(pilot, real_sample())
        # Only the process whose group is cls-live's pid is cls-live's; the other process in
        # the same container (another group) and the rest belong to no run.
        assert run_cell(table, "1:40001") == "cls-live"
        assert [run_cell(table, k) for k in ("2:40002", "3:40003", "4:40004")] == ["-"] * 3
        await select(pilot, table, "3:40003")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is screen
        assert any("not part of a gpudesk run" in n for n in notes(app))
        await select(pilot, table, "1:40001")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        assert app.screen.run_name == "cls-live" and app.screen.container == "train-a"


async def test_kill_asks_with_command_container_and_user_then_signals() -> None:
    killer = Killer()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        _, table = await open_host(pilot, real_sample(), killer)
        await select(pilot, table, "1:40001")
        await pilot.press("k")
        await pilot.pause()
        modal = app.screen
        assert isinstance(modal, ConfirmModal)
        detail = str(modal.query_one(".dialog-detail", Static).render())
        for shown in ("python textcls.py --steps 40", "train-a", "pid 4250", "root", "cls-live",
                      "SIGTERM", "SIGKILL"):  # fmt: skip
            assert shown in detail, (shown, detail)
        await pilot.press("escape")  # no: nothing is sent
        await settle(pilot)
        assert killer.plans == []
        await pilot.press("k")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        ((host, plan, grace),) = killer.plans
        assert host == HOST and grace > 0
        assert plan == KillPlan(40001, Via.CONTAINER, 4250, "python textcls.py --steps 40",
                                "train-a")  # fmt: skip
        assert "pid 40001 ended after SIGTERM." in notes(app)

        # The SSH user's own process on the host: killed with the host's kill.
        await select(pilot, table, "4:40004")
        await pilot.press("k", "y")
        await settle(pilot)
        assert killer.plans[-1][1].via is Via.HOST and killer.plans[-1][1].pid == 40004


async def test_kill_is_not_offered_out_of_reach_and_says_why() -> None:
    killer = Killer()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        _, table = await open_host(pilot, real_sample(), killer)
        for key, why in (("3:40003", "which gpudesk did not create"),
                         ("5:40005", "belongs to bob")):  # fmt: skip
            await select(pilot, table, key)
            await pilot.press("k")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmModal)
            assert any(why in n for n in notes(app)), notes(app)
        assert killer.plans == []


async def test_simulated_processes_cannot_be_killed() -> None:
    killer = Killer()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        sample = dataclasses.replace(real_sample(), simulated=True)
        _, table = await open_host(pilot, sample, killer)
        await select(pilot, table, "1:40001")
        await pilot.press("k")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmModal)
        assert any("simulated" in n for n in notes(app))


async def test_hostile_names_in_the_process_table_are_shown_literally() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        sample = real_sample()
        p = list(sample.processes)
        p[3] = dataclasses.replace(p[3], command="[b]x[/b] [/] [link=http://e]y", user="[red]")
        _, table = await open_host(pilot, dataclasses.replace(sample, processes=tuple(p)))
        row = table.get_row("4:40004")
        assert isinstance(row[-1], Text) and row[-1].plain == "[b]x[/b] [/] [link=http://e]y"
        assert str(row[3]) == "[red]"
