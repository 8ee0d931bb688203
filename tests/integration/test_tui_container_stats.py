"""Live container CPU/memory on the host screen, against the real dockerd over the test sshd.

Twenty containers run (one burns a CPU); the host screen must show the burner's CPU % and
memory, every container's memory, and stay within its thread and SSH-channel budget: one watch
thread plus at most STREAMS_SSH stream threads, and never more session channels than gpudesk's
per-host budget (sshd's MaxSessions is 10). The figures are printed (`-s`) for docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable

from gpudesk.app.app import GpudeskApp
from gpudesk.app.messages import ContainerChange, ContainersUpdate
from gpudesk.app.screens.host import HostScreen
from gpudesk.core.config import Inventory
from gpudesk.core.containers.stats import STREAMS_SSH
from gpudesk.core.containers.watch import ContainersListed
from gpudesk.core.ssh import MAX_SESSION_CHANNELS, SshConnection
from tests.integration.bed import bed_host

pytestmark = pytest.mark.slow

PREFIX = "tui-stats-"
COUNT = 20
BURN = "dd if=/dev/zero of=/tmp/f bs=1M count=16 2>/dev/null; while :; do :; done"


def stats_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gpudesk-stats:")]


def open_sessions(conn: SshConnection) -> int:
    # The per-host budget's semaphore: how many session channels are held right now.
    return MAX_SESSION_CHANNELS - conn._sessions._value  # type: ignore[attr-defined]


def test_host_screen_shows_live_cpu_and_memory_within_its_budget(
    testbed: Any, known_hosts_file: Path, isolated_home: Path, docker_client: Any
) -> None:
    Inventory.load().add(bed_host(testbed))
    names = [f"{PREFIX}{i:02d}" for i in range(COUNT)]
    for c in docker_client.containers.list(all=True, filters={"name": PREFIX}):
        c.remove(force=True)  # left by an interrupted run
    for i, name in enumerate(names):
        command = ["sh", "-c", BURN] if i == 0 else ["sleep", "infinity"]
        docker_client.containers.run(testbed.base_image, command, name=name, detach=True)
    burner = names[0]

    async def scenario() -> dict[str, float]:
        listed = asyncio.Event()

        def hook(message: object) -> None:
            # The watch's first listing (or a relist after an action) names them all.
            infos = message.infos if isinstance(message, ContainersUpdate) else None
            if isinstance(message, ContainerChange) and isinstance(
                message.change, ContainersListed
            ):
                infos = message.change.infos
            if infos and sum(i.name in names for i in infos) == COUNT:
                listed.set()

        app = GpudeskApp()
        async with app.run_test(size=(160, 60), message_hook=hook) as pilot:
            await asyncio.wait_for(listed.wait(), 60)
            conn = app.state.service("bed").conn
            assert isinstance(conn, SshConnection)
            await pilot.pause()
            before_sessions = open_sessions(conn)
            before_threads = threading.active_count()
            app.open_host("bed")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, HostScreen)
            await pilot.press("a")  # the test containers are not gpudesk's: show all
            table = screen.query_one("#containers", DataTable)
            started = time.monotonic()
            peak_threads = peak_sessions = peak_all = 0

            def figures(name: str) -> tuple[str, str]:
                if name not in [str(k.value) for k in table.rows]:
                    return "-", "-"
                return str(table.get_cell(name, "cpu")), str(table.get_cell(name, "memory"))

            def done() -> bool:
                cpu, memory = figures(burner)
                return (
                    cpu != "-"
                    and float(cpu) > 0
                    and memory != "-"
                    and all(figures(n)[1] != "-" for n in names)
                )

            # Every figure is an engine reading that reaches the screen on the next tick.
            while not done():
                peak_threads = max(peak_threads, len(stats_threads()))
                peak_sessions = max(peak_sessions, open_sessions(conn))
                peak_all = max(peak_all, threading.active_count())
                assert time.monotonic() - started < 120, (figures(burner), stats_threads())
                await pilot.pause(0.1)
            filled = time.monotonic() - started
            # Watch a few ticks more for the peaks.
            for _ in range(30):
                peak_threads = max(peak_threads, len(stats_threads()))
                peak_sessions = max(peak_sessions, open_sessions(conn))
                peak_all = max(peak_all, threading.active_count())
                await pilot.pause(0.1)
            cpu, memory = figures(burner)
            assert float(cpu) > 0 and not memory.startswith("0B")
            await pilot.press("escape")  # leaving the screen ends the streams
            for _ in range(100):
                if not stats_threads():
                    break
                await pilot.pause(0.1)
            left = stats_threads()
            await pilot.press("q")
        assert left == [], left
        return {
            "containers": COUNT,
            "first_all_figures_s": round(filled, 1),
            "burner_cpu_percent": float(cpu),
            "peak_stats_threads": peak_threads,
            "threads_before": before_threads,
            "peak_threads_all": peak_all,
            "sessions_before": before_sessions,
            "peak_sessions": peak_sessions,
        }

    try:
        result = asyncio.run(scenario())
    finally:
        for c in docker_client.containers.list(all=True, filters={"name": PREFIX}):
            c.remove(force=True)
    print(f"\ncontainer stats, {COUNT} running containers over SSH: {result}")
    assert result["peak_stats_threads"] <= 1 + STREAMS_SSH
    assert result["peak_sessions"] <= MAX_SESSION_CHANNELS
    assert result["peak_sessions"] - result["sessions_before"] <= STREAMS_SSH + 1
