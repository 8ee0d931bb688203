"""Placing a run: read one GPU sample per host, pick the host and GPUs, pick (or launch) a
container that holds them, and pin the run to them. The choice itself is
:func:`gpudesk.core.placement.place`, shared with the TUI.

Containers: a running gpudesk container holds a GPU when it was launched with ``--gpus all``
or with that GPU's index. Inside it the run sees only the placed GPUs, through
``CUDA_VISIBLE_DEVICES`` (indices as the container numbers them, in PCI bus order, which is the
order ``nvidia-smi`` numbers the host's GPUs; ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` makes CUDA
agree). Simulated GPUs are not Docker's to hand out: on a SIMULATED host a container is
launched with the placed GPUs in its label only (no devices), and holds them as a real one would.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from gpudesk.core.config import Inventory
from gpudesk.core.containers.model import ContainerInfo
from gpudesk.core.errors import GpudeskError
from gpudesk.core.fleet import Fleet, HostService, connect_blocking
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import GpuStream, StreamState
from gpudesk.core.placement import (
    HostFree,
    Placement,
    free_map,
    indices_text,
    no_fit_sentence,
    place,
)
from gpudesk.core.runs.model import RunError
from gpudesk.core.templates import Template

# How long a one-shot command waits for each host's first GPU sample (the agent's start over
# SSH takes well under a second; a host that cannot start it in this time is reported).
SAMPLE_TIMEOUT_S = 20.0

Emit = Callable[[str], None]


class PlacementError(RunError):
    """No host fits, or the placed host has no usable container; one sentence plus the map."""


@dataclass(frozen=True)
class Target:
    """Where a placed run goes: the host, the container and the run's GPU environment."""

    service: HostService
    container: str
    placement: Placement
    env: tuple[tuple[str, str], ...]
    launched: bool  # the container was launched from a template for this run


def first_samples(
    fleet: Fleet, names: Sequence[str], timeout: float = SAMPLE_TIMEOUT_S
) -> tuple[list[tuple[str, GpuSample | None]], dict[str, str]]:
    """One GPU sample per host (its first), each host connected and sampled in parallel.

    Returns the samples in ``names`` order (None where none came) and, per host without a
    sample, why: unreachable, or no sample within ``timeout``. Never raises for one host.
    """
    problems: dict[str, str] = {}
    got: queue.Queue[tuple[str, GpuSample | str]] = queue.Queue()  # a sample, or why none
    streams: list[GpuStream] = []
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def start(name: str) -> None:
        service = fleet.get(name)
        try:
            connect_blocking(service.conn)
        except GpudeskError as exc:
            problems[name] = f"unreachable: {str(exc).rstrip('.')}"
            return

        def on_state(state: StreamState, detail: str) -> None:
            if state is StreamState.RESTARTING:  # the agent failed before its first sample
                got.put((name, detail.split("; restarting", 1)[0]))

        stream = service.gpu_stream(
            lambda sample: got.put((name, sample)), on_state, simulate=service.simulation
        )
        with lock:
            streams.append(stream)
        threading.Thread(target=stream.run, daemon=True, name=f"place-gpu:{name}").start()

    samples: dict[str, GpuSample] = {}
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(names)))) as pool:
            list(pool.map(start, names))
        waiting = {n for n in names if n not in problems}
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                name, sample = got.get(timeout=left)
            except queue.Empty:
                break
            if name in waiting:
                if isinstance(sample, str):
                    problems[name] = sample
                else:
                    samples[name] = sample
                waiting.discard(name)
        for name in waiting:
            problems[name] = f"no GPU sample within {timeout:g} s"
    finally:
        for stream in streams:
            stream.stop()
    return [(n, samples.get(n)) for n in names], problems


def held_gpus(info: ContainerInfo, all_gpus: int) -> tuple[int, ...] | None:
    """The host GPU indices a container can use, in its own order; None when unknown (a count
    such as ``--gpus 2`` lets Docker choose which)."""
    if info.state != "running" or not info.is_gpudesk:
        return ()
    text = info.gpus.strip().lower()
    spec = text.removeprefix("device=")
    if spec == "all":
        return tuple(range(all_gpus))
    if not spec or spec in ("none", "cpu"):
        return ()
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    explicit = text.startswith("device=") or "," in spec  # as parse_gpus reads it
    if not explicit or not all(p.isdigit() for p in parts):
        return None
    return tuple(sorted(int(p) for p in parts))


