"""Simulated GPUs, only when explicitly asked for with ``GPUDESK_SIMULATE_GPUS``.

The variable holds a spec for every host, optionally followed by per-host specs::

    GPUDESK_SIMULATE_GPUS="8"                        # 8 fake GPUs on every host
    GPUDESK_SIMULATE_GPUS="8,busy=0-5"               # ... of which exactly 0-5 are busy
    GPUDESK_SIMULATE_GPUS="8;gpu1=8,busy=0-7"        # gpu1: all 8 busy; the others: 8
    GPUDESK_SIMULATE_GPUS=";gpu2=4"                  # only gpu2 simulated (4 GPUs)

Without ``busy=`` the agent's fixed demo pattern applies (GPUs 0 and 7 of every 8 idle).
Every sample from a simulated agent says ``"simulated": true`` and every view says SIMULATED.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from gpudesk.core.config import ConfigError

SIMULATE_ENV = "GPUDESK_SIMULATE_GPUS"
_RANGES = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*", re.ASCII)


@dataclass(frozen=True)
class SimSpec:
    count: int
    busy: str | None = None  # GPU indices and ranges, e.g. "0-5,7"; None: the demo pattern

    def agent_args(self) -> list[str]:
        args = ["--simulate", str(self.count)]
        if self.busy is not None:
            args += ["--simulate-busy", self.busy]
        return args


@dataclass(frozen=True)
class Simulation:
    default: SimSpec | None
    hosts: dict[str, SimSpec]

    def for_host(self, name: str) -> SimSpec | None:
        return self.hosts.get(name, self.default)

    @property
    def most(self) -> int | None:
        """The largest simulated count anywhere (None: nothing is simulated)."""
        counts = [s.count for s in (self.default, *self.hosts.values()) if s is not None]
        return max(counts) if counts else None


def _bad(raw: str) -> ConfigError:
    return ConfigError(
        f"{SIMULATE_ENV} must be a number of GPUs, optionally with busy=RANGES and"
        f" ;HOST=... parts (like 8,busy=0-5;gpu1=8), not {raw!r}."
    )


def _spec(text: str, raw: str) -> SimSpec | None:
    count_text, _, rest = text.strip().partition(",")
    if not count_text.strip():
        return None
    try:
        count = int(count_text)
    except ValueError:
        raise _bad(raw) from None
    busy: str | None = None
    if rest:
        key, _, value = rest.partition("=")
        if key.strip() != "busy" or not _RANGES.fullmatch(value.strip() or "0"):
            raise _bad(raw)
        busy = value.strip()
    return SimSpec(count, busy) if count > 0 else None


def parse_simulation(raw: str) -> Simulation:
    parts = raw.split(";")
    default = _spec(parts[0], raw)
    hosts: dict[str, SimSpec] = {}
    for part in parts[1:]:
        if not part.strip():
            continue
        host, sep, text = part.partition("=")
        spec = _spec(text, raw) if sep and host.strip() else None
        if spec is None:
            raise _bad(raw)
        hosts[host.strip()] = spec
    return Simulation(default, hosts)


def simulation() -> Simulation:
    return parse_simulation(os.environ.get(SIMULATE_ENV, "").strip())


def simulation_for(host: str) -> SimSpec | None:
    """The simulation asked for on ``host``, or None for its real GPUs."""
    return simulation().for_host(host)


SIMULATE_PROCESSES_ENV = "GPUDESK_SIMULATE_PROCESSES"
_SIM_PROCESS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*@[0-9]{1,3}$")


def simulated_processes() -> tuple[str, ...]:
    """``NAME@GPU`` specs from GPUDESK_SIMULATE_PROCESSES (comma-separated; with simulated GPUs
    only): that fake GPU sits idle holding memory for real container NAME's main process."""
    raw = os.environ.get(SIMULATE_PROCESSES_ENV, "").strip()
    specs = tuple(s.strip() for s in raw.split(",") if s.strip())
    for spec in specs:
        if not _SIM_PROCESS.match(spec):
            raise ConfigError(
                f"{SIMULATE_PROCESSES_ENV} must list CONTAINER@GPU items, not {spec!r}."
            )
    return specs
