"""A snapshot of every screen and modal at 80x24 and at 200x50, fed with recorded states.

The recorded inputs are the ones the other app tests use: the simulated 8-GPU agent stream
(tests/fixtures/gpu), the recorded engine and container states of test_fleet and
test_host_containers, and the recorded textcls run (tests/fixtures/runs/textcls-cpu). The GPU
processes are placed in the recorded containers and one belongs to the recorded live run, as
in test_gpu_processes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import Input

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import ContainersUpdate, EngineStatus, GpuUpdate, HostStatus, LogLines
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.forwards import ForwardShown, ForwardsModal
from gpudesk.app.modals.inspect import InspectModal
from gpudesk.app.modals.submit_run import SubmitRunModal
from gpudesk.app.screens.help import HelpScreen
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.screens.launch_progress import LaunchProgressScreen
from gpudesk.app.screens.logs import LogScreen
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.app.screens.runs import RunsScreen
from gpudesk.app.widgets.gpu_panel import GpuProcessTable
from gpudesk.core.devcontainers import LaunchRequest, Reach
from gpudesk.core.engine import EngineInfo
from gpudesk.core.flavours import Flavour
from gpudesk.core.logs import LogFollower, LogTarget
from gpudesk.core.ssh import ConnState, ConnStatus
from tests.app import test_fleet
from tests.app.test_fleet import settle
from tests.app.test_gpu_processes import HOST, Killer, Source, real_sample
from tests.app.test_gpu_processes import make_app as host_app
from tests.app.test_host_containers import CONTAINERS
from tests.app.test_runs_ui import LOG, RecordedSource, ScreenApp

SIZES = {"80x24": (80, 24), "200x50": (200, 50)}
ENGINE = EngineInfo("24.0.7", "1.43", "Ubuntu 22.04.4 LTS", ("nvidia", "runc"), True)
Before = Callable[[Pilot[Any]], Awaitable[None]]


async def open_host(pilot: Pilot[Any]) -> HostScreen:
    app: GpudeskApp = pilot.app  # type: ignore[assignment]
    app.post_message(HostStatus(ConnStatus(HOST, ConnState.CONNECTED, "", 3.2)))
    app.post_message(EngineStatus(HOST, ENGINE, None))
    app.post_message(ContainersUpdate(HOST, CONTAINERS, None))
    app.post_message(GpuUpdate(HOST, real_sample()))
    await settle(pilot)
    screen = HostScreen(HOST, runs=Source(), killer=Killer())
    app.push_screen(screen)
    await settle(pilot)
    return screen


def fleet() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        test_fleet.record_states(pilot.app)  # type: ignore[arg-type]
        await settle(pilot)
        await pilot.press("escape")  # the unknown-key question that pops up on its own
        await settle(pilot)

    return test_fleet.make_app(), before


def host_key() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        test_fleet.record_states(pilot.app)  # type: ignore[arg-type]
        await settle(pilot)

    return test_fleet.make_app(), before


def add_host() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("a", *"bad name")

    return test_fleet.make_app(), before


def help_fleet() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    return test_fleet.make_app(), before


def host() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)

    return host_app(), before


def kill_question() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        screen = await open_host(pilot)
        table = screen.query_one(GpuProcessTable)
        table.focus()
        table.move_cursor(row=table.get_row_index("1:40001"))
        await pilot.press("k")
        await pilot.pause()

    return host_app(), before


def launch_form() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)
        await pilot.press("L")
        await pilot.pause()
        # The suggested name ends in a random suffix: a fixed one keeps the snapshot stable.
        name = pilot.app.screen.query_one("#name", Input)
        name.value = "train-b"
        # Setting the value restarts the cursor's blink: caught mid-blink under load, the
        # snapshot would differ by the cursor alone.
        name.cursor_blink = False
        await pilot.pause()

    return host_app(), before


def submit_run() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)
        pilot.app.push_screen(SubmitRunModal(HOST, "train-a"))
        await pilot.pause()

    return host_app(), before


def forwards() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)
        shown = [ForwardShown(6006, "http://127.0.0.1:41234/")]
        pilot.app.push_screen(ForwardsModal(HOST, "train-a", shown))
        await pilot.pause()

    return host_app(), before


def inspect() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)
        info = CONTAINERS[0]
        text = '{\n  "Name": "/train-a",\n  "Config": {\n    "Image": "' + info.image + '"\n  }\n}'
        pilot.app.push_screen(InspectModal(info.name, text))
        await pilot.pause()

    return host_app(), before


def include_question() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        screen = await open_host(pilot)
        reach = Reach("train-a", Flavour.SSH, ssh_alias="gpudesk-train-a")
        # The question names gpudesk's ssh config; a fixed path keeps the snapshot stable.
        fixed = Path("/home/alice/.config/gpudesk/ssh_config")
        with patch("gpudesk.app.screens.host.sshconfig.config_path", return_value=fixed):
            screen._launched(reach)
        await pilot.pause()

    return host_app(), before


def launch_progress() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)
        screen = LaunchProgressScreen(HOST, LaunchRequest(Flavour.SSH, "train-b", gpus="0"))
        pilot.app.push_screen(screen)
        await settle(pilot)  # the launch itself fails at once (no connection in tests)
        screen.query_one("#launch-log").clear()  # type: ignore[attr-defined]
        for line in ("Building gpudesk/ssh:3f2a9c1d (first time on this host)",
                     "Step 1/9 : FROM pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime",
                     "Successfully built 3f2a9c1d", "Starting train-b",
                     "waiting for sshd in train-b"):  # fmt: skip
            screen.post_message(LaunchProgressScreen.Line(line))
        error = "The NVIDIA runtime is missing on gpu-a100; install nvidia-container-toolkit."
        screen.post_message(LaunchProgressScreen.Finished(None, error, no_gpu=True))
        await settle(pilot)

    return host_app(), before


def runs() -> tuple[App[Any], Before]:
    return ScreenApp(lambda: RunsScreen(source=RecordedSource())), settle


def run_detail() -> tuple[App[Any], Before]:
    source = RecordedSource()
    return ScreenApp(
        lambda: RunDetailScreen("gpu-a100", "cls-live", "dev-a", source=source)
    ), settle


def logs() -> tuple[App[Any], Before]:
    def factory(on_batch: Callable[[list[str], int], None]) -> LogFollower:
        return LogFollower(lambda: contextlib.nullcontext(iter([])), on_batch)

    app = ScreenApp(
        lambda: LogScreen("gpu-a100", LogTarget.run("cls-live"), follower_factory=factory)
    )

    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.screen.post_message(LogLines(LOG, len(LOG)))
        await settle(pilot)

    return app, before


def help_run_detail() -> tuple[App[Any], Before]:
    app, _ = run_detail()

    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(HelpScreen(pilot.app.screen))
        await pilot.pause()

    return app, before


def confirm_remove() -> tuple[App[Any], Before]:
    async def before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        pilot.app.push_screen(ConfirmModal("Remove host gpu-a100 (alice@10.0.0.5) from gpudesk?",
                              "Only the inventory entry goes.", confirm="Remove"))  # fmt: skip
        await pilot.pause()

    return test_fleet.make_app(), before


SURFACES: dict[str, Callable[[], tuple[App[Any], Before]]] = {
    "fleet": fleet,
    "host_key": host_key,
    "add_host": add_host,
    "help_fleet": help_fleet,
    "confirm_remove": confirm_remove,
    "host": host,
    "kill_question": kill_question,
    "launch_form": launch_form,
    "submit_run": submit_run,
    "forwards": forwards,
    "inspect": inspect,
    "include_question": include_question,
    "launch_progress": launch_progress,
    "runs": runs,
    "run_detail": run_detail,
    "logs": logs,
    "help_run_detail": help_run_detail,
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("surface", list(SURFACES))
def test_snapshot(snap_compare: Any, surface: str, size: str) -> None:
    app, before = SURFACES[surface]()
    assert snap_compare(app, terminal_size=SIZES[size], run_before=before)
