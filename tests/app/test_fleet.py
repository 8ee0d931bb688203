"""Pilot and snapshot tests of the Fleet screen and the add-host form, with recorded states."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from textual.pilot import Pilot
from textual.widgets import Input

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import ContainersUpdate, EngineStatus, GpuUpdate, HostStatus
from gpudesk.app.modals.add_host import AddHostModal
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.host_key import HostKeyModal
from gpudesk.app.screens.fleet import FleetScreen
from gpudesk.app.screens.help import HelpScreen
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.widgets.host_list import HostList
from gpudesk.core.config import Host, Inventory
from gpudesk.core.engine import EngineInfo, describe_failure
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.sample import parse_sample
from gpudesk.core.ssh import ConnState, ConnStatus

SIZE = (120, 30)
SAMPLE = Path(__file__).parents[1] / "fixtures/gpu/simulated_h100x8_agent_stream.jsonl"
# What core says when the local Docker socket is missing (the SDK's own exception text).
NO_SOCKET = describe_failure(
    requests.exceptions.ConnectionError(
        "('Connection aborted.', FileNotFoundError(2, 'No such file or directory'))"
    ),
    "localhost",
)
ENGINE = EngineInfo("24.0.7", "1.43", "Ubuntu 22.04.4 LTS", ("nvidia", "runc"), True)


def make_app() -> GpudeskApp:
    inv = Inventory.load()
    inv.add(Host(name="gpu-a100", hostname="10.0.0.5", user="alice"))
    inv.add(Host(name="gpu-h100", hostname="10.0.0.6", user="alice", port=2222, jump="bastion"))
    inv.add(Host(name="old-box", hostname="10.0.0.7"))
    return GpudeskApp(fleet_factory=lambda cb: Fleet.build(Inventory.load(), cb), connect=False)


def record_states(app: GpudeskApp) -> None:
    sample = parse_sample(SAMPLE.read_text().splitlines()[0])
    app.post_message(HostStatus(ConnStatus("localhost", ConnState.CONNECTED, "", 0.0)))
    app.post_message(EngineStatus("localhost", None, NO_SOCKET))
    app.post_message(ContainersUpdate("localhost", None, NO_SOCKET))
    app.post_message(HostStatus(ConnStatus("gpu-a100", ConnState.CONNECTED, "", 12.4)))
    app.post_message(EngineStatus("gpu-a100", ENGINE, None))
    app.post_message(GpuUpdate("gpu-a100", sample))
    app.post_message(
        HostStatus(ConnStatus("gpu-h100", ConnState.HOST_KEY_UNKNOWN, "unknown key", None, None,
                              "SHA256:q1w2e3r4t5y6u7i8o9p0", "ssh-ed25519"))
    )  # fmt: skip
    app.post_message(
        HostStatus(ConnStatus("old-box", ConnState.DISCONNECTED_RETRYING, "lost", None, 4.0))
    )


async def settle(pilot: Pilot[Any]) -> None:
    """Let messages and workers finish, then draw what the Fleet would draw on its next tick."""
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
    for screen in pilot.app.screen_stack:
        if isinstance(screen, FleetScreen):
            screen.flush()
            screen.update_summary()
    await pilot.pause()


def before(fn: Callable[[Pilot[Any]], Any]) -> Callable[[Pilot[Any]], Any]:
    return fn


async def test_rows_follow_host_status_messages() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        # The unknown-key question pops up on its own; answer it later.
        record_states(app)
        await settle(pilot)
        assert isinstance(app.screen, HostKeyModal)
        await pilot.press("escape")
        hosts = app.screen.query_one(HostList)
        assert hosts.row_names() == ["localhost", "gpu-a100", "gpu-h100", "old-box"]
        a100 = hosts.cells("gpu-a100")
        assert a100[2] == "connected" and a100[3] == "12.4 ms"
        assert a100[4] == "24.0.7 +nvidia"
        assert "free" in a100[5] and a100[5].startswith("SIM")
        assert hosts.cells("old-box")[2:4] == ["disconnected-retrying", "retry 4s"]
        # The short reason is in the cells, not only on the host's own screen.
        assert hosts.cells("localhost")[4] == "unreachable: no socket"
        assert hosts.cells("localhost")[6] == "error: no socket"
        summary = str(app.screen.query_one("#fleet-summary").render())
        assert "4 hosts" in summary and "2 connected" in summary and "free GPUs:" in summary


async def test_filter_narrows_rows_and_bang_inverts() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash")
        await pilot.press(*"gpu-")
        hosts = app.screen.query_one(HostList)
        assert hosts.row_names() == ["gpu-a100", "gpu-h100"]
        box = app.screen.query_one("#filter", Input)
        box.value = "!gpu-"
        await pilot.pause()
        assert hosts.row_names() == ["localhost", "old-box"]
        await pilot.press("escape")
        assert len(hosts.row_names()) == 4


async def test_help_lists_every_fleet_binding() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-keys").render())
        for key in ("a", "enter", "/", "r", "ctrl+d", "?", ":", "q"):
            assert f"{key} " in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_add_host_form_validates_then_saves() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("a")
        assert isinstance(app.screen, AddHostModal)
        await pilot.press(*"gpu-a100")
        error = app.screen.query_one("#add-host-error")
        assert "already exists" in str(error.render())
        app.screen.query_one("#name", Input).value = "new box"
        await pilot.pause()
        assert "not valid" in str(error.render())
        app.screen.query_one("#name", Input).value = "newbox"
        app.screen.query_one("#dest", Input).value = "ssh://bob@10.1.1.1:2200"
        await pilot.click("#add")
        await settle(pilot)
        assert not isinstance(app.screen, AddHostModal)
        saved = Inventory.load().get("newbox")
        assert (saved.user, saved.hostname, saved.port) == ("bob", "10.1.1.1", 2200)
        assert "newbox" in app.screen.query_one(HostList).row_names()


async def test_remove_asks_first_and_keeps_builtin() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+d")  # cursor on localhost: refused, no dialog
        assert not isinstance(app.screen, ConfirmModal)
        await pilot.press("down", "ctrl+d")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("escape")
        assert "gpu-a100" in Inventory.load().names()
        await pilot.press("ctrl+d", "y")
        await settle(pilot)
        assert "gpu-a100" not in Inventory.load().names()


async def test_enter_opens_host_screen_with_gpu_panel() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        record_states(app)
        await settle(pilot)
        await pilot.press("escape")  # the host-key question
        await pilot.press("down", "enter")
        assert isinstance(app.screen, HostScreen)
        info = str(app.screen.query_one("#host-info").render())
        assert "24.0.7" in info and "NVIDIA runtime" in info
        assert "SIMULATED" in str(app.screen.query_one("#gpu-panel").query("*").first().render())


def test_fleet_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        record_states(pilot.app)  # type: ignore[arg-type]
        await settle(pilot)
        await pilot.press("escape")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_host_key_question_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        record_states(pilot.app)  # type: ignore[arg-type]
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_add_host_form_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await pilot.press("a", *"bad name")

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


async def test_palette_changes_the_gpu_interval() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("colon")
        await pilot.press(*"gpu interval 2")
        await pilot.app.workers.wait_for_complete()  # the palette searches in a worker
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert app.gpu_interval == 2.0


async def test_sort_by_latency_reverse_and_an_invalid_filter_says_so() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        latency = {"localhost": 0.0, "gpu-a100": 12.4, "gpu-h100": 3.1}
        for name, ms in latency.items():
            app.post_message(HostStatus(ConnStatus(name, ConnState.CONNECTED, "", ms)))
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, FleetScreen)
        hosts = screen.query_one(HostList)
        await pilot.press(*["greater_than_sign"] * 4)  # HOST, DESTINATION, STATE, LATENCY
        header = str(screen.query_one("#hosts-header").render())
        assert "LATENCY ▲" in header and "HOST ▲" not in header
        by_latency = sorted(latency, key=lambda n: latency[n])
        assert hosts.row_names() == [*by_latency, "old-box"]  # no latency: last
        await pilot.press("S")
        assert hosts.row_names() == [*reversed(by_latency), "old-box"]
        assert "sorted by LATENCY ▼" in str(screen.query_one("#fleet-summary").render())

        await pilot.press("slash", *"gpu-(")
        assert len(hosts.row_names()) == 4
        assert "not a valid regex" in str(screen.query_one("#fleet-summary").render())
        await pilot.press("backspace")
        assert sorted(hosts.row_names()) == ["gpu-a100", "gpu-h100"]
