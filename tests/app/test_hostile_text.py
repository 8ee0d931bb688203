"""Hostile strings from hosts and containers through every screen, modal and widget (issue 11.3).

Each surface is fed strings a container or host could write (markup, terminal escapes,
control characters, bidi overrides, right-to-left text, very long text) where it shows a name,
command, user, image, log line or error. Every surface must (1) not crash, (2) keep the literal
text (control characters drawn as visible stand-ins, app/plain.py), and (3) send no control
character to the terminal: the exported screen must hold none.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.text import Text
from textual.app import App
from textual.pilot import Pilot
from textual.widgets import DataTable, Log, Static

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import (
    ContainersUpdate,
    EngineStatus,
    GpuUpdate,
    HostStatus,
    LogEnded,
    LogLines,
)
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.forwards import ForwardsModal
from gpudesk.app.modals.host_key import HostKeyModal
from gpudesk.app.modals.inspect import InspectModal
from gpudesk.app.modals.submit_run import SubmitRunModal
from gpudesk.app.plain import visible
from gpudesk.app.screens.help import HelpScreen
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.screens.launch_progress import LaunchProgressScreen
from gpudesk.app.screens.logs import LogScreen
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.app.screens.runs import RunsScreen
from gpudesk.app.widgets.gpu_panel import GpuPanel, GpuProcessTable
from gpudesk.app.widgets.host_list import HostList
from gpudesk.app.widgets.log_view import LogView
from gpudesk.core.config import Host, Inventory
from gpudesk.core.devcontainers import LaunchRequest
from gpudesk.core.engine import EngineInfo
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.sample import parse_sample
from gpudesk.core.logs import LogFollower, LogTarget
from gpudesk.core.runs import Run, StopResult
from gpudesk.core.ssh import ConnState, ConnStatus
from tests.app.test_host_containers import container
from tests.app.test_runs_ui import METRICS, recorded_run

SIZE = (120, 40)
HOST = "gpu-a100"
SAMPLE = Path(__file__).parents[1] / "fixtures/gpu/simulated_h100x8_agent_stream.jsonl"

CURATED = [
    "bad[/]name",
    "[b]bold[/b] [i]",
    "[link=http://evil.example]click[/link]",
    "[@click=app.quit]quit[/]",
    "\\[escaped] and trailing\\",
    "\x1b[31mred\x1b[0m",
    "\x1b]52;c;aGVsbG8=\x07 clipboard",
    "\x1b]0;title\x07",
    "nul\x00 bell\x07 del\x7f c1\x9b tab\t vt\x0b",
    "progress 10%\rprogress 100%",
    "\u202eexe.txt\u202c \u2066iso\u2069",
    "مرحبا [/] بالعالم",
    "שלום עולם",
    "wide 漢字 🧨 e\u0301",
    "x" * 400,
]
FRAGMENTS = st.sampled_from(["[", "]", "[/]", "[b]", "\\", "\x1b", "[31m", "\r", "\n", "\u202e",
                             "=", "@", "link", "漢", " "])  # fmt: skip
HOSTILE = st.one_of(
    st.sampled_from(CURATED),
    st.lists(FRAGMENTS, min_size=1, max_size=30).map("".join),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=200),
)
# Control characters and bidi overrides: none may reach the terminal.
TERMINAL_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def hostile_test(fn: Callable[[str], Coroutine[Any, Any, None]]) -> Callable[[str], None]:
    """Run ``fn`` on the curated strings and on generated ones."""

    @settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
    @given(HOSTILE)
    @example("\n".join(CURATED))
    @example("y" * 5000)
    def test(s: str) -> None:
        asyncio.run(fn(s))

    test.__name__ = fn.__name__
    test.__doc__ = fn.__doc__
    return test


def plain_of(widget: Any) -> str:
    content = widget.content if isinstance(widget, Static) else widget
    return content.plain if isinstance(content, Text) else str(content)


def one_line(s: str) -> str:
    return visible(s)


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def assert_terminal_clean(app: App[Any]) -> None:
    screen = app.export_screenshot()
    bad = TERMINAL_CONTROLS.findall(screen)
    assert not bad, f"control characters reached the terminal: {bad[:5]!r}"


def make_app() -> GpudeskApp:
    inventory = Inventory.load()
    if HOST not in inventory.names():  # one home for all of a test's examples
        inventory.add(Host(name=HOST, hostname="10.0.0.5", user="alice"))
    return GpudeskApp(fleet_factory=lambda cb: Fleet.build(Inventory.load(), cb), connect=False)


class Source:
    def __init__(self, s: str) -> None:
        error = json.dumps({"ts": 1.0, "step": 0, "epoch": 0.0, "event": "error", "message": s})
        run = recorded_run(s, s, [*METRICS[:6], error], alive=True, now_offset=1.0)
        self.run_ = dataclasses.replace(run, log_tail=[s, *s.split("\n")])

    def runs(self, host: str | None) -> tuple[list[Run], list[str]]:
        return [self.run_], [f"{HOST}: {self.run_.name}"]

    def run(self, host: str, name: str, container: str) -> Run:
        return self.run_

    def stop(self, run: Run, grace: float) -> StopResult:
        return StopResult(run.name, "terminated", run.name)

    def rerun(self, run: Run) -> Run:
        return run


class ScreenApp(App[None]):
    def __init__(self, make: Callable[[], Any]) -> None:
        super().__init__()
        self.make = make

    def on_mount(self) -> None:
        self.push_screen(self.make())


# --------------------------------------------------------------------------- the surfaces


@hostile_test
async def test_fleet_and_host_screen(s: str) -> None:
    """Engine version and errors on the Fleet; GPU names, messages, process commands, users and
    containers, container names/images/statuses and the kill question on the host screen."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        app.post_message(HostStatus(ConnStatus(HOST, ConnState.CONNECTED, s, 3.2)))
        app.post_message(EngineStatus(HOST, EngineInfo(s, "1.43", s, ("nvidia",), True), None))
        app.post_message(EngineStatus("localhost", None, s))
        app.post_message(ContainersUpdate("localhost", None, s))
        ours = dataclasses.replace(container("train-a", Flavour.SSH, "running", 32771), name=s,
                                   image=s, status=s, gpus=s)  # fmt: skip
        app.post_message(ContainersUpdate(HOST, [ours], None))
        sample = parse_sample(SAMPLE.read_text().splitlines()[0])
        gpus = [dataclasses.replace(g, name=s) for g in sample.gpus]
        procs = [dataclasses.replace(p, command=s, user=s, container_name=s, ns_pid=5)
                 for p in sample.processes]  # fmt: skip
        sample = dataclasses.replace(sample, hostname=s, message=s, simulated=False,
                                     gpus=tuple(gpus), processes=tuple(procs))  # fmt: skip
        app.post_message(GpuUpdate(HOST, sample))
        await settle(pilot)
        for screen in app.screen_stack:
            if hasattr(screen, "flush"):
                screen.flush()
        await pilot.pause()
        hosts = app.screen.query_one(HostList)
        assert visible(s) in hosts.rows[HOST].cells[4].plain  # type: ignore[union-attr]
        assert_terminal_clean(app)

        app.open_host(HOST)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, HostScreen)
        assert visible(s) in plain_of(screen.query_one("#host-info", Static)).replace("\n", "")
        panel = screen.query_one(GpuPanel)
        assert visible(s) in plain_of(panel.summary)
        table = screen.query_one(GpuProcessTable)
        row = table.get_row_at(0)
        assert [row[2].plain, row[3].plain, row[-1].plain] == [one_line(s)] * 3
        cells = screen.query_one("#containers", DataTable).get_row_at(0)
        assert cells[0].plain == one_line(s) and cells[3].plain == one_line(s)
        assert_terminal_clean(app)

        table.focus()
        await pilot.press("k")  # the process's container is gpudesk's: the question
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert visible(s, lines=True) in plain_of(app.screen.query_one(".dialog-detail", Static))
        assert_terminal_clean(app)
        await pilot.press("escape")
        await pilot.pause()
        app.push_screen(InspectModal(s, json.dumps({"Name": s})))
        await pilot.pause()
        assert_terminal_clean(app)
        app.pop_screen()
        app.push_screen(ForwardsModal(HOST, s, []))
        await pilot.pause()
        assert_terminal_clean(app)
        app.pop_screen()
        app.push_screen(SubmitRunModal(HOST, s))
        await pilot.pause()
        assert_terminal_clean(app)
        app.pop_screen()
        status = ConnStatus(HOST, ConnState.HOST_KEY_UNKNOWN, s, None, None, s, s)
        app.push_screen(HostKeyModal(Host(name=HOST, hostname="10.0.0.5"), status))
        await pilot.pause()
        assert_terminal_clean(app)


