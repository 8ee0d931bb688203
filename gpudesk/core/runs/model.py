"""A training run as gpudesk sees it: its state, spec and metrics, rebuilt from its folder.

A run lives in its folder on the container's mounted workspace, ``/workspace/runs/<run>/``:
``run.json`` (what was started), ``pid`` (the detached shell, also its process group),
``train.log``, ``metrics.jsonl`` (the scripts' progress, see ``metrics_schema``), ``exit_code``
once it ended and ``stopped`` when gpudesk stopped it.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from gpudesk.core.containers.model import WORKSPACE
from gpudesk.core.errors import GpudeskError
from gpudesk.payload.train import metrics_schema

BUNDLED_SCRIPTS = ("textcls", "translate", "lm", "recsys")
RUNS_DIR = f"{WORKSPACE}/runs"
SCRIPTS_DIR = f"{WORKSPACE}/.gpudesk/scripts"
_RUN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_COMPLETE = ".complete"
# Enough of metrics.jsonl for the list's numbers; the detail view reads more.
LIST_TAIL_BYTES = 64 * 1024
DETAIL_TAIL_BYTES = 2 * 1024 * 1024
DETAIL_LOG_LINES = 40
PID_WAIT = 10.0
# A run without a pid this long after it was submitted never started: its submit was cut off
# (gpudesk killed, the container stopped) between writing run.json and starting the process.
# Generous, because ``started`` is the operator's clock and the host's may differ.
ABANDON_AFTER = 60.0
ABANDONED_REASON = "submit was interrupted before the run started; `gpudesk stop-run` clears it"


class RunError(GpudeskError):
    """A run could not be submitted, found or stopped; the message is one sentence for the user."""


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"
    ABANDONED = "abandoned"
    DEGRADED = "degraded"  # a multi-node run with a node lost or failed and others running

    @property
    def finished(self) -> bool:
        return self not in (RunState.STARTING, RunState.RUNNING, RunState.DEGRADED)


@dataclass(frozen=True)
class NodeLaunch:
    """One node of a multi-node run: how its torchrun joins PyTorch's c10d rendezvous."""

    nnodes: int
    node_rank: int
    endpoint: str  # node 0's address:port, where the rendezvous store listens
    rdzv_id: str  # the run id, the same on every node
    local_addr: str  # this node's address as the other nodes reach it
    env: dict[str, str]  # NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME for this node
    record: dict[str, Any]  # what run.json says about the whole run (its nodes)

    def torchrun_args(self) -> list[str]:
        is_host = "1" if self.node_rank == 0 else "0"
        return [
            "--nnodes", str(self.nnodes), "--node-rank", str(self.node_rank),
            "--rdzv-backend", "c10d", "--rdzv-endpoint", self.endpoint,
            "--rdzv-id", self.rdzv_id, "--rdzv-conf", f"is_host={is_host}",
            "--local-addr", self.local_addr,
        ]  # fmt: skip


