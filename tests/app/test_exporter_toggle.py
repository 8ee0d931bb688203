"""The TUI's background exporter: toggled from the palette, it serves the app's own state."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from textual.pilot import Pilot

from gpudesk.app.app import GpudeskApp
from gpudesk.core.metrics.serve import parse_listen
from tests.app.test_fleet import SIZE, make_app, record_states, settle


async def palette(pilot: Pilot[Any], command: str) -> None:
    await pilot.press("colon")
    await pilot.press(*command)
    await pilot.app.workers.wait_for_complete()  # the palette searches in a worker
    await pilot.pause()
    await pilot.press("enter")
    await settle(pilot)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_palette_starts_and_stops_the_exporter_on_the_apps_state() -> None:
    app: GpudeskApp = make_app()
    app.exporter.listen = parse_listen("127.0.0.1:0")  # any free port; 9835 by default
    async with app.run_test(size=SIZE) as pilot:
        record_states(app)
        await settle(pilot)
        await pilot.press("escape")  # the unknown host key question of gpu-h100
        await palette(pilot, "exporter")
        address = app.exporter.address
        assert address is not None and address.port != 0
        assert app.sub_title.endswith(f" · exporter on 127.0.0.1:{address.port}")
        got = await asyncio.to_thread(scrape, address.url)
        up = {dict(k[1])["host"]: v for k, v in got.items() if k[0] == "gpudesk_host_up"}
        assert up == {"localhost": 1, "gpu-a100": 1, "gpu-h100": 0, "old-box": 0}
        sample = app.state.models["gpu-a100"].gpu
        assert sample is not None
        util = {
            dict(k[1])["gpu"]: v
            for k, v in got.items()
            if k[0] == "DCGM_FI_DEV_GPU_UTIL" and ("host", "gpu-a100") in k[1]
        }
        assert util == {str(g.index): g.util_gpu for g in sample.gpus}

        await palette(pilot, "exporter")
        assert app.exporter.address is None
        assert "exporter" not in app.sub_title
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", address.port), timeout=5).close()


async def test_a_busy_port_is_one_notification_and_the_exporter_stays_off() -> None:
    app: GpudeskApp = make_app()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app.exporter.listen = parse_listen(f"127.0.0.1:{port}")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await palette(pilot, "exporter")
            assert app.exporter.address is None
            assert "exporter" not in app.sub_title
            [note] = [n.message for n in app._notifications]
            assert note == (
                f"The exporter could not start: 127.0.0.1:{port} is already in use; stop what "
                "listens there or choose another --listen."
            )
