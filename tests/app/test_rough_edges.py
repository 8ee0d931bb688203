"""Issue 14.10's rough edges, each as the user meets it."""

from __future__ import annotations

import re
from typing import Any
from unittest.mock import patch

from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Button, OptionList, Static

from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.launch import LaunchModal
from gpudesk.app.screens.help import HelpScreen
from gpudesk.app.screens.launch_progress import LaunchProgressScreen
from gpudesk.app.screens.run_detail import RunDetailScreen
from gpudesk.core.devcontainers import LaunchRequest, Reach
from gpudesk.core.flavours import Flavour
from tests.app import test_fleet
from tests.app.test_gpu_processes import HOST, Source, open_host, real_sample
from tests.app.test_gpu_processes import make_app as host_app
from tests.app.test_runs_ui import RecordedSource, ScreenApp

SIZE = (120, 40)


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def text(widget: Any) -> str:
    return str(widget.content)


async def test_help_titles_are_for_people() -> None:
    app = test_fleet.make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        title = text(app.screen.query_one("#help-title", Static))
        assert title.strip() == "Keys: Fleet"
        app.pop_screen()
        app.push_screen(RunDetailScreen(HOST, "cls-live", "train-a", source=Source()))
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        title = text(app.screen.query_one("#help-title", Static)).strip()
        assert title == "Keys: Run detail · run cls-live on gpu-a100/train-a"


async def test_the_palette_lists_help_and_quit_once() -> None:
    app = test_fleet.make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        options = app.screen.query_one(OptionList)
        for query, words in (("quit", "quit"), ("help", "help"), ("keys", "keys")):
            await pilot.press(*query)
            await app.workers.wait_for_complete()
            await pilot.pause(0.3)
            prompts = [str(options.get_option_at_index(i).prompt).lower()
                       for i in range(options.option_count)]  # fmt: skip
            found = [p for p in prompts if words in p.split("\n")[0]]
            assert len(found) <= 1, (query, prompts)
            for _ in query:
                await pilot.press("backspace")


async def test_the_launch_form_says_an_ssh() -> None:
    modal = LaunchModal(HOST, Flavour.SSH, set(), [0], True)
    assert modal.form_title() == "Launch an SSH dev container on gpu-a100"
    jupyter = LaunchModal(HOST, Flavour.JUPYTER, set(), [0], True)
    assert jupyter.form_title() == "Launch a Jupyter dev container on gpu-a100"


async def test_enter_closes_the_launch_result() -> None:
    app = host_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_host(pilot, real_sample())
        screen = LaunchProgressScreen(HOST, LaunchRequest(Flavour.SSH, "train-b"))
        app.push_screen(screen)
        await settle(pilot)  # the launch fails at once: no connection in tests
        assert not screen.running and app.screen is screen
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is not screen


async def test_the_include_question_defaults_to_adding_it_and_says_so() -> None:
    app = host_app()
    async with app.run_test(size=SIZE) as pilot:
        host, _ = await open_host(pilot, real_sample())
        added: list[object] = []
        with patch(
            "gpudesk.app.screens.host.sshconfig.ensure_include",
            side_effect=lambda *a: added.append(a),
        ):
            host._launched(Reach("train-a", Flavour.SSH, ssh_alias="gpudesk-train-a"))
            await pilot.pause()
            assert isinstance(app.screen, ConfirmModal)
            assert app.screen.focused is app.screen.query_one("#yes", Button)
            detail = text(app.screen.query_one(".dialog-detail", Static))
            assert "Enter adds it (the default" in detail
            await pilot.press("enter")
            await pilot.pause()
        assert len(added) == 1


async def test_run_detail_says_step_once_and_step_time() -> None:
    app = ScreenApp(
        lambda: RunDetailScreen("gpu-a100", "cls-live", "dev-a", source=RecordedSource())
    )
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        summary = text(app.screen.query_one("#detail-summary", Static))
        # "step 24/40" once; the step's duration is "step time", not a second "step".
        assert len(re.findall(r"(?<!@ )\bstep (?!time)", summary)) == 1, summary
        assert re.search(r"step time \d+\.\d{3} s", summary), summary
