"""Idle detection (core/gpu/idle.py) against a brute-force reference over the whole sample list."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudesk.core.gpu.idle import (
    IdleConfigError,
    IdlePolicy,
    IdleTracker,
    duration_text,
    parse_duration,
    parse_percent,
)
from gpudesk.core.gpu.sample import GpuDevice, GpuProcess, GpuSample

MIB = 1 << 20
POLICY = IdlePolicy(below=5.0, after_s=10.0, max_gap_s=3.0)


def sample(
    ts: float,
    seq: int,
    utils: dict[int, float | None],
    procs: list[tuple[int, str | None, int | None]],
) -> GpuSample:
    """GPUs by index with their utilisation; processes as (gpu, container, used MiB)."""
    return GpuSample(
        schema=1,
        seq=seq,
        ts=ts,
        gpus=tuple(GpuDevice(index=i, util_gpu=u) for i, u in utils.items()),
        processes=tuple(
            GpuProcess(
                gpu=g,
                pid=1000 + n,
                used_memory=None if m is None else m * MIB,
                container_name=c,
                container_id=None if c is None else f"id-{c}",
            )
            for n, (g, c, m) in enumerate(procs)
        ),
    )


def reference(samples: list[GpuSample], policy: IdlePolicy) -> dict[str, float]:
    """Low seconds per container at the last sample, by walking back from it.

    A container is low in a sample when all of its GPUs report a utilisation under the
    threshold; its stretch goes back over consecutive low samples whose spacing is at most
    ``max_gap_s``, whose host time goes forward and whose seq goes up.
    """
    if not samples:
        return {}
    last = samples[-1]

    def is_low(s: GpuSample, name: str) -> bool:
        held = {p.gpu for p in s.processes if (p.container_name or p.container_id) == name}
        utils = {g.index: g.util_gpu for g in s.gpus}
        return bool(held) and all(
            utils.get(g) is not None and utils[g] < policy.below  # type: ignore[operator]
            for g in held
        )

    out: dict[str, float] = {}
    names = {p.container_name or p.container_id for p in last.processes} - {None}
    for name in names:
        assert name is not None
        if not is_low(last, name):
            continue
        first = len(samples) - 1
        while first > 0:
            prev, cur = samples[first - 1], samples[first]
            step = cur.ts - prev.ts
            if not (0 <= step <= policy.max_gap_s and cur.seq > prev.seq and is_low(prev, name)):
                break
            first -= 1
        out[name] = last.ts - samples[first].ts
    return out


def feed(samples: list[GpuSample], policy: IdlePolicy = POLICY) -> IdleTracker:
    tracker = IdleTracker(policy)
    for s in samples:
        tracker.add(s)
    return tracker


def lows(tracker: IdleTracker) -> dict[str, float]:
    return {c.name: c.low_s for c in tracker.low()}


def test_a_quiet_container_becomes_idle_after_the_window() -> None:
    samples = [sample(t, t, {0: 1.0}, [(0, "nb", 2048)]) for t in range(12)]
    tracker = feed(samples[:10])
    assert [c.name for c in tracker.low()] == ["nb"]
    assert tracker.idle() == []  # 9 s low: not yet
    tracker = feed(samples)
    (idle,) = tracker.idle()
    assert (idle.name, idle.gpus, idle.mem_used, idle.low_s) == ("nb", (0,), 2048 * MIB, 11.0)
    assert idle.container_id == "id-nb"
    assert tracker.get("nb") == idle


def test_one_busy_gpu_of_several_keeps_the_container_busy() -> None:
    samples = [
        sample(t, t, {0: 0.0, 1: 80.0}, [(0, "two", 100), (1, "two", 100)]) for t in range(20)
    ]
    tracker = feed(samples)
    assert tracker.low() == [] and tracker.get("two") is None


def test_a_busy_moment_restarts_the_stretch() -> None:
    utils = [0.0] * 8 + [50.0] + [0.0] * 8
    samples = [sample(t, t, {0: u}, [(0, "c", 1)]) for t, u in enumerate(utils)]
    assert lows(feed(samples)) == {"c": 7.0} == reference(samples, POLICY)


def test_threshold_is_strict() -> None:
    samples = [sample(t, t, {0: 5.0}, [(0, "c", 1)]) for t in range(20)]
    assert feed(samples).low() == []


def test_na_utilisation_cannot_prove_low() -> None:
    utils: list[float | None] = [0.0] * 5 + [None] + [0.0] * 5
    samples = [sample(t, t, {0: u}, [(0, "c", 1)]) for t, u in enumerate(utils)]
    assert lows(feed(samples)) == {"c": 4.0}
    # A GPU the sample does not report at all is no better.
    missing = [*samples[:5], sample(5, 5, {}, [(0, "c", 1)]), *samples[6:]]
    assert lows(feed(missing)) == {"c": 4.0}


def test_a_gap_in_samples_restarts_the_stretch() -> None:
    times = [0, 1, 2, 3, 10, 11, 12]  # 7 s without samples
    samples = [sample(t, n, {0: 0.0}, [(0, "c", 1)]) for n, t in enumerate(times)]
    assert lows(feed(samples)) == {"c": 2.0}


def test_mark_gap_and_agent_restart_restart_the_stretch() -> None:
    samples = [sample(t, t, {0: 0.0}, [(0, "c", 1)]) for t in range(6)]
    tracker = feed(samples[:3])
    tracker.mark_gap()
    assert tracker.low() == []  # not known until the stream is back
    for s in samples[3:]:
        tracker.add(s)
    assert lows(tracker) == {"c": 2.0}
    restarted = [*samples[:3], *(sample(t, t - 3, {0: 0.0}, [(0, "c", 1)]) for t in range(3, 6))]
    assert lows(feed(restarted)) == {"c": 2.0}


def test_clock_going_back_restarts_the_stretch() -> None:
    times = [10, 11, 12, 5, 6]
    samples = [sample(t, n, {0: 0.0}, [(0, "c", 1)]) for n, t in enumerate(times)]
    assert lows(feed(samples)) == {"c": 1.0}


def test_a_process_leaving_ends_it() -> None:
    samples = [sample(t, t, {0: 0.0}, [(0, "c", 1)]) for t in range(12)]
    samples.append(sample(12, 12, {0: 0.0}, []))
    tracker = feed(samples)
    assert tracker.low() == [] and tracker.idle() == []
    # Coming back starts afresh.
    tracker.add(sample(13, 13, {0: 0.0}, [(0, "c", 1)]))
    assert lows(tracker) == {"c": 0.0}


def test_memory_sums_processes_and_unknown_stays_unknown() -> None:
    s = sample(0, 0, {0: 0.0, 1: 0.0}, [(0, "a", 100), (1, "a", 50), (0, "b", None)])
    tracker = feed([s])
    by_name = {c.name: c for c in tracker.low()}
    assert by_name["a"].mem_used == 150 * MIB and by_name["a"].gpus == (0, 1)
    assert by_name["b"].mem_used is None


def test_processes_outside_containers_are_left_out() -> None:
    samples = [sample(t, t, {0: 0.0}, [(0, None, 1)]) for t in range(20)]
    assert feed(samples).low() == []


utils_st = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 4.9, 5.0, 60.0]))


@st.composite
def streams(draw: st.DrawFn) -> list[GpuSample]:
    n = draw(st.integers(1, 40))
    ts, seq, out = 0.0, 0, []
    for _ in range(n):
        ts += draw(st.sampled_from([0.5, 1.0, 1.0, 2.0, 4.0, -1.0]))
        seq += draw(st.sampled_from([1, 1, 1, -5]))
        utils = {i: draw(utils_st) for i in range(3) if draw(st.booleans()) or i == 0}
        procs = draw(
            st.lists(
                st.tuples(
                    st.integers(0, 2), st.sampled_from(["a", "b", None]), st.sampled_from([1, None])
                ),
                max_size=4,
            )
        )
        out.append(sample(ts, seq, utils, procs))
    return out


@settings(max_examples=300, deadline=None)
@given(streams())
def test_matches_the_reference(samples: list[GpuSample]) -> None:
    tracker = feed(samples)
    expected = reference(samples, POLICY)
    assert lows(tracker) == pytest.approx(expected)
    assert {c.name for c in tracker.idle()} == {
        n for n, s in expected.items() if s >= POLICY.after_s
    }


def test_policy_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert IdlePolicy.from_env() == IdlePolicy()
    assert IdlePolicy().after_s == 1800 and IdlePolicy().below == 5
    monkeypatch.setenv("GPUDESK_IDLE_AFTER", "2s")
    monkeypatch.setenv("GPUDESK_IDLE_BELOW", "10")
    assert IdlePolicy.from_env() == IdlePolicy(below=10.0, after_s=2.0)
    monkeypatch.setenv("GPUDESK_IDLE_AFTER", "soon")
    with pytest.raises(IdleConfigError, match="GPUDESK_IDLE_AFTER must be a duration"):
        IdlePolicy.from_env()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30m", 1800), ("2s", 2), ("90", 90), ("1.5h", 5400), ("500ms", 0.5)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "--for") == seconds


@pytest.mark.parametrize("text", ["", "0", "-1m", "1y", "nan", "inf", "m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(IdleConfigError, match="--for must be a duration"):
        parse_duration(text, "--for")


@pytest.mark.parametrize("text", ["0", "101", "nan", "x"])
def test_parse_percent_refuses(text: str) -> None:
    with pytest.raises(IdleConfigError, match="percentage"):
        parse_percent(text, "--below")


def test_duration_text() -> None:
    assert [duration_text(s) for s in (5, 65, 3700, 90000)] == ["5s", "1m", "1h01m", "1d1h"]
