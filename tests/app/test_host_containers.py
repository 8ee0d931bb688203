"""The host screen's container list and the launch form, fed with recorded engine state."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import (
    ContainerStats,
    ContainersUpdate,
    EngineStatus,
    GpuUpdate,
    HostStatus,
)
from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.app.modals.forwards import ForwardsModal
from gpudesk.app.modals.launch import LaunchModal
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.widgets import container_table
from gpudesk.core.config import Host, Inventory
from gpudesk.core.containers import ContainerInfo, PortBinding
from gpudesk.core.containers.stats import Usage
from gpudesk.core.engine import EngineInfo
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet
from gpudesk.core.forwards import Forward, ForwardKey, local_opener
from gpudesk.core.gpu.sample import parse_sample
from gpudesk.core.ssh import ConnState, ConnStatus

SIZE = (120, 40)
HOST = "gpu-h100"
SAMPLE = Path(__file__).parents[1] / "fixtures/gpu/simulated_h100x8_agent_stream.jsonl"
STARTED = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def container(
    name: str, flavour: Flavour | None, state: str, port: int | None, **kw: Any
) -> ContainerInfo:
    ports = (
        [PortBinding("127.0.0.1", port, f"{flavour.container_port}/tcp")]
        if flavour and port
        else []
    )
    return ContainerInfo(
        id=name * 4, name=name, flavour=flavour,
        image=kw.get("image", f"gpudesk/{flavour.value if flavour else 'x'}:3f2a9c1d"),
        state=state, status="running" if state == "running" else "exited (0)",
        created=STARTED, started_at=STARTED,
        uptime=timedelta(hours=5, minutes=7) if state == "running" else None,
        gpus=kw.get("gpus", ""), ports=ports, workspace=f"/home/alice/gpudesk/{name}",
        labels={}, is_gpudesk=flavour is not None, user="dev",
    )  # fmt: skip


CONTAINERS = [
    container("train-a", Flavour.SSH, "running", 32771, gpus="0,1"),
    container("notebook", Flavour.JUPYTER, "running", 32772, gpus="2"),
    container("old-exp", Flavour.SSH, "exited", None),
    container("postgres", None, "running", None, image="postgres:16"),
]


def make_app() -> GpudeskApp:
    Inventory.load().add(Host(name=HOST, hostname="10.0.0.6", user="alice"))
    return GpudeskApp(fleet_factory=lambda cb: Fleet.build(Inventory.load(), cb), connect=False)


async def open_host(pilot: Pilot[Any]) -> HostScreen:
    app: GpudeskApp = pilot.app  # type: ignore[assignment]
    app.post_message(HostStatus(ConnStatus(HOST, ConnState.CONNECTED, "", 3.2)))
    engine = EngineInfo("24.0.7", "1.43", "Ubuntu 22.04.4 LTS", ("nvidia", "runc"), True)
    app.post_message(EngineStatus(HOST, engine, None))
    app.post_message(GpuUpdate(HOST, parse_sample(SAMPLE.read_text().splitlines()[0])))
    app.post_message(ContainersUpdate(HOST, CONTAINERS, None))
    await pilot.pause()
    app.open_host(HOST)
    await pilot.pause()
    assert isinstance(app.screen, HostScreen)
    return app.screen


def rows(screen: HostScreen) -> list[str]:
    return [str(k.value) for k in screen.query_one("#containers", DataTable).rows]


async def test_gpudesk_containers_by_default_all_with_a() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        assert rows(screen) == ["train-a", "notebook", "old-exp"]
        assert app.models[HOST].extra["containers"] == "2/3 up"
        await pilot.press("a")
        assert rows(screen) == ["train-a", "notebook", "old-exp", "postgres"]
        cells = [str(c) for c in screen.query_one("#containers", DataTable).get_row("train-a")]
        assert cells[1:] == ["ssh", "gpudesk/ssh:3f2a9c1d", "running", "5h07m", "-", "-", "-",
                             "0,1", "127.0.0.1:32771→22/tcp"]  # fmt: skip


async def test_launch_form_suggests_a_free_gpu_and_refuses_taken_names() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_host(pilot)
        await pilot.press("L")
        form = app.screen
        assert isinstance(form, LaunchModal)
        gpus = form.query_one("#gpus", Input).value
        sample = app.models[HOST].gpu
        assert sample is not None
        free = [g.index for g in sample.gpus if g.util_gpu is not None and g.util_gpu < 10]
        assert gpus.rstrip(",") in {str(i) for i in free}
        form.query_one("#name", Input).value = "train-a"
        await pilot.pause()
        assert "already exists" in str(form.query_one("#launch-error").render())
        form.query_one("#gpus", Input).value = "0;2"
        form.query_one("#name", Input).value = "fresh"
        await pilot.pause()
        assert "not a GPU selection" in str(form.query_one("#launch-error").render())
        await pilot.press("escape")
        assert isinstance(app.screen, HostScreen)


async def test_remove_asks_and_says_the_workspace_stays() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_host(pilot)
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmModal)
        text = str(app.screen.query_one(".dialog-detail").render())
        assert "/home/alice/gpudesk/train-a" in text and "stay" in text
        assert "gpudesk-train-a" in text
        await pilot.press("escape")


def test_host_screen_with_containers_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


def test_launch_form_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_host(pilot)
        await pilot.press("J")
        name = pilot.app.screen.query_one("#name", Input)
        # A blinking cursor is drawn or not depending on when the snapshot is taken.
        name.cursor_blink = False
        name.value = "nb-demo"

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


class _TagServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"tensorboard")


class _FakeDev:
    def __init__(self, server: _TagServer) -> None:
        self.server = server

    def forward(self, name: str, port: int, local_port: int | None) -> Forward:
        key = ForwardKey(HOST, name, port)
        published = {"Id": "c1", "State": {"Status": "running"}, "NetworkSettings": {
            "Ports": {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(self.server.port)}]}
        }}  # fmt: skip
        return Forward(key, lambda: published, local_opener, local_port or 0)


async def test_forward_a_port_from_the_container_row_then_stop_it() -> None:
    app = make_app()
    server = _TagServer()
    app.state.devcontainers = lambda _host: _FakeDev(server)  # type: ignore[assignment,method-assign,return-value]
    async with app.run_test(size=SIZE) as pilot:
        await open_host(pilot)
        await pilot.press("f")
        assert isinstance(app.screen, ForwardsModal)
        app.screen.query_one("#port", Input).value = "6006"
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        forward = app.state.forwards_of(HOST, "train-a")[6006]
        with socket.create_connection(("127.0.0.1", forward.local_port), timeout=5) as conn:
            assert conn.recv(100) == b"tensorboard"
        await pilot.press("f")
        modal = app.screen
        assert isinstance(modal, ForwardsModal)
        listed = modal.query_one("#forward-list", OptionList)
        assert str(listed.get_option_at_index(0).prompt) == f"6006 -> {forward.url}"
        listed.highlighted = 0
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert app.state.forwards_of(HOST, "train-a") == {}
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", forward.local_port), timeout=5).close()
    server.sock.close()


async def test_a_sudo_container_says_so_in_its_row() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        sudo = container("root-ok", Flavour.SSH, "running", 32773)
        sudo.labels["io.gpudesk.sudo"] = "1"
        app.post_message(ContainersUpdate(HOST, [*CONTAINERS, sudo], None))
        await pilot.pause()
        cells = [str(c) for c in screen.query_one("#containers", DataTable).get_row("root-ok")]
        assert cells[1] == "ssh+sudo"


def cell(screen: HostScreen, name: str, column: str) -> str:
    table = screen.query_one("#containers", DataTable)
    return str(table.get_cell(name, column))


async def test_j_j_i_inspects_the_third_row(monkeypatch: pytest.MonkeyPatch) -> None:
    inspected: list[str] = []
    monkeypatch.setattr(HostScreen, "load_inspect", lambda self, name: inspected.append(name))
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        await pilot.press("j", "j", "i")
        assert inspected == [rows(screen)[2]] == ["old-exp"]
        await pilot.press("k", "i")
        assert inspected[-1] == "notebook"


async def test_sort_keys_cycle_columns_reverse_and_show_in_the_header() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        table = screen.query_one("#containers", DataTable)
        await pilot.press("greater_than_sign")  # sort by NAME, ascending
        assert rows(screen) == sorted(rows(screen)) == ["notebook", "old-exp", "train-a"]
        assert [str(c.label) for c in table.columns.values()][:2] == ["NAME ▲", "FLAVOUR"]
        await pilot.press("S")
        assert rows(screen) == ["train-a", "old-exp", "notebook"]
        assert "NAME ▼" in [str(c.label) for c in table.columns.values()]
        title = str(screen.query_one("#containers-title").render())
        assert "sorted by NAME ▼" in title
        # The cursor stays on its container across a re-sort.
        table.move_cursor(row=rows(screen).index("notebook"))
        await pilot.press("greater_than_sign")  # FLAVOUR
        assert screen.selected() is not None and screen.selected().name == "notebook"  # type: ignore[union-attr]
        await pilot.press("less_than_sign", "less_than_sign")  # back past NAME: unsorted
        assert rows(screen) == ["train-a", "notebook", "old-exp"]


async def test_filter_narrows_and_an_invalid_regex_says_so() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        await pilot.press("slash", *"^(train|note)")
        assert rows(screen) == ["train-a", "notebook"]
        box = screen.query_one("#containers-filter", Input)
        box.value = "!^(train|note)"
        await pilot.pause()
        assert rows(screen) == ["old-exp"]
        box.value = "train("
        await pilot.pause()
        assert rows(screen) == ["train-a", "notebook", "old-exp"]
        title = str(screen.query_one("#containers-title").render())
        assert "not a valid regex" in title
        await pilot.press("enter", "escape")  # back to the table, then clear the filter
        assert isinstance(app.screen, HostScreen) and len(rows(screen)) == 3
        await pilot.press("escape")
        assert not isinstance(app.screen, HostScreen)


async def test_usage_columns_show_the_stats_and_the_containers_gpu_memory() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        app.post_message(
            ContainerStats(
                HOST,
                {
                    "train-a": Usage(153.26, 3 * 2**30 + 2**29, 16 * 2**30),
                    "old-exp": Usage(99.0, 1, 2),
                },
            )
        )
        # The GPU agent maps process 40001 (4 GiB) and 40002 (2 GiB) to train-a.
        line = SAMPLE.read_text().splitlines()[0]
        data = json.loads(line)
        data["processes"][0].update(container_name="train-a", used_memory=4 * 2**30)
        data["processes"][1].update(container_name="train-a", used_memory=2 * 2**30)
        app.post_message(GpuUpdate(HOST, parse_sample(json.dumps(data))))
        await pilot.pause()
        assert cell(screen, "train-a", "cpu") == "153.3"
        assert cell(screen, "train-a", "memory") == "3.5GiB / 16.0GiB"
        assert cell(screen, "train-a", "gpu_memory") == "6.0GiB"
        assert cell(screen, "notebook", "cpu") == "-"
        assert cell(screen, "old-exp", "cpu") == "-"  # a stopped container shows no usage
        # CPU % sorts as a number; containers without a figure go last.
        while "CPU %" not in [str(c.label).rstrip(" ▲▼") for c in
                              screen.query_one("#containers", DataTable).columns.values()
                              if "▲" in str(c.label)]:  # fmt: skip
            await pilot.press("greater_than_sign")
        assert rows(screen)[0] == "train-a"


async def test_up_is_computed_from_the_start_time_each_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [STARTED + timedelta(hours=5, minutes=7)]
    monkeypatch.setattr(container_table, "clock", lambda: now[0])
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host(pilot)
        assert cell(screen, "train-a", "uptime") == "5h07m"
        now[0] += timedelta(minutes=3)  # no relist, no event: only time passes

        async def redrawn() -> None:
            while cell(screen, "train-a", "uptime") != "5h10m":
                await pilot.pause(0.1)

        await asyncio.wait_for(redrawn(), 10)


async def test_help_lists_the_tables_own_keys() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_host(pilot)
        await pilot.press("question_mark")
        text = str(app.screen.query_one("#help-keys").render())
        for key in ("j ", "k ", "> ", "< ", "S ", "/ ", "i "):
            assert key in text, key