@hostile_test
async def test_runs_run_detail_and_help(s: str) -> None:
    """Run names, containers, error lines and log lines on the runs view and a run's detail."""
    source = Source(s)
    app = ScreenApp(lambda: RunsScreen(source=source))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = app.screen.query_one(DataTable)
        assert table.get_row_at(0)[0].plain == one_line(s)
        assert visible(s, lines=True) in plain_of(app.screen.query_one("#runs-note", Static))
        assert_terminal_clean(app)
        app.push_screen(RunDetailScreen(HOST, s, s, source=source))
        await settle(pilot)
        summary = plain_of(app.screen.query_one("#detail-summary", Static))
        assert one_line(s) in summary.replace("\n", "") or visible(s, lines=True) in summary
        assert_terminal_clean(app)
        app.push_screen(HelpScreen(app.screen))
        await pilot.pause()
        assert_terminal_clean(app)


@hostile_test
async def test_log_screen(s: str) -> None:
    """Log lines and the reason a log ended."""

    def factory(on_batch: Callable[[list[str], int], None]) -> LogFollower:
        return LogFollower(lambda: contextlib.nullcontext(iter([])), on_batch)

    app = ScreenApp(lambda: LogScreen(HOST, LogTarget.run(s), follower_factory=factory))
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        lines = s.split("\n")
        screen.post_message(LogLines(lines, len(lines)))
        screen.post_message(LogEnded(s))
        await settle(pilot)
        view = screen.query_one(LogView)
        assert list(view.lines)[-len(lines) :] == [
            visible(([f for f in line.split("\r") if f] or [""])[-1].expandtabs(4))
            for line in lines
        ]
        assert visible(s, lines=True) in plain_of(screen.query_one("#log-status", Static))
        assert_terminal_clean(app)


@hostile_test
async def test_launch_progress(s: str) -> None:
    """Build and launch output lines, and the launch's error."""
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        request = LaunchRequest(flavour=Flavour.SSH, name="dev-a")
        screen = LaunchProgressScreen(HOST, request)
        app.push_screen(screen)
        await settle(pilot)  # the launch fails at once: the host is not connected
        screen.post_message(LaunchProgressScreen.Line(s))
        screen.post_message(LaunchProgressScreen.Finished(None, s))
        await settle(pilot)
        assert visible(s, lines=True) in plain_of(screen.query_one("#launch-status", Static))
        log = screen.query_one("#launch-log", Log)
        frames = [f for f in s.split("\r") if f] or [""]
        assert log.lines[-1] == visible(frames[-1])
        assert_terminal_clean(app)
