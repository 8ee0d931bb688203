"""Idle GPUs: containers that hold GPUs whose utilisation has stayed low for a while.

Fed the GPU stream's samples one by one (the same samples the history keeps), an
:class:`IdleTracker` keeps, per container that holds GPUs, only when its current low stretch
began; memory does not grow with the window. A container is *low* in a sample when every GPU
its processes run on reports a utilisation under :attr:`IdlePolicy.below`. Anything that
cannot be proven low ends the stretch: a busy GPU, a GPU the sample does not report or whose
utilisation is N/A (a failed NVML field), a gap in the samples (longer than
:attr:`IdlePolicy.max_gap_s`, a stream restart, the host's clock going back) and the container
no longer holding a GPU. A container is *idle* once its stretch covers :attr:`IdlePolicy.after_s`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from gpudesk.core.config import ConfigError
from gpudesk.core.gpu.sample import GpuSample

AFTER_ENV = "GPUDESK_IDLE_AFTER"
BELOW_ENV = "GPUDESK_IDLE_BELOW"
DEFAULT_AFTER_S = 1800.0  # 30 min
DEFAULT_BELOW = 5.0  # percent of GPU utilisation
DEFAULT_MAX_GAP_S = 5.0  # as the GPU history's gaps

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class IdleConfigError(ConfigError):
    """A duration or threshold for idle detection that cannot be used."""


def parse_duration(text: str, what: str) -> float:
    """``30m``, ``2s``, ``1.5h``, ``1d`` or plain seconds, as seconds (more than zero)."""
    match = _DURATION.match(text)
    seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"] if match else math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise IdleConfigError(
            f"{what} must be a duration such as 30m, 90s or 1h, not {text.strip()!r}."
        )
    return seconds


def parse_percent(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= 100:
        raise IdleConfigError(f"{what} must be a percentage above 0 and at most 100, not {text!r}.")
    return value


def duration_text(seconds: float) -> str:
    """Short, for a table cell: 45s, 12m, 2h05m, 3d4h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


@dataclass(frozen=True)
class IdlePolicy:
    below: float = DEFAULT_BELOW  # a GPU is low under this utilisation (percent)
    after_s: float = DEFAULT_AFTER_S  # low this long: idle
    max_gap_s: float = DEFAULT_MAX_GAP_S  # samples further apart than this break a stretch

    @classmethod
    def from_env(cls) -> IdlePolicy:
        """Defaults, changed by GPUDESK_IDLE_AFTER (a duration) and GPUDESK_IDLE_BELOW (%)."""
        after = os.environ.get(AFTER_ENV, "").strip()
        below = os.environ.get(BELOW_ENV, "").strip()
        return cls(
            below=parse_percent(below, BELOW_ENV) if below else DEFAULT_BELOW,
            after_s=parse_duration(after, AFTER_ENV) if after else DEFAULT_AFTER_S,
        )

    def describe(self) -> str:
        return f"GPU utilisation under {self.below:g} % for {duration_text(self.after_s)}"


@dataclass(frozen=True)
class IdleContainer:
    """A container holding GPUs, and how long they have all been low (idle or not yet)."""

    name: str
    container_id: str | None
    gpus: tuple[int, ...]  # the GPUs its processes run on, in the last sample
    mem_used: int | None  # bytes of GPU memory its processes hold (None: not reported)
    low_since: float  # host time of the first sample of the current low stretch
    last_ts: float  # host time of the last sample

    @property
    def low_s(self) -> float:
        return self.last_ts - self.low_since


@dataclass(frozen=True)
class _Holding:
    container_id: str | None
    gpus: tuple[int, ...]
    mem_used: int | None
    low: bool


def holdings(sample: GpuSample, below: float) -> dict[str, _Holding]:
    """Per container (by name, else id) in ``sample``: its GPUs, memory and whether all are low."""
    util = {gpu.index: gpu.util_gpu for gpu in sample.gpus}
    gpus: dict[str, set[int]] = {}
    ids: dict[str, str | None] = {}
    mem: dict[str, int | None] = {}
    for proc in sample.processes:
        key = proc.container_name or proc.container_id
        if not key:
            continue  # not in a container: nothing gpudesk could stop
        gpus.setdefault(key, set()).add(proc.gpu)
        ids.setdefault(key, proc.container_id)
        if proc.used_memory is not None:
            mem[key] = (mem.get(key) or 0) + proc.used_memory
        else:
            mem.setdefault(key, None)
    out: dict[str, _Holding] = {}
    for key, held in gpus.items():
        values = [util.get(index) for index in held]
        low = all(v is not None and v < below for v in values)
        out[key] = _Holding(ids[key], tuple(sorted(held)), mem[key], low)
    return out


class IdleTracker:
    """Low stretches per container, fed sample by sample; see the module's docstring."""

    def __init__(self, policy: IdlePolicy | None = None) -> None:
        self.policy = policy or IdlePolicy()
        self._low: dict[str, IdleContainer] = {}
        self._last_ts: float | None = None
        self._last_seq: int | None = None
        self._gap = False

    def mark_gap(self) -> None:
        """The stream broke (restarting): no stretch goes on across it, and until the next
        sample nothing is known to be low."""
        self._gap = True
        self._low = {}

    def add(self, sample: GpuSample) -> None:
        ts = sample.ts
        last_ts, last_seq = self._last_ts, self._last_seq
        gap = self._gap or last_ts is None or not 0 <= ts - last_ts <= self.policy.max_gap_s
        gap = gap or (last_seq is not None and sample.seq <= last_seq)  # the agent restarted
        self._gap, self._last_ts, self._last_seq = False, ts, sample.seq
        low: dict[str, IdleContainer] = {}
        for key, held in holdings(sample, self.policy.below).items():
            if not held.low:
                continue
            before = None if gap else self._low.get(key)
            since = before.low_since if before is not None else ts
            low[key] = IdleContainer(key, held.container_id, held.gpus, held.mem_used, since, ts)
        self._low = low

    def low(self) -> list[IdleContainer]:
        """Every container whose GPUs are low now, idle or not yet, longest first."""
        return sorted(self._low.values(), key=lambda c: (c.low_since, c.name))

    def idle(self) -> list[IdleContainer]:
        """The containers low for at least the policy's window, longest first."""
        return [c for c in self.low() if c.low_s >= self.policy.after_s]

    def get(self, name: str) -> IdleContainer | None:
        """``name``'s entry if it is idle."""
        found = self._low.get(name)
        return found if found is not None and found.low_s >= self.policy.after_s else None


def idle_tracker() -> IdleTracker:
    """A tracker with the policy the environment sets (see :meth:`IdlePolicy.from_env`)."""
    return IdleTracker(IdlePolicy.from_env())