@dataclass(frozen=True)
class NodeStatus:
    """One node of a multi-node run as `gpudesk runs` shows it."""

    node_rank: int
    host: str
    container: str
    state: str  # a RunState value, or "unknown" when that host was not asked
    exit_code: int | None = None
    pid: int | None = None
    dir: str = ""
    reason: str | None = None  # why the node is lost or failed

    def to_json(self) -> dict[str, Any]:
        return {
            "node_rank": self.node_rank,
            "host": self.host,
            "container": self.container,
            "state": self.state,
            "exit_code": self.exit_code,
            "pid": self.pid,
            "dir": self.dir or None,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class RunSpec:
    """What to run: a bundled task name or an absolute path inside the container."""

    script: str
    args: tuple[str, ...] = ()
    nproc: int = 1
    name: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # extra environment, e.g. placement's GPU pinning


@dataclass
class Metrics:
    """What metrics.jsonl says about a run."""

    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    samples_per_s: float | None = None
    step_time_s: float | None = None
    mem_gib: float | None = None
    first_ts: float | None = None
    last_ts: float | None = None
    last_train: dict[str, Any] = field(default_factory=dict)
    last_eval: dict[str, Any] = field(default_factory=dict)
    done_reason: str | None = None
    error: str | None = None
    ckpt_seconds: float | None = None  # how long the last checkpoint took to write
    losses: list[tuple[int, float]] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    throughput: list[tuple[int, float]] = field(default_factory=list)

    @property
    def progress(self) -> float | None:
        if self.step is None or not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


@dataclass
class Run:
    """One run as rebuilt from its folder."""

    name: str
    host: str
    container: str
    script: str
    state: RunState
    exit_code: int | None
    started: float | None
    ended: float | None
    command: list[str]
    args: list[str]
    nproc: int
    pid: int | None
    dir: str  # on the GPU host
    container_dir: str
    metrics: Metrics
    record: dict[str, Any] = field(default_factory=dict)
    log_tail: list[str] = field(default_factory=list)
    now: float = field(default_factory=time.time)
    nodes: list[NodeStatus] = field(default_factory=list)  # a multi-node run's nodes
    reason: str | None = None  # why a multi-node run is degraded or failed

    @property
    def run_id(self) -> str:
        return str(self.record.get("id") or "")

    @property
    def nnodes(self) -> int:
        value = self.record.get("nnodes")
        return value if isinstance(value, int) and value > 1 else 1

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.host, self.container, self.name)

    @property
    def log_path(self) -> str:
        return f"{self.dir}/train.log"

    @property
    def elapsed(self) -> float | None:
        if self.started is None:
            return None
        end = self.ended if self.state.finished and self.ended else self.now
        return max(0.0, end - self.started)

    @property
    def eta(self) -> float | None:
        return eta_seconds(self.metrics, self.elapsed) if not self.state.finished else None

    @property
    def state_text(self) -> str:
        text = self.state.value
        if self.state is RunState.FAILED and self.exit_code is not None:
            text = f"failed ({self.exit_code})"
        if self.nodes:  # per node, in node-rank order
            text += " [" + ",".join(n.state for n in self.nodes) + "]"
        return text

    def to_json(self) -> dict[str, Any]:
        m = self.metrics
        return {
            "name": self.name,
            "host": self.host,
            "container": self.container,
            "script": self.script,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "step": m.step,
            "total_steps": m.total_steps,
            "loss": m.loss,
            "tokens_per_s": m.tokens_per_s,
            "elapsed_s": _round(self.elapsed),
            "eta_s": _round(self.eta),
            "started": self.started,
            "command": self.command,
            "args": self.args,
            "nproc": self.nproc,
            "pid": self.pid,
            "dir": self.dir,
            "last_train": m.last_train,
            "last_eval": m.last_eval,
            "error": m.error
            or self.reason
            or (ABANDONED_REASON if self.state is RunState.ABANDONED else None),
            "nnodes": self.nnodes,
            "nodes": [n.to_json() for n in self.nodes],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ------------------------------------------------------------------------- parsing


def number(value: Any) -> float | None:
    """A finite number from a JSON value; None for anything else (bools, null, inf, text)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


# The train-line numbers Metrics keeps: the schema's train fields Metrics has a slot for
# (total_steps is an int and checked apart).
_TRAIN_NUMBERS = tuple(
    name
    for name in metrics_schema.REQUIRED["train"]
    if name in Metrics.__dataclass_fields__ and name != "total_steps"
)


def parse_metrics(lines: Iterable[str], keep_series: bool = True) -> Metrics:
    """Summarise metrics.jsonl lines; torn, foreign or malformed lines are skipped."""
    m = Metrics()
    for raw in lines:
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        step = record.get("step")
        if isinstance(step, int) and not isinstance(step, bool) and step >= 0:
            m.step = step if m.step is None else max(m.step, step)
        ts = number(record.get("ts"))
        if ts is not None:
            m.first_ts = ts if m.first_ts is None else min(m.first_ts, ts)
            m.last_ts = ts if m.last_ts is None else max(m.last_ts, ts)
        event = record.get("event")
        if event == "train":
            m.last_train = record
            total = record.get("total_steps")
            if isinstance(total, int) and not isinstance(total, bool) and total > 0:
                m.total_steps = total
            for name in _TRAIN_NUMBERS:
                setattr(m, name, number(record.get(name)))
            if keep_series and isinstance(step, int) and m.loss is not None:
                m.losses.append((step, m.loss))
            if keep_series and isinstance(step, int) and m.tokens_per_s is not None:
                m.throughput.append((step, m.tokens_per_s))
        elif event == "eval":
            m.last_eval = record
            values = {
                k: float(v)
                for k, v in record.items()
                if k not in metrics_schema.COMMON_REQUIRED and number(v) is not None
            }
            if keep_series and isinstance(step, int):
                m.evals.append((step, values))
        elif event == "ckpt":
            m.ckpt_seconds = number(record.get("seconds"))
        elif event == "done":
            reason = record.get("reason")
            m.done_reason = reason if isinstance(reason, str) else metrics_schema.DONE_REASONS[0]
        elif event == "error":
            message = record.get("message")
            m.error = message if isinstance(message, str) else "error"
    return m


def eta_seconds(metrics: Metrics, elapsed: float | None) -> float | None:
    """Seconds left from the mean step time, or from elapsed time per step when it is missing."""
    step, total = metrics.step, metrics.total_steps
    if step is None or not total or step <= 0:
        return None
    left = max(0, total - step)
    if left == 0:
        return 0.0
    if metrics.step_time_s is not None and metrics.step_time_s > 0:
        return left * metrics.step_time_s
    if elapsed is not None and elapsed > 0:
        return left * elapsed / step
    return None


def derive_state(
    *,
    exit_code: int | None,
    stopped: bool,
    alive: bool | None,
    container_running: bool,
    has_pid: bool,
    waited: float | None = None,
) -> RunState:
    """The state of a run from what its folder and the container say.

    ``alive`` is None when liveness could not be checked (the container is not running);
    ``waited`` is how long ago the run was submitted, when known.
    """
    if stopped and (exit_code is not None or alive is not True):
        return RunState.STOPPED
    if exit_code is not None:
        return RunState.SUCCEEDED if exit_code == 0 else RunState.FAILED
    if not container_running:
        return RunState.LOST
    if alive:
        return RunState.RUNNING
    # The shell writes its pid first thing; without it the run is still being started.
    if not has_pid:
        if waited is not None and waited > ABANDON_AFTER:
            return RunState.ABANDONED
        return RunState.STARTING
    return RunState.LOST


def validate_run_name(name: str) -> str:
    if not _RUN_NAME_RE.fullmatch(name):
        raise RunError(
            f"{name!r} cannot name a run: use 1 to 63 lowercase letters, digits, '_', '.' or '-',"
            " starting with a letter or digit."
        )
    return name


def default_run_name(script: str, now: datetime | None = None) -> str:
    stem = PurePosixPath(script).name.removesuffix(".py").lower()
    stem = re.sub(r"[^a-z0-9_.-]", "-", stem).lstrip("_.-") or "run"
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{stem[:47]}-{stamp}"


def script_label(script: str) -> str:
    return PurePosixPath(script).name.removesuffix(".py")
