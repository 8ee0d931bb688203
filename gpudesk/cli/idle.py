"""``gpudesk ps --idle``: containers whose GPUs stay idle while the CLI watches them.

The hosts keep no history (the agent only streams), and a one-shot command cannot wait the
TUI's 30 minutes by default. So the command watches every host's GPU stream for ``--for``
(default 10 s) and lists only what that observation proves: containers holding GPUs whose
utilisation stayed under ``--below`` % in every sample, without a gap, for the whole time.
``--for 30m`` gives the TUI's definition at the TUI's cost in waiting.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from typing import Any

from gpudesk.cli.common import CliError, HostFailure, connected_services, print_json, print_table
from gpudesk.core.config import Inventory
from gpudesk.core.fleet import Fleet, simulated_gpus
from gpudesk.core.gpu.idle import (
    DEFAULT_MAX_GAP_S,
    IdleConfigError,
    IdleContainer,
    IdlePolicy,
    IdleTracker,
    duration_text,
    parse_duration,
    parse_percent,
)
from gpudesk.core.gpu.sample import GpuSample
from gpudesk.core.gpu.stream import GpuStream

DEFAULT_FOR = "10s"
MAX_FOR_S = 24 * 3600.0
# How long a host may take to send its first sample (connecting is done by then).
FIRST_SAMPLE_GRACE_S = 60.0


def probe_policy(for_text: str, below_text: str | None) -> tuple[IdlePolicy, float]:
    """The policy for a ``for_text`` observation, and the agent's sampling interval."""
    try:
        for_s = parse_duration(for_text, "--for")
        below = parse_percent(below_text, "--below") if below_text else IdlePolicy.from_env().below
    except IdleConfigError as exc:
        raise CliError(str(exc)) from None
    if for_s > MAX_FOR_S:
        raise CliError("--for must be at most 24h.")
    interval = max(0.1, min(1.0, for_s / 5))  # at least five samples over the observation
    return IdlePolicy(below, for_s, max(DEFAULT_MAX_GAP_S, 3 * interval)), interval


class _Watch:
    """One host's observation: its tracker and the host time it started at."""

    def __init__(self, policy: IdlePolicy) -> None:
        self.tracker = IdleTracker(policy)
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.simulated = False

    def add(self, sample: GpuSample) -> None:
        self.tracker.add(sample)
        self.first_ts = sample.ts if self.first_ts is None else self.first_ts
        self.last_ts = sample.ts
        self.simulated = self.simulated or sample.simulated

    @property
    def observed_s(self) -> float:
        return (
            0.0 if self.first_ts is None or self.last_ts is None else self.last_ts - self.first_ts
        )

    @property
    def done(self) -> bool:
        return self.observed_s >= self.tracker.policy.after_s


def observe(
    fleet: Fleet, names: list[str], policy: IdlePolicy, interval: float, failures: list[HostFailure]
) -> dict[str, _Watch]:
    """Watch each connected host's GPU stream until it covers ``policy.after_s``."""
    samples: queue.Queue[tuple[str, GpuSample]] = queue.Queue()
    watches: dict[str, _Watch] = {}
    streams: list[GpuStream] = []
    try:
        for service in connected_services(fleet, names, failures):
            name = service.host.name
            watches[name] = _Watch(policy)
            stream = service.gpu_stream(
                lambda sample, name=name: samples.put((name, sample)),  # type: ignore[misc]
                lambda state, detail: None,
                interval=interval,
                simulate=simulated_gpus(),
            )
            streams.append(stream)
            threading.Thread(target=stream.run, daemon=True).start()
        deadline = time.monotonic() + policy.after_s + FIRST_SAMPLE_GRACE_S
        while not all(w.done for w in watches.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                name, sample = samples.get(timeout=left)
            except queue.Empty:
                break
            if not watches[name].done:
                watches[name].add(sample)
    finally:
        for stream in streams:
            stream.stop()
    for name, watch in list(watches.items()):
        if not watch.done:
            seen = duration_text(watch.observed_s) if watch.first_ts is not None else "no"
            message = f"its GPU agent sent {seen} samples, not {duration_text(policy.after_s)}"
            print(f"gpudesk: {name}: {message}; nothing is claimed idle there.", file=sys.stderr)
            failures.append({"host": name, "error": f"{message}."})
            del watches[name]
    return watches


def idle_row(host: str, c: IdleContainer) -> dict[str, Any]:
    """A container as docs/json.md's IdleContainer."""
    return {
        "host": host,
        "name": c.name,
        "id": c.container_id,
        "gpus": list(c.gpus),
        "gpu_memory": c.mem_used,
        "idle_s": round(c.low_s, 3),
    }


def cmd_ps_idle(args: argparse.Namespace) -> int:
    policy, interval = probe_policy(args.idle_for or DEFAULT_FOR, args.below)
    inventory = Inventory.load()
    names = [inventory.get(args.host).name] if args.host else inventory.names()
    fleet = Fleet.build(inventory)
    failures: list[HostFailure] = []
    try:
        watches = observe(fleet, names, policy, interval, failures)
    finally:
        fleet.close()
    found = [(h, c) for h, w in watches.items() for c in w.tracker.idle()]
    simulated = any(w.simulated for w in watches.values())
    code = 1 if failures else 0
    if args.json:
        print_json(
            {
                "observed_s": policy.after_s,
                "below": policy.below,
                "simulated": simulated,
                "containers": [idle_row(h, c) for h, c in found],
                "errors": failures,
            }
        )
        return code
    watched = f"watched {len(watches)} host(s) for {duration_text(policy.after_s)}"
    sim = " (SIMULATED GPUs)" if simulated else ""
    if not found:
        print(f"No idle containers: {watched}, none held GPUs under {policy.below:g} %.{sim}")
        return code
    print(f"Idle: GPU utilisation under {policy.below:g} % all the time ({watched}).{sim}")
    table = [
        [h, c.name, ",".join(map(str, c.gpus)), _gib(c.mem_used), f"≥{duration_text(c.low_s)}"]
        for h, c in found
    ]
    print_table(table, ["HOST", "NAME", "GPUS", "GPU MEM", "IDLE"])
    return code


def _gib(size: int | None) -> str:
    return "-" if size is None else f"{size / 2**30:.1f}GiB"
