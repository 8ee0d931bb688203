"""The GPU agent on the real test bed host, over real SSH: no driver, simulated GPUs, restarts.

The test bed machine has no NVIDIA driver, so the real agent must report ``nvml_not_found``
with host stats; ``simulate=8`` (only when asked for) gives 8 fake GPUs marked simulated.
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core.config import Inventory, Paths
from gpudesk.core.fleet import HostService
from gpudesk.core.gpu.sample import DriverState, GpuSample, parse_sample
from gpudesk.core.gpu.stream import GpuHistory, GpuStream, StreamState
from gpudesk.core.ssh import SshConnection
from tests.integration.bed import bed_host

pytestmark = pytest.mark.skipif(
    Path("/proc/driver/nvidia").exists(),
    reason="this test bed host has an NVIDIA driver; these tests expect a host without one",
)

Event = tuple[str, Any]  # ("sample", GpuSample) | ("state", (StreamState, detail))


class Recorder:
    """Runs a host's GPU stream in a thread and queues its samples and states in order."""

    def __init__(self, service: HostService, interval: float, simulate: int | None) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.stream: GpuStream = service.gpu_stream(
            lambda sample: self.events.put(("sample", sample)),
            lambda state, detail: self.events.put(("state", (state, detail))),
            interval=interval,
            simulate=simulate,
        )
        self.thread = threading.Thread(target=self.stream.run, daemon=True)

    def __enter__(self) -> Recorder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.stop()
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "the GPU stream did not stop"

    def next(self, kind: str, timeout: float = 30) -> Any:
        """The next event of ``kind``; events of the other kind before it are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            got, value = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if got == kind:
                return value

    def sample(self, timeout: float = 30) -> GpuSample:
        sample: GpuSample = self.next("sample", timeout)
        return sample

    def state(self, state: StreamState, timeout: float = 30) -> str:
        """Wait for ``state``; returns its detail. Samples seen meanwhile are ignored."""
        deadline = time.monotonic() + timeout
        while True:
            got, detail = self.next("state", max(0.01, deadline - time.monotonic()))
            if got is state:
                return str(detail)


@pytest.fixture
def bed_service(testbed: Any, known_hosts_file: Path) -> Iterator[HostService]:
    host = bed_host(testbed)
    conn = SshConnection(host, Paths.from_env())
    conn.connect_once()
    service = HostService(host, conn)
    yield service
    service.close()


def test_agent_on_the_test_bed_reports_no_driver_with_host_stats(
    bed_service: HostService,
) -> None:
    with Recorder(bed_service, interval=0.3, simulate=None) as rec:
        first = rec.sample()
        second = rec.sample()
    assert first.driver_state is DriverState.NVML_NOT_FOUND
    assert first.message  # says why, e.g. neither pynvml nor nvidia-smi
    assert first.gpus == () and first.processes == ()
    assert not first.simulated and first.source == "none"
    assert first.hostname  # the host's own name, from the host
    for sample in (first, second):
        assert sample.host is not None
        assert sample.host.mem_total and 0 < (sample.host.mem_used or 0) <= sample.host.mem_total
        assert sample.host.load is not None and len(sample.host.load) == 3
    # CPU % needs two readings of /proc/stat: the second sample has it.
    assert second.host is not None and second.host.cpu_percent is not None
    assert second.seq == first.seq + 1 and second.ts > first.ts


def test_simulated_agent_streams_eight_gpus_marked_simulated(bed_service: HostService) -> None:
    with Recorder(bed_service, interval=0.2, simulate=8) as rec:
        samples = [rec.sample() for _ in range(3)]
    for sample in samples:
        assert sample.simulated and sample.source == "simulated"
        assert sample.driver_state is DriverState.OK
        assert [gpu.index for gpu in sample.gpus] == list(range(8))
        assert all(gpu.mem_total and gpu.util_gpu is not None for gpu in sample.gpus)
    assert [s.seq for s in samples] == [samples[0].seq, samples[0].seq + 1, samples[0].seq + 2]


def test_stream_restarts_when_sshd_goes_down_and_history_shows_the_gap(
    testbed: Any, extra_sshd: Any
) -> None:
    paths = Paths.from_env()
    paths.home.mkdir(parents=True, exist_ok=True)
    paths.known_hosts.write_text(extra_sshd.known_hosts_line() + "\n")
    host = bed_host(testbed, extra_sshd.port, str(extra_sshd.client_key))
    conn = SshConnection(host, paths, probe_interval=0.2, max_backoff=1.0, connect_timeout=3)
    conn.connect_once()
    supervisor = threading.Thread(target=conn.run, daemon=True)
    supervisor.start()
    service = HostService(host, conn)
    history = GpuHistory(window_s=60.0, max_points=600)
    try:
        with Recorder(service, interval=0.2, simulate=8) as rec:
            before = [rec.sample() for _ in range(3)]
            for sample in before:
                history.add(sample)
            extra_sshd.stop()
            detail = rec.state(StreamState.RESTARTING)
            assert "restarting in" in detail
            extra_sshd.start()
            # The agent is started again over the reconnected connection: seq starts over.
            after = rec.sample(timeout=60)
            while after.seq > 1:  # a line that was in flight before the drop
                after = rec.sample(timeout=60)
            history.add(after)
            history.add(rec.sample())
        assert rec.stream.restarts >= 1
    finally:
        service.close()
        supervisor.join(timeout=10)

    assert after.seq <= 1 and after.ts > before[-1].ts
    points = history.points(0)
    gaps = [p for p in points if p.gap]
    assert len(gaps) == 1
    assert before[-1].ts <= gaps[0].ts < after.ts
    # In the drawn series the outage is blank between two stretches of data.
    series = history.series(0, width=600, attr="util")
    filled = [i for i, v in enumerate(series) if v is not None]
    assert filled
    inside = series[filled[0] : filled[-1] + 1]
    assert None in inside


def gpudesk_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def bed_in_inventory(testbed: Any, known_hosts_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUDESK_SIMULATE_GPUS", raising=False)
    Inventory.load().add(bed_host(testbed))


def test_stats_once_json_prints_one_line_in_the_agent_schema(bed_in_inventory: None) -> None:
    done = gpudesk_cli("stats", "--once", "--json", "--host", "bed")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    sample = parse_sample(lines[0])
    assert sample.driver_state is DriverState.NVML_NOT_FOUND and sample.gpus == ()
    assert sample.host is not None and sample.host.mem_total


def test_stats_once_json_line_names_the_host(bed_in_inventory: None) -> None:
    done = gpudesk_cli("stats", "--once", "--json", "--host", "bed")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    record = json.loads(line)
    assert record["schema"] == 1 and record["driver_state"] == "nvml_not_found"
    assert record["gpus"] == [] and record["simulated"] is False
    assert "bed" in json.dumps(record)


def test_stats_once_table_says_na_for_missing_values(bed_in_inventory: None) -> None:
    done = gpudesk_cli("stats", "--once", "--host", "bed")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("== bed\n")
    assert "Driver: N/A  CUDA: N/A  NVML: N/A  Source: none" in out
    assert "GPU state: nvml_not_found:" in out
    assert "No GPUs." in out
    assert "Host CPU: " in out and "Mem: " in out


def test_tui_fleet_cell_shows_simulated_free_gpus_from_the_test_bed(
    testbed: Any, known_hosts_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpudesk.app.app import GpudeskApp
    from gpudesk.app.messages import GpuUpdate
    from gpudesk.app.screens.fleet import FleetScreen
    from gpudesk.app.widgets.host_list import HostList

    monkeypatch.setenv("GPUDESK_SIMULATE_GPUS", "8")
    Inventory.load().add(bed_host(testbed))

    async def scenario() -> None:
        bed_sample = asyncio.Event()

        def hook(message: object) -> None:
            if isinstance(message, GpuUpdate) and message.host == "bed":
                bed_sample.set()

        app = GpudeskApp()
        async with app.run_test(size=(120, 30), message_hook=hook) as pilot:
            try:
                await asyncio.wait_for(bed_sample.wait(), 60)
                await pilot.pause()
                assert isinstance(app.screen, FleetScreen)
                app.screen.flush()
                cell = app.screen.query_one(HostList).cells("bed")[5]
                assert cell.startswith("SIM ") and "/8 free" in cell
                app.screen.update_summary()
                summary = str(app.screen.query_one("#fleet-summary").render())
                assert "SIMULATED" in summary and "free GPUs: " in summary
            finally:
                # Stops the agents and connections even when an assertion failed, so the
                # worker threads end and the event loop can close.
                await app.action_quit()

    asyncio.run(scenario())
