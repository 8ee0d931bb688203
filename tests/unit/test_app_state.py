"""The TUI's headless state (app/state.py): its transitions, without Textual or a terminal."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from gpudesk.app.state import FleetState, gpu_summary_text
from gpudesk.core.config import Host, Inventory
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.containers.stats import Usage
from gpudesk.core.engine import EngineInfo
from gpudesk.core.flavours import Flavour
from gpudesk.core.fleet import Fleet
from gpudesk.core.gpu.sample import GpuSample, parse_sample, summarize
from gpudesk.core.gpu.stream import StreamState
from gpudesk.core.ssh import ConnState, ConnStatus

SAMPLE = Path(__file__).parents[1] / "fixtures/gpu/simulated_h100x8_agent_stream.jsonl"
ENGINE = EngineInfo("24.0.7", "1.43", "Ubuntu", ("runc",), False)


class RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.called = threading.Event()

    def host_status(self, status: ConnStatus) -> None:
        self.calls.append(("status", status))

    def engine_status(self, host: str, info: EngineInfo | None, error: str | None) -> None:
        self.calls.append(("engine", (host, info, error)))

    def gpu_sample(self, host: str, sample: GpuSample) -> None:
        self.calls.append(("gpu", (host, sample)))

    def gpu_stream_state(self, host: str, state: StreamState, detail: str) -> None:
        self.calls.append(("stream", (host, state, detail)))

    def containers(self, host: str, infos: list[ContainerInfo] | None, error: str | None) -> None:
        self.calls.append(("containers", (host, infos, error)))

    def loop_failed(self, name: str, error: Exception) -> None:
        self.calls.append(("failed", (name, str(error))))
        self.called.set()

    def container_stats(self, host: str, usage: dict[str, Usage]) -> None:
        self.calls.append(("stats", (host, usage)))


def make_state(connect: bool = False) -> tuple[FleetState, RecordingSink]:
    Inventory.load().add(Host(name="gpu-a", hostname="10.0.0.6", user="alice"))
    sink = RecordingSink()
    return FleetState(sink, lambda cb: Fleet.build(Inventory.load(), cb), connect=connect), sink


def info(name: str, state: str, ours: bool) -> ContainerInfo:
    return ContainerInfo(
        id=name, name=name, flavour=Flavour.SSH if ours else None, image="img", state=state,
        status=state, created=None, started_at=None, uptime=None, gpus="", ports=[],
        workspace="", labels={}, is_gpudesk=ours,
    )  # fmt: skip


def test_every_inventory_host_gets_a_model_that_starts_connecting() -> None:
    state, _ = make_state()
    assert set(state.models) == {h.name for h in Inventory.load().hosts}
    assert {m.status.state for m in state.models.values()} == {ConnState.CONNECTING}


def test_a_host_connecting_asks_for_its_loops_once_and_a_drop_forgets_the_engine() -> None:
    state, _ = make_state(connect=True)
    up = ConnStatus("gpu-a", ConnState.CONNECTED, "", 1.0)
    assert state.apply_status(up) is True
    assert state.apply_status(up) is False  # already connected: nothing new to start
    assert state.apply_engine("gpu-a", ENGINE, None)
    assert state.models["gpu-a"].engine == ENGINE
    assert state.apply_status(ConnStatus("gpu-a", ConnState.DISCONNECTED_RETRYING, "gone")) is False
    model = state.models["gpu-a"]
    assert model.engine is None and model.engine_error is None
    assert model.status.state is ConnState.DISCONNECTED_RETRYING
    assert state.apply_status(up) is True  # reconnected: start again


def test_without_connecting_nothing_is_started() -> None:
    state, _ = make_state(connect=False)
    assert state.apply_status(ConnStatus("gpu-a", ConnState.CONNECTED, "", 1.0)) is False


def test_updates_for_unknown_hosts_change_nothing() -> None:
    state, _ = make_state()
    sample = parse_sample(SAMPLE.read_text().splitlines()[0])
    before = dict(state.models)
    assert not state.apply_status(ConnStatus("nope", ConnState.CONNECTED))
    assert not state.apply_engine("nope", ENGINE, None)
    assert not state.apply_gpu("nope", sample)
    assert not state.apply_containers("nope", [], None)
    assert not state.apply_stream_state("nope", StreamState.RESTARTING, "x")
    assert state.models == before


def test_container_listing_counts_running_gpudesk_containers() -> None:
    state, _ = make_state()
    infos = [
        info("a", "running", True),
        info("b", "exited", True),
        info("c", "running", True),
        info("pg", "running", False),
    ]
    assert state.apply_containers("gpu-a", infos, None)
    ours = [i for i in infos if i.is_gpudesk]
    expected = f"{sum(i.state == 'running' for i in ours)}/{len(ours)} up"
    assert state.models["gpu-a"].extra["containers"] == expected == "2/3 up"
    assert state.apply_containers("gpu-a", None, "engine gone")
    model = state.models["gpu-a"]
    assert model.containers == infos  # the last good listing stays on screen
    assert (model.containers_error, model.extra["containers"]) == ("engine gone", "error")


def test_gpu_samples_fill_history_summary_and_the_fleet_cell() -> None:
    state, _ = make_state()
    sample = parse_sample(SAMPLE.read_text().splitlines()[0])
    state.models["gpu-a"].gpu_note = "GPU agent restarting: x"
    assert state.apply_gpu("gpu-a", sample)
    model = state.models["gpu-a"]
    assert model.gpu is sample and model.gpu_note == ""
    assert model.gpu_summary is not None
    assert model.gpu_summary == summarize(sample)
    assert len(model.gpu_history.points(0)) == 1
    s = model.gpu_summary
    assert model.extra["gpus"].startswith(f"SIM {s.free}/{len(sample.gpus)} free")


def test_a_restarting_agent_marks_a_gap_and_a_note() -> None:
    state, _ = make_state()
    assert state.apply_stream_state("gpu-a", StreamState.STARTING, "") is False
    assert state.apply_stream_state("gpu-a", StreamState.RESTARTING, "exit 1") is True
    assert state.models["gpu-a"].gpu_note == "GPU agent restarting: exit 1"


def test_gpu_summary_text_without_gpus_says_why() -> None:
    sample = parse_sample(SAMPLE.read_text().splitlines()[0])
    empty = replace(sample, gpus=[], processes=[], message="", simulated=False)
    assert gpu_summary_text(empty, None) == "none"


def test_hosts_are_added_and_removed_with_their_models() -> None:
    state, _ = make_state()
    state.add_host(Host(name="gpu-b", hostname="10.0.0.7", user="bob"))
    assert state.models["gpu-b"].status.state is ConnState.CONNECTING
    assert "gpu-b" in {h.name for h in Inventory.load().hosts}
    state.remove_host("gpu-b")
    assert "gpu-b" not in state.models
    assert "gpu-b" not in {h.name for h in Inventory.load().hosts}


def test_container_stats_watch_one_per_host_and_a_stopped_one_reports_nothing() -> None:
    state, sink = make_state(connect=True)
    state.watch_container_stats("gpu-a", ["train"])
    assert "gpu-a" not in state.stats_watches  # not connected: nothing to watch yet
    state.apply_status(ConnStatus("gpu-a", ConnState.CONNECTED, "", 1.0))
    state.watch_container_stats("gpu-a", ["train"])
    watch = state.stats_watches["gpu-a"]
    state.watch_container_stats("gpu-a", ["train", "eval"])
    assert state.stats_watches["gpu-a"] is watch  # one watch per host, told the new list
    usage = {"train": Usage(12.5, 1 << 20, 1 << 30)}
    assert state.apply_container_stats("gpu-a", usage)
    assert state.models["gpu-a"].container_usage == usage
    state.watch_container_stats("gpu-a", [])  # nothing running on screen: stop
    assert watch.stopped and "gpu-a" not in state.stats_watches
    assert state.models["gpu-a"].container_usage == {}
    watch.report(usage)  # a last tick racing the stop
    assert not [c for c in sink.calls if c[0] == "stats"]
    assert not state.apply_container_stats("nope", usage)


def test_a_failing_loop_is_reported_to_the_sink() -> None:
    state, sink = make_state()
    done: list[bool] = []

    def boom() -> None:
        done.append(True)
        raise RuntimeError("agent crashed")

    state.spawn(boom, "gpu:gpu-a")
    assert sink.called.wait(60)
    assert done and sink.calls == [("failed", ("gpu:gpu-a", "agent crashed"))]


def test_the_state_loads_without_textual() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import gpudesk.app.state, sys; print('textual' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "False"
