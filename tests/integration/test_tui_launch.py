"""The TUI launch flow against the real test bed: L, the form, progress, Include, ssh, remove."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Input

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import ContainerChange
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.launch import LaunchModal
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.screens.launch_progress import LaunchProgressScreen
from gpudesk.core.config import Inventory
from gpudesk.core.containers.watch import ContainersListed
from tests.integration.bed import bed_host

pytestmark = pytest.mark.slow


def test_launch_ssh_container_from_the_tui_and_reach_it(
    testbed: Any, known_hosts_file: Path, isolated_home: Path, docker_client: Any
) -> None:
    key = isolated_home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    Inventory.load().add(bed_host(testbed))

    async def scenario() -> None:
        listed = asyncio.Event()
        finished: asyncio.Queue[LaunchProgressScreen.Finished] = asyncio.Queue()

        def hook(message: object) -> None:
            if (
                isinstance(message, ContainerChange)
                and message.host == "bed"
                and isinstance(message.change, ContainersListed)
            ):
                listed.set()
            if isinstance(message, LaunchProgressScreen.Finished):
                finished.put_nowait(message)

        app = GpudeskApp()
        async with app.run_test(size=(130, 40), message_hook=hook) as pilot:
            await asyncio.wait_for(listed.wait(), 60)
            await pilot.press("down", "enter")
            assert isinstance(app.screen, HostScreen)
            await pilot.press("L")
            assert isinstance(app.screen, LaunchModal)
            app.screen.query_one("#name", Input).value = "tui-ssh"
            base = app.screen.query_one("#base", Input)
            base.value = testbed.base_image
            base.focus()
            await pilot.press("enter")
            assert isinstance(app.screen, LaunchProgressScreen), app.screen.query_one(
                "#launch-error"
            ).render()
            result = await asyncio.wait_for(finished.get(), 150)
            assert result.error is None, result.error
            assert result.reach is not None and result.reach.ssh_alias == "gpudesk-tui-ssh"
            await pilot.press("escape")  # close the progress screen
            await pilot.pause()
            assert isinstance(app.screen, ConfirmModal)  # the Include question
            await pilot.click("#yes")
            await pilot.pause()
            config = isolated_home / ".ssh" / "config"
            who = await asyncio.to_thread(
                subprocess.run,
                ["ssh", "-F", str(config), "-o", "BatchMode=yes", "gpudesk-tui-ssh", "whoami"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert who.stdout.strip() == "dev", who.stderr

            table = app.screen.query_one("#containers", DataTable)
            for _ in range(600):  # the engine event arrives over the SSH connection
                if "tui-ssh" in [str(k.value) for k in table.rows]:
                    break
                await pilot.pause(0.05)
            assert str(table.get_row("tui-ssh")[3]).startswith("running") or "Up" in str(
                table.get_row("tui-ssh")[3]
            )
            table.move_cursor(row=table.get_row_index("tui-ssh"))
            await pilot.press("ctrl+d")
            assert isinstance(app.screen, ConfirmModal)
            assert "tui-ssh" in str(app.screen.query_one(".dialog-title").render())
            await pilot.click("#yes")
            for _ in range(600):
                if "tui-ssh" not in [str(k.value) for k in table.rows]:
                    break
                await pilot.pause(0.05)
            assert "tui-ssh" not in [str(k.value) for k in table.rows]
            await pilot.press("q")

    try:
        asyncio.run(scenario())
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": "tui-ssh"}):
            c.remove(force=True)
    assert docker_client.containers.list(all=True, filters={"name": "tui-ssh"}) == []
