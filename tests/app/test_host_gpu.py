"""The host screen's GPU panel inside the real app, fed with a recorded 8-GPU agent stream."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from rich.style import Style
from textual.color import Color
from textual.pilot import Pilot
from textual.widgets import Static

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import EngineStatus, GpuUpdate, HostStatus
from gpudesk.app.screens.host import HostScreen
from gpudesk.app.widgets.gpu_panel import GpuPanel, GpuRow
from gpudesk.core.config import Host, Inventory
from gpudesk.core.engine import EngineInfo
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.sample import GpuSample, parse_sample
from gpudesk.core.gpu.stream import GpuHistory
from gpudesk.core.ssh import ConnState, ConnStatus

SIZE = (120, 40)
FIXTURE = Path(__file__).parents[1] / "fixtures/gpu/simulated_h100x8_agent_stream.jsonl"
ENGINE = EngineInfo("24.0.7", "1.43", "Ubuntu 22.04.4 LTS", ("nvidia", "runc"), True)
HOST = "gpu-h100"


def load_samples() -> list[GpuSample]:
    return [parse_sample(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def make_app() -> GpudeskApp:
    Inventory.load().add(Host(name=HOST, hostname="10.0.0.6", user="alice"))
    app = GpudeskApp(fleet_factory=lambda cb: Fleet.build(Inventory.load(), cb), connect=False)
    # The recorded samples are 0.2 s apart: a 1 s window makes them span the sparklines.
    app.models[HOST].gpu_history = GpuHistory(window_s=1.0, max_points=100)
    return app


def connect(app: GpudeskApp) -> None:
    app.post_message(HostStatus(ConnStatus(HOST, ConnState.CONNECTED, "", 3.2)))
    app.post_message(EngineStatus(HOST, ENGINE, None))


async def settle(pilot: Pilot[Any]) -> None:
    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_host_screen(pilot: Pilot[Any]) -> HostScreen:
    app: GpudeskApp = pilot.app  # type: ignore[assignment]
    connect(app)
    await settle(pilot)
    app.open_host(HOST)
    await settle(pilot)
    assert isinstance(app.screen, HostScreen)
    return app.screen


def test_host_screen_gpu_snapshot(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await open_host_screen(pilot)
        for sample in load_samples():  # updates arrive while the screen is open
            pilot.app.post_message(GpuUpdate(HOST, sample))
        await settle(pilot)

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=run_before)


async def test_samples_update_the_open_host_screen_in_place() -> None:
    samples = load_samples()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host_screen(pilot)
        panel = screen.query_one(GpuPanel)
        assert "waiting for GPU samples" in str(panel.summary.render())
        app.post_message(GpuUpdate(HOST, samples[0]))
        await settle(pilot)
        rows = list(panel.query(GpuRow))
        assert len(rows) == 8
        for sample in samples[1:]:
            app.post_message(GpuUpdate(HOST, sample))
        await settle(pilot)
        assert list(panel.query(GpuRow)) == rows  # same widgets, updated in place
        last = samples[-1].gpus[2]
        assert f"{last.util_gpu:3.0f}%" in str(rows[2].util.render())
        assert panel.has_class("-simulated") and panel.banner.region.height == 1
        # Five samples of history: the busy GPU's sparkline is drawn over several cells.
        spark = str(rows[2].spark.render())
        assert sum(ch in "▁▂▃▄▅▆▇█" for ch in spark) >= 3


def styled(widget: Static, text: str) -> Style:
    """The style the screen draws ``text`` of ``widget`` with (its first matching segment)."""
    strip = widget.render_line(0)
    for segment in strip:
        if text in segment.text:
            return segment.style or Style()
    raise AssertionError(f"{text!r} not drawn in {[s.text for s in strip]!r}")


def color_of(app: GpudeskApp, variable: str) -> tuple[int, int, int]:
    rgb = Color.parse(app.theme_variables[variable]).rgb
    return (rgb[0], rgb[1], rgb[2])


def triplet(style: Style) -> tuple[int, int, int] | None:
    if style.color is None:
        return None
    t = style.color.get_truecolor()
    return (t.red, t.green, t.blue)


async def test_threshold_styling_follows_each_sample() -> None:
    base = load_samples()[0]
    gpus = list(base.gpus)
    total = gpus[0].mem_total or 0
    # GPU 0 hits exactly 80 °C, GPU 3 (hot in the recording) cools down to 79 °C,
    # GPU 1 reaches exactly 90 % memory, GPU 6 (full in the recording) drops to 50 %,
    # GPU 2 gets ECC errors, GPU 5 (errors in the recording) has none.
    gpus[0] = dataclasses.replace(gpus[0], temperature=80.0)
    gpus[3] = dataclasses.replace(gpus[3], temperature=79.0)
    gpus[1] = dataclasses.replace(gpus[1], mem_used=int(total * 0.9) + 1)
    gpus[6] = dataclasses.replace(gpus[6], mem_used=total // 2)
    gpus[2] = dataclasses.replace(gpus[2], ecc_errors=3)
    gpus[5] = dataclasses.replace(gpus[5], ecc_errors=0)
    changed = dataclasses.replace(base, seq=base.seq + 1, ts=base.ts + 0.2, gpus=tuple(gpus))

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_host_screen(pilot)
        app.post_message(GpuUpdate(HOST, base))
        await settle(pilot)
        rows = list(screen.query(GpuRow))
        error, warning = color_of(app, "error"), color_of(app, "warning")

        # The recording: GPU 3 hot, GPU 6 memory nearly full, GPU 5 with ECC errors.
        hot = styled(rows[3].temp, "84°C")
        assert rows[3].temp.has_class("-hot") and hot.bold and triplet(hot) == error
        cool = styled(rows[0].temp, "30°C")
        assert not cool.bold and triplet(cool) != error
        full = styled(rows[6].mem, "95%")
        assert rows[6].mem.has_class("-mem-full") and full.bold and triplet(full) == warning
        assert not styled(rows[1].mem, "%").bold
        ecc = styled(rows[5].ecc, "ECC 2")
        assert rows[5].ecc.has_class("-ecc") and ecc.bold and triplet(ecc) == error
        assert str(rows[2].ecc.render()) == ""

        app.post_message(GpuUpdate(HOST, changed))
        await settle(pilot)
        assert list(screen.query(GpuRow)) == rows
        boundary = styled(rows[0].temp, "80°C")
        assert rows[0].temp.has_class("-hot") and boundary.bold and triplet(boundary) == error
        assert not rows[3].temp.has_class("-hot") and not styled(rows[3].temp, "79°C").bold
        nearly_full = styled(rows[1].mem, "90%")
        assert rows[1].mem.has_class("-mem-full") and triplet(nearly_full) == warning
        assert not rows[6].mem.has_class("-mem-full") and not styled(rows[6].mem, "50%").bold
        errors = styled(rows[2].ecc, "ECC 3")
        assert rows[2].ecc.has_class("-ecc") and triplet(errors) == error
        assert not rows[5].ecc.has_class("-ecc") and str(rows[5].ecc.render()) == ""


async def test_header_says_simulated_when_gpus_are_simulated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUDESK_SIMULATE_GPUS", "8")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "SIMULATED" in app.sub_title
