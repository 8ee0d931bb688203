"""GPU sample schema: parsing, summaries and history."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpudesk.core.gpu.sample import (
    SCHEMA_VERSION,
    DriverState,
    GpuDevice,
    GpuProcess,
    GpuSample,
    HostStats,
    SampleError,
    dump_sample,
    free_gpu_indices,
    parse_sample,
    summarize,
)
from gpudesk.core.gpu.stream import GpuHistory
from gpudesk.core.gpu.table import format_table
from gpudesk.payload import gpu_agent as agent

FIXTURE = Path(__file__).parent.parent / "fixtures" / "gpu" / "simulated_h100x8_agent_stream.jsonl"
GIB = 1024**3


def fixture_lines() -> list[str]:
    return [line for line in FIXTURE.read_text().splitlines() if line.strip()]


def gpu(index: int, util: float | None = 0.0, mem_used: int | None = 0, **kw: object) -> GpuDevice:
    return GpuDevice(index=index, util_gpu=util, mem_used=mem_used, mem_total=80 * GIB, **kw)  # type: ignore[arg-type]


def sample_of(*gpus: GpuDevice, ts: float = 1000.0, seq: int = 0, **kw: object) -> GpuSample:
    return GpuSample(schema=SCHEMA_VERSION, seq=seq, ts=ts, gpus=gpus, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- parsing


def test_schema_versions_match() -> None:
    assert agent.SCHEMA_VERSION == SCHEMA_VERSION


def test_parse_recorded_sample() -> None:
    sample = parse_sample(fixture_lines()[0])
    assert sample.simulated is True
    assert sample.driver_state is DriverState.OK
    assert len(sample.gpus) == 8
    assert sample.gpus[3].temperature == 84
    assert sample.gpus[0].mem_total == 81559 * 1024 * 1024
    assert sample.gpus[0].fan is None
    assert {p.container_name for p in sample.processes} >= {"sim-train-0", "sim-train-3"}
    assert sample.host is not None and sample.host.load is not None


def test_round_trip_of_recorded_stream() -> None:
    for line in fixture_lines():
        sample = parse_sample(line)
        assert parse_sample(dump_sample(sample)) == sample
        assert json.loads(dump_sample(sample)) == json.loads(line)


def test_missing_optional_fields_are_none() -> None:
    sample = parse_sample('{"schema": 1, "seq": 3, "ts": 5, "gpus": [{"index": 0}]}')
    assert sample.seq == 3 and sample.ts == 5.0
    assert sample.driver_state is DriverState.OK
    assert sample.host is None and sample.processes == () and sample.simulated is False
    (only,) = sample.gpus
    assert only == GpuDevice(index=0)
    assert only.mem_percent is None


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("", "not JSON"),
        ("{not json", "not JSON"),
        ("[1, 2]", "JSON object"),
        ('{"seq": 0, "ts": 1}', "schema"),
        ('{"schema": 99, "seq": 0, "ts": 1}', "schema 99"),
        ('{"schema": 1, "ts": 1}', "seq"),
        ('{"schema": 1, "seq": 0}', "ts"),
        ('{"schema": 1, "seq": 0, "ts": 1, "driver_state": "melted"}', "melted"),
        ('{"schema": 1, "seq": 0, "ts": 1, "gpus": {}}', "gpus"),
        ('{"schema": 1, "seq": 0, "ts": 1, "gpus": [{"name": "x"}]}', "gpus[0].index"),
        ('{"schema": 1, "seq": 0, "ts": 1, "gpus": [{"index": 0, "util_gpu": "9"}]}', "util_gpu"),
        ('{"schema": 1, "seq": 0, "ts": 1, "gpus": [{"index": true}]}', "index"),
        ('{"schema": 1, "seq": 0, "ts": 1, "gpus": [{"index": 0, "mem_used": 1.5}]}', "mem_used"),
        ('{"schema": 1, "seq": 0, "ts": 1, "processes": [{"gpu": 0}]}', "pid"),
        ('{"schema": 1, "seq": 0, "ts": 1, "host": {"load": [1, 2]}}', "host.load"),
        ('{"schema": 1, "seq": 0, "ts": 1, "host": 5}', "host"),
        ('{"schema": 1, "seq": 0, "ts": 1, "simulated": "yes"}', "simulated"),
    ],
)
def test_malformed_lines_raise_clear_errors(line: str, words: str) -> None:
    with pytest.raises(SampleError, match=None) as info:
        parse_sample(line)
    assert words in str(info.value)


opt_float = st.none() | st.floats(allow_nan=False, allow_infinity=False, width=32)
opt_int = st.none() | st.integers(min_value=0, max_value=2**62)
opt_text = st.none() | st.text(max_size=20)

devices = st.builds(
    GpuDevice,
    index=st.integers(min_value=0, max_value=64),
    uuid=opt_text,
    name=opt_text,
    util_gpu=opt_float,
    util_mem=opt_float,
    mem_used=opt_int,
    mem_total=opt_int,
    temperature=opt_float,
    power_draw=opt_float,
    power_limit=opt_float,
    fan=opt_float,
    clock_sm=opt_int,
    clock_mem=opt_int,
    pstate=opt_text,
    ecc_errors=opt_int,
    mig_enabled=st.none() | st.booleans(),
)
processes = st.builds(
    GpuProcess,
    gpu=st.integers(min_value=0, max_value=64),
    pid=st.integers(min_value=1, max_value=2**22),
    used_memory=opt_int,
    command=opt_text,
    user=opt_text,
    container_id=opt_text,
    container_name=opt_text,
)
finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
hosts = st.none() | st.builds(
    HostStats,
    cpu_percent=opt_float,
    mem_used=opt_int,
    mem_total=opt_int,
    load=st.none() | st.tuples(finite, finite, finite),
)
samples = st.builds(
    GpuSample,
    schema=st.just(SCHEMA_VERSION),
    seq=st.integers(min_value=0, max_value=2**40),
    ts=st.floats(min_value=0, max_value=4e9),
    hostname=st.text(max_size=20),
    driver_state=st.sampled_from(DriverState),
    message=st.text(max_size=40),
    driver_version=opt_text,
    cuda_version=opt_text,
    nvml_version=opt_text,
    simulated=st.booleans(),
    source=opt_text,
    gpus=st.lists(devices, max_size=4).map(tuple),
    processes=st.lists(processes, max_size=4).map(tuple),
    host=hosts,
)


@given(samples)
def test_round_trip_property(sample: GpuSample) -> None:
    assert parse_sample(dump_sample(sample)) == sample
    format_table(sample)  # renders anything that parses


@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_sample_error(line: str) -> None:
    with contextlib.suppress(SampleError):
        parse_sample(line)


# --------------------------------------------------------------------------- summary


def test_summary_of_recorded_sample() -> None:
    sample = parse_sample(fixture_lines()[0])
    summary = summarize(sample)
    assert summary.count == 8
    assert summary.free == 2 and summary.busy == 6
    assert summary.hottest == 84
    assert summary.mem_total == 8 * 81559 * 1024 * 1024
    assert summary.mem_used == sum(g.mem_used or 0 for g in sample.gpus)
    assert free_gpu_indices(sample) == [0, 7]


def test_free_needs_low_util_low_memory_and_no_processes() -> None:
    sample = sample_of(
        gpu(0),  # free
        gpu(1, util=10.0),  # util at the threshold: busy
        gpu(2, mem_used=8 * GIB),  # 10 % memory: busy
        gpu(3),  # idle but runs a process
        gpu(4, util=None),  # unknown util: not free
        gpu(5, util=9.9, mem_used=7 * GIB, temperature=91.0),  # free, hot
        processes=(GpuProcess(gpu=3, pid=42),),
    )
    assert free_gpu_indices(sample) == [0, 5]
    summary = summarize(sample)
    assert (summary.count, summary.free, summary.busy, summary.hottest) == (6, 2, 4, 91.0)


def test_summary_of_no_gpus() -> None:
    summary = summarize(sample_of(driver_state=DriverState.NVML_NOT_FOUND))
    assert (summary.count, summary.free, summary.busy, summary.hottest) == (0, 0, 0, None)
    assert summary.mem_total == 0


def test_table_prints_na_and_simulated() -> None:
    sample = sample_of(
        GpuDevice(index=0, name="NVIDIA H100 80GB HBM3"),
        hostname="gpu-box",
        simulated=True,
        processes=(GpuProcess(gpu=0, pid=7, container_name="trainer", user="ana"),),
    )
    text = format_table(sample)
    assert "gpu-box" in text and "SIMULATED" in text
    row = next(line for line in text.splitlines() if "H100" in line)
    assert row.count("N/A") >= 8
    proc = next(line for line in text.splitlines() if "trainer" in line)
    assert "ana" in proc and "N/A" in proc
    broken = dataclasses.replace(
        sample, driver_state=DriverState.DRIVER_NOT_LOADED, message="driver gone", gpus=()
    )
    assert "driver_not_loaded: driver gone" in format_table(broken)
    assert "SIMULATED" not in format_table(dataclasses.replace(sample, simulated=False))


# --------------------------------------------------------------------------- history


def test_history_records_util_and_memory() -> None:
    history = GpuHistory(window_s=60, max_points=60, gap_after_s=5)
    for n in range(5):
        history.add(sample_of(gpu(0, util=10.0 * n, mem_used=8 * GIB), ts=100.0 + n, seq=n))
    points = history.points(0)
    assert [p.util for p in points] == [0.0, 10.0, 20.0, 30.0, 40.0]
    assert all(p.mem == pytest.approx(10.0) for p in points)
    assert not any(p.gap for p in points)
    assert history.gpu_indices() == [0]


def test_history_gap_when_samples_stop_arriving() -> None:
    history = GpuHistory(window_s=60, max_points=60, gap_after_s=5)
    history.add(sample_of(gpu(0, util=50.0), ts=100.0, seq=0))
    history.add(sample_of(gpu(0, util=60.0), ts=101.0, seq=1))
    history.add(sample_of(gpu(0, util=70.0), ts=120.0, seq=2))  # 19 s of silence
    assert [p.gap for p in history.points(0)] == [False, False, True, False]
    series = history.series(0, width=60)  # one bucket per second, ending at ts=120
    assert series[-1] == 70.0
    assert series[40] == 50.0 and series[41] == 60.0
    assert all(v is None for v in series[42:59])  # the gap shows as missing data
    assert all(v is None for v in series[:40])  # before the history starts


def test_history_gap_on_agent_restart_and_explicit_mark() -> None:
    history = GpuHistory(window_s=60, max_points=60, gap_after_s=5)
    history.add(sample_of(gpu(0, util=1.0), ts=100.0, seq=5))
    history.add(sample_of(gpu(0, util=2.0), ts=101.0, seq=0))  # seq went back: restarted
    history.mark_gap()
    history.add(sample_of(gpu(0, util=3.0), ts=102.0, seq=1))
    history.add(sample_of(gpu(0, util=4.0), ts=103.0, seq=2))
    kinds = [("gap" if p.gap else p.util) for p in history.points(0)]
    assert kinds == [1.0, "gap", 2.0, "gap", 3.0, 4.0]
    # half-second buckets: points of one segment are joined, gaps stay empty
    series = history.series(0, width=120)
    assert series[-6:] == [1.0, None, 2.0, None, 3.0, 4.0]
    joined = GpuHistory(window_s=60, max_points=60, gap_after_s=5)
    for n in range(4):
        joined.add(sample_of(gpu(0, util=n + 1.0), ts=100.0 + n, seq=n))
    assert joined.series(0, width=120)[-6:] == [1.0, 1.0, 2.0, 2.0, 3.0, 4.0]


@given(
    interval=st.floats(min_value=0.01, max_value=30.0),
    count=st.integers(min_value=1, max_value=3000),
)
def test_history_is_bounded_and_covers_the_window(interval: float, count: int) -> None:
    history = GpuHistory(window_s=300.0, max_points=300, gap_after_s=max(5.0, 3 * interval))
    ts = 1000.0
    for n in range(count):
        ts = 1000.0 + n * interval
        history.add(sample_of(gpu(0, util=float(n % 100)), ts=ts, seq=n))
    points = history.points(0)
    assert 1 <= len(points) <= 300
    assert points[-1].ts <= ts
    assert ts - points[0].ts <= 300.0 + interval
    span = ts - 1000.0
    # at any interval, the history reaches back (almost) the whole window it has data for
    # (a merged point stands for up to one resolution step (1 s) plus one interval)
    assert ts - points[0].ts >= min(span, 300.0) - (interval + 1.0) - 1e-6
    assert [p.ts for p in points] == sorted(p.ts for p in points)


def test_history_window_drops_old_points() -> None:
    history = GpuHistory(window_s=10, max_points=100, gap_after_s=5)
    for n in range(30):
        history.add(sample_of(gpu(0, util=1.0), ts=float(n), seq=n))
    assert history.points(0)[0].ts >= 19.0
