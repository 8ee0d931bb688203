"""Placement from GPU samples, checked against a short reference implementation written here
from the documented rule (not from the code): free = no process, util and memory both under
10 % and known; the host with the fewest free GPUs that still fits; ties to the first listed;
the lowest free indices."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudesk.core.containers.model import ContainerInfo
from gpudesk.core.gpu.sample import DriverState, GpuDevice, GpuProcess, GpuSample
from gpudesk.core.placement import (
    HostFree,
    free_map,
    no_fit_sentence,
    place,
    suggestion,
)
from gpudesk.core.runs.placement import choose_container, gpu_env, held_gpus

GIB = 2**30


def gpu(index: int, util: float | None = 0.0, used: int | None = 0, total: int | None = 80 * GIB):
    return GpuDevice(index=index, util_gpu=util, mem_used=used, mem_total=total)


def sample(*gpus: GpuDevice, procs: tuple[int, ...] = (), simulated: bool = False) -> GpuSample:
    return GpuSample(
        schema=1,
        seq=0,
        ts=0.0,
        gpus=gpus,
        processes=tuple(GpuProcess(gpu=g, pid=100 + g) for g in procs),
        simulated=simulated,
    )


# ----------------------------------------------------------------- the reference


def ref_free(s: GpuSample) -> list[int]:
    out = []
    for g in s.gpus:
        known = g.util_gpu is not None and g.mem_used is not None and bool(g.mem_total)
        if not known:
            continue
        assert g.util_gpu is not None and g.mem_used is not None and g.mem_total
        quiet = g.util_gpu < 10 and g.mem_used * 100 < 10 * g.mem_total
        if quiet and all(p.gpu != g.index for p in s.processes):
            out.append(g.index)
    return sorted(out)


def ref_place(hosts: list[tuple[str, GpuSample | None]], n: int) -> tuple[str, list[int]] | None:
    fits = []
    for position, (name, s) in enumerate(hosts):
        free = ref_free(s) if s is not None and s.driver_state is DriverState.OK else []
        if len(free) >= n:
            fits.append((len(free), position, name, free[:n]))
    if not fits:
        return None
    fits.sort()
    return fits[0][2], fits[0][3]


# ----------------------------------------------------------------- examples


def test_best_fit_keeps_the_bigger_block_whole() -> None:
    hosts = [
        ("gpu1", sample(*(gpu(i) for i in range(8)))),  # 8 free
        ("gpu2", sample(*(gpu(i) for i in range(4)), procs=(0, 1))),  # 2,3 free
    ]
    chosen = place(free_map(hosts), 2)
    assert chosen is not None
    assert (chosen.host, chosen.gpus) == ("gpu2", (2, 3))
    assert chosen.why == "placed on gpu2: GPUs 2,3 free (gpu1: 8 free)"


def test_ties_go_to_the_host_listed_first() -> None:
    same = sample(gpu(0), gpu(1))
    for order in (["a", "b", "c"], ["c", "a", "b"]):
        chosen = place(free_map([(name, same) for name in order]), 1)
        assert chosen is not None and chosen.host == order[0] and chosen.gpus == (0,)


def test_na_memory_or_util_is_not_free_and_no_sample_is_reported() -> None:
    hosts = [
        ("na", sample(gpu(0, used=None), gpu(1, total=None), gpu(2, util=None), gpu(3))),
        ("down", None),
        ("cpu", sample()),
        ("nodriver", GpuSample(1, 0, 0.0, driver_state=DriverState.NVML_NOT_FOUND)),
    ]
    fm = free_map(hosts, {"down": "unreachable: connection refused"})
    assert [h.text for h in fm] == [
        "1 of 4 free (GPUs 3)",
        "unreachable: connection refused",
        "no GPUs",
        "nvml_not_found",
    ]
    assert place(fm, 2) is None
    sentence = no_fit_sentence(fm, 2)
    assert sentence.splitlines()[0] == "No host has 2 free GPUs now; free GPUs per host:"
    assert "  down: unreachable: connection refused" in sentence.splitlines()
    chosen = place(fm, 1)
    assert chosen is not None and (chosen.host, chosen.gpus) == ("na", (3,))


def test_suggestion_lines() -> None:
    assert suggestion([HostFree("a", problem="no GPU sample yet")]) == (
        "suggested: none yet (no GPU samples)"
    )
    fm = free_map([("a", sample(gpu(0), gpu(1), simulated=True))])
    assert suggestion(fm) == "suggested: a (GPUs 0,1 free SIMULATED)"
    assert suggestion(fm, 3) == "suggested: none (no host has 3 free GPUs)"


def test_zero_gpus_is_not_a_placement() -> None:
    with pytest.raises(ValueError):
        place([], 0)


# ----------------------------------------------------------------- against the reference

values = st.one_of(st.none(), st.sampled_from([0.0, 5.0, 9.9, 10.0, 55.0]))


@st.composite
def fleets(draw: st.DrawFn) -> list[tuple[str, GpuSample | None]]:
    hosts: list[tuple[str, GpuSample | None]] = []
    for h in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 6)) == 0:
            hosts.append((f"h{h}", None))
            continue
        devices = []
        for i in range(draw(st.integers(0, 8))):
            pct = draw(values)
            devices.append(
                gpu(i, util=draw(values), used=None if pct is None else int(pct * GIB * 0.8))
            )
        procs = tuple(draw(st.lists(st.integers(0, 7), max_size=3)))
        hosts.append((f"h{h}", sample(*devices, procs=procs)))
    return hosts


@settings(max_examples=300, deadline=None)
@given(fleets(), st.integers(1, 8))
def test_matches_the_reference(hosts: list[tuple[str, GpuSample | None]], n: int) -> None:
    chosen = place(free_map(hosts), n)
    expected = ref_place(hosts, n)
    if expected is None:
        assert chosen is None
    else:
        assert chosen is not None and (chosen.host, list(chosen.gpus)) == expected


def test_many_ties_are_deterministic() -> None:
    rng = random.Random(7)
    for _ in range(200):
        hosts = [(f"h{i}", sample(*(gpu(g) for g in range(rng.randint(1, 4))))) for i in range(4)]
        n = rng.randint(1, 4)
        first = place(free_map(hosts), n)
        again = place(free_map(list(hosts)), n)
        assert first == again
        expected = ref_place(hosts, n)
        assert (first.host, list(first.gpus)) == expected if first else expected is None


# ----------------------------------------------------------------- containers


def info(name: str, gpus: str, state: str = "running", ours: bool = True) -> ContainerInfo:
    return ContainerInfo(
        id=name, name=name, flavour=None, image="img", state=state, status=state,
        created=datetime.now(UTC), started_at=None, uptime=None, gpus=gpus, ports=[],
        workspace="/w", labels={}, is_gpudesk=ours,
    )  # fmt: skip


def test_held_gpus() -> None:
    assert held_gpus(info("a", "all"), 4) == (0, 1, 2, 3)
    assert held_gpus(info("a", "3,1,"), 4) == (1, 3)
    assert held_gpus(info("a", "device=2"), 4) == (2,)
    assert held_gpus(info("a", "GPU-1234abcd,"), 4) is None  # UUIDs: not mapped
    assert held_gpus(info("a", "2"), 4) is None  # a count: Docker chose which
    assert held_gpus(info("a", ""), 4) == ()
    assert held_gpus(info("a", "all", state="exited"), 4) == ()
    assert held_gpus(info("a", "all", ours=False), 4) == ()


def test_choose_container_takes_the_smallest_holder_and_renumbers() -> None:
    infos = [info("big", "all"), info("pair", "2,3,"), info("other", "0,1,"), info("cpu", "")]
    assert choose_container(infos, (2, 3), 8) == ("pair", (0, 1))
    assert choose_container(infos, (3,), 8) == ("pair", (1,))
    assert choose_container(infos, (4, 5), 8) == ("big", (4, 5))
    assert choose_container([info("cpu", "")], (0,), 8) is None
    assert choose_container([info("b", "all"), info("a", "all")], (5,), 8) == ("a", (5,))
    assert gpu_env((0, 1)) == (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", "0,1"))
