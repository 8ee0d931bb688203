"""Placement: which host has N free GPUs, computed from GPU samples alone (no IO).

Used by ``gpudesk submit --gpus N`` (with one sample per host read just before) and by the
TUI's launch and submit forms (with FleetState's live samples), so both say the same thing.

A GPU is free exactly when the Fleet counts it free (:func:`gpudesk.core.gpu.sample.is_free`):
no process on it, and utilisation and memory use both under 10 %. A GPU that reports N/A for
either is not free, since gpudesk cannot tell.

Choice (deterministic): among the hosts with at least N free GPUs, the one with the *fewest*
free GPUs (best fit: larger free blocks stay whole for larger jobs); ties go to the host listed
first (hosts.toml order, as the Fleet lists them). On that host, the N lowest free indices.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gpudesk.core.gpu.sample import DriverState, GpuSample, free_gpu_indices


@dataclass(frozen=True)
class HostFree:
    """One host's free GPUs, or why it has none to offer."""

    host: str
    free: tuple[int, ...] = ()
    total: int = 0
    problem: str | None = None  # "unreachable: ...", "no GPUs", "no GPU sample yet", ...
    simulated: bool = False

    @property
    def text(self) -> str:
        """For people: "2 of 8 free (GPUs 0,7)", or the problem."""
        if self.problem is not None:
            return self.problem
        if not self.free:
            return f"0 of {self.total} free"
        return f"{len(self.free)} of {self.total} free (GPUs {indices_text(self.free)})"

    @property
    def short(self) -> str:
        return self.problem if self.problem is not None else f"{len(self.free)} free"


@dataclass(frozen=True)
class Placement:
    host: str
    gpus: tuple[int, ...]
    simulated: bool
    why: str  # "placed on gpu2: GPUs 2,3 free (gpu1: 1 of 8 free)"


def indices_text(indices: Iterable[int]) -> str:
    return ",".join(str(i) for i in indices)


def host_free(host: str, sample: GpuSample | None, problem: str | None = None) -> HostFree:
    """What ``sample`` (the host's latest) offers; ``problem`` when there is no sample."""
    if sample is None:
        return HostFree(host, problem=problem or "no GPU sample yet")
    sim = sample.simulated
    if sample.driver_state is not DriverState.OK or not sample.gpus:
        state = sample.driver_state
        reason = "no GPUs" if state in (DriverState.OK, DriverState.NO_GPUS) else state.value
        return HostFree(host, problem=reason, simulated=sim)
    return HostFree(host, tuple(free_gpu_indices(sample)), len(sample.gpus), None, sim)


def free_map(
    samples: Sequence[tuple[str, GpuSample | None]], problems: dict[str, str] | None = None
) -> list[HostFree]:
    """Each host's :class:`HostFree`, in the given (Fleet) order."""
    return [host_free(name, sample, (problems or {}).get(name)) for name, sample in samples]


def place(hosts: Sequence[HostFree], count: int) -> Placement | None:
    """The host and GPUs for a job of ``count`` GPUs, or None when no host has that many free."""
    if count < 1:
        raise ValueError(f"a placement needs at least one GPU, not {count}")
    best: HostFree | None = None
    for entry in hosts:  # strictly fewer free wins, so the first listed wins a tie
        if len(entry.free) >= count and (best is None or len(entry.free) < len(best.free)):
            best = entry
    if best is None:
        return None
    gpus = tuple(sorted(best.free)[:count])
    others = [f"{h.host}: {h.short}" for h in hosts if h.host != best.host]
    noun = "GPU" if count == 1 else "GPUs"
    why = f"placed on {best.host}: {noun} {indices_text(gpus)} free"
    if best.simulated:
        why += " (SIMULATED)"
    if others:
        why += f" ({'; '.join(others)})"
    return Placement(best.host, gpus, best.simulated, why)


def free_map_text(hosts: Sequence[HostFree]) -> str:
    """One line per host: "  gpu1: 2 of 8 free (GPUs 0,7)"."""
    return "\n".join(f"  {h.host}: {h.text}" for h in hosts) or "  (no hosts)"


def no_fit_sentence(hosts: Sequence[HostFree], count: int) -> str:
    noun = "GPU" if count == 1 else "GPUs"
    return f"No host has {count} free {noun} now; free GPUs per host:\n{free_map_text(hosts)}"


def suggestion(hosts: Sequence[HostFree], count: int = 1) -> str:
    """The forms' hint line: "suggested: gpu2 (GPUs 2,3 free)", or why there is none."""
    if not any(h.problem is None for h in hosts):
        return "suggested: none yet (no GPU samples)"
    best = place(hosts, count)
    if best is None:
        return f"suggested: none (no host has {count} free GPU{'s' if count > 1 else ''})"
    entry = next(h for h in hosts if h.host == best.host)
    sim = " SIMULATED" if entry.simulated else ""
    noun = "GPU" if len(entry.free) == 1 else "GPUs"
    return f"suggested: {best.host} ({noun} {indices_text(entry.free)} free{sim})"