def choose_container(
    infos: Sequence[ContainerInfo], gpus: Sequence[int], all_gpus: int
) -> tuple[str, tuple[int, ...]] | None:
    """The container holding ``gpus`` that holds the fewest GPUs (ties: by name), with the
    placed GPUs' indices as that container numbers them."""
    fits: list[tuple[int, str, tuple[int, ...]]] = []
    for info in infos:
        held = held_gpus(info, all_gpus)
        if held and set(gpus) <= set(held):
            fits.append((len(held), info.name, tuple(held.index(g) for g in gpus)))
    if not fits:
        return None
    _n, name, local = min(fits)
    return name, local


def gpu_env(local: Sequence[int]) -> tuple[tuple[str, str], ...]:
    return (("CUDA_DEVICE_ORDER", "PCI_BUS_ID"), ("CUDA_VISIBLE_DEVICES", indices_text(local)))


def place_run(
    fleet: Fleet,
    names: Sequence[str],
    count: int,
    *,
    container: str | None,
    template: Template,
    emit: Emit,
    timeout: float = SAMPLE_TIMEOUT_S,
) -> Target:
    """Pick the host, GPUs and container for a run of ``count`` GPUs; launch a container from
    ``template`` when none on the host holds them (not when ``container`` was named)."""
    samples, problems = first_samples(fleet, names, timeout)
    hosts = free_map(samples, problems)
    chosen = place(hosts, count)
    if chosen is None:
        raise PlacementError(no_fit_sentence(hosts, count))
    emit(chosen.why)
    service = fleet.get(chosen.host)
    total = _total(hosts, chosen.host)
    from gpudesk.core.devcontainers import DevContainers

    dev = DevContainers(service, fleet.inventory)
    infos = [i for i in dev.list() if container is None or i.name == container]
    found = choose_container(infos, chosen.gpus, total)
    if found is not None:
        emit(f"using container {found[0]} on {chosen.host}, which holds those GPUs")
        return Target(service, found[0], chosen, gpu_env(found[1]), launched=False)
    if container is not None:
        raise PlacementError(
            f"Container {container} on {chosen.host} is not running with GPUs"
            f" {indices_text(chosen.gpus)}; leave --container out to launch one, or pass --host."
        )
    return _launch(dev, template, chosen, service, emit)


def _total(hosts: Sequence[HostFree], name: str) -> int:
    return next(h.total for h in hosts if h.host == name)


def _launch(
    dev: object, template: Template, chosen: Placement, service: HostService, emit: Emit
) -> Target:
    from gpudesk.core.devcontainers import DevContainers, LaunchRequest

    assert isinstance(dev, DevContainers)
    name = template.container_name(chosen.gpus)
    gpus = indices_text(chosen.gpus) + ","  # by index ("2,3,"; "2," is index 2, not a count)
    emit(f"no container on {chosen.host} holds those GPUs; launching {name} from template"
         f" {template.name}")  # fmt: skip
    request = LaunchRequest(
        flavour=template.flavour,
        name=name,
        gpus=gpus,
        workspace=template.workspace_for(name),
        image=template.image,
        base_image=template.base_image,
        memory=template.memory,
        key=template.key,
        sudo=template.sudo,
        simulated=chosen.simulated,
    )
    dev.launch(request, on_progress=lambda line: emit(f"  {line}"))
    # Launched with exactly the placed GPUs: inside it they are 0..N-1.
    local = tuple(range(len(chosen.gpus)))
    return Target(service, name, chosen, gpu_env(local), launched=True)


def inventory_names(inventory: Inventory, host: str | None) -> list[str]:
    """The hosts to consider: ``host`` alone, or every host in hosts.toml order."""
    return [inventory.get(host).name] if host else inventory.names()
