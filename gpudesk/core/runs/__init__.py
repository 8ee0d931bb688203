"""Training runs in gpudesk containers: submit, discover, state, stop.

A run lives in its folder on the container's mounted workspace, ``/workspace/runs/<run>/``:
``run.json`` (what was started), ``pid`` (the detached shell, also its process group),
``train.log``, ``metrics.jsonl`` (the scripts' progress, see ``metrics_schema``), ``exit_code``
once it ended and ``stopped`` when gpudesk stopped it. Nothing about a run lives only in
gpudesk's memory: :func:`list_runs` rebuilds every run from those folders, read on the host
(so stopped containers' runs are listed too), plus one ``docker exec`` per running container
to see which processes are still alive.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import io
import json
import math
import re
import tarfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

import docker
import docker.errors
import requests

from gpudesk import __version__
from gpudesk.core import shell
from gpudesk.core.flavours import label

BUNDLED_SCRIPTS = ("textcls", "translate", "lm", "recsys")
WORKSPACE = "/workspace"
RUNS_DIR = f"{WORKSPACE}/runs"
SCRIPTS_DIR = f"{WORKSPACE}/.gpudesk/scripts"
_RUN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_COMPLETE = ".complete"
# Enough of metrics.jsonl for the list's numbers; the detail view reads more.
LIST_TAIL_BYTES = 64 * 1024
DETAIL_TAIL_BYTES = 2 * 1024 * 1024
DETAIL_LOG_LINES = 40
PID_WAIT = 10.0

_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


class RunError(Exception):
    """A run could not be submitted, found or stopped; the message is one sentence for the user."""


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STOPPED = "stopped"
    LOST = "lost"

    @property
    def finished(self) -> bool:
        return self not in (RunState.STARTING, RunState.RUNNING)


@dataclass(frozen=True)
class RunSpec:
    """What to run: a bundled task name or an absolute path inside the container."""

    script: str
    args: tuple[str, ...] = ()
    nproc: int = 1
    name: str | None = None


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
        if self.state is RunState.FAILED and self.exit_code is not None:
            return f"failed ({self.exit_code})"
        return self.state.value

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
            "error": m.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ------------------------------------------------------------------------- parsing


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


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
        ts = _number(record.get("ts"))
        if ts is not None:
            m.first_ts = ts if m.first_ts is None else min(m.first_ts, ts)
            m.last_ts = ts if m.last_ts is None else max(m.last_ts, ts)
        event = record.get("event")
        if event == "train":
            m.last_train = record
            total = record.get("total_steps")
            if isinstance(total, int) and not isinstance(total, bool) and total > 0:
                m.total_steps = total
            m.loss = _number(record.get("loss"))
            m.tokens_per_s = _number(record.get("tokens_per_s"))
            m.samples_per_s = _number(record.get("samples_per_s"))
            m.step_time_s = _number(record.get("step_time_s"))
            m.mem_gib = _number(record.get("mem_gib"))
            if keep_series and isinstance(step, int) and m.loss is not None:
                m.losses.append((step, m.loss))
            if keep_series and isinstance(step, int) and m.tokens_per_s is not None:
                m.throughput.append((step, m.tokens_per_s))
        elif event == "eval":
            m.last_eval = record
            values = {
                k: float(v)
                for k, v in record.items()
                if k not in ("ts", "step", "epoch", "world_size") and _number(v) is not None
            }
            if keep_series and isinstance(step, int):
                m.evals.append((step, values))
        elif event == "done":
            reason = record.get("reason")
            m.done_reason = reason if isinstance(reason, str) else "completed"
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
) -> RunState:
    """The state of a run from what its folder and the container say.

    ``alive`` is None when liveness could not be checked (the container is not running).
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
        return RunState.STARTING
    return RunState.LOST


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


RUN_COLUMNS = (
    "NAME",
    "HOST/CONTAINER",
    "SCRIPT",
    "STATE",
    "STEP",
    "LOSS",
    "TOK/S",
    "ELAPSED",
    "ETA",
)


def run_cells(run: Run) -> list[str]:
    """A run as the runs view and `gpudesk runs` show it, in RUN_COLUMNS order."""
    m = run.metrics
    step = (
        "-" if m.step is None else (f"{m.step}/{m.total_steps}" if m.total_steps else str(m.step))
    )
    return [
        run.name,
        f"{run.host}/{run.container}",
        script_label(run.script),
        run.state_text,
        step,
        format_number(m.loss, ".4f"),
        format_number(m.tokens_per_s, ",.0f"),
        format_duration(run.elapsed),
        format_duration(run.eta),
    ]


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


# ------------------------------------------------------------------------- bundled scripts


def bundled_files() -> dict[str, bytes]:
    """The training scripts and sample data gpudesk carries, by relative path."""
    root = importlib.resources.files("gpudesk.payload.train")
    files: dict[str, bytes] = {}
    for entry in root.iterdir():
        if entry.is_file() and entry.name.endswith(".py") and entry.name != "__init__.py":
            files[entry.name] = entry.read_bytes()
    data = root.joinpath("data")
    if data.is_dir():
        for entry in data.iterdir():
            if entry.is_file() and not entry.name.endswith(".py"):
                files[f"data/{entry.name}"] = entry.read_bytes()
    return files


def scripts_hash(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:16]


def _tarball(files: dict[str, bytes], prefix: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info = tarfile.TarInfo(f"{prefix}{name}")
            info.size = len(files[name])
            info.mode = 0o644
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


# ------------------------------------------------------------------------- commands


def run_command(python: str, script_path: str, out_dir: str, spec: RunSpec) -> list[str]:
    """The argv of the training process; torchrun (as a module) for more than one process."""
    launcher = [python]
    if spec.nproc > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
        launcher.append(str(spec.nproc))
    return [*launcher, script_path, "--out", out_dir, *spec.args]


# The detached wrapper: records its pid (= process group, thanks to setsid), runs the job and
# records the exit code atomically. The TERM trap keeps this shell alive while the job handles
# SIGTERM (it checkpoints), so the exit code is still written.
_WRAPPER = "echo $$ > pid; trap 'true' TERM INT; {cmd}; code=$?; echo $code > exit_code.tmp; mv exit_code.tmp exit_code"


def wrapper_script(argv: Sequence[str], env: dict[str, str]) -> str:
    return _WRAPPER.format(cmd=shell.command(argv, env=env))


def launch_argv(run_dir: str, inner: str) -> list[str]:
    """``docker exec`` argv that starts ``inner`` detached, in its own session, logging to train.log."""
    outer = shell.sequence(
        shell.command(["cd", run_dir]),
        "exec setsid nohup sh -c " + shell.quote(inner) + " > train.log 2>&1 < /dev/null",
    )
    return ["sh", "-c", outer]


# ------------------------------------------------------------------------- containers


def _container(client: Any, name: str) -> Any:
    try:
        return client.containers.get(name)
    except docker.errors.NotFound as exc:
        raise RunError(f"There is no container named {name} on this host; check the name.") from exc
    except _ENGINE_ERRORS as exc:
        raise RunError(f"Could not reach Docker to find {name} ({exc}); check the host.") from exc


def _labels(container: Any) -> dict[str, str]:
    return dict((container.attrs.get("Config") or {}).get("Labels") or {})


def _exec(container: Any, argv: list[str], user: str = "") -> tuple[int, str]:
    try:
        code, out = container.exec_run(argv, user=user, demux=False)
    except _ENGINE_ERRORS as exc:
        raise RunError(f"Could not run a command in {container.name} ({exc}).") from exc
    text = out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out or "")
    return int(code if code is not None else -1), text


def _space_error(text: str, container: str) -> RunError | None:
    lowered = text.lower()
    if "no space left" in lowered:
        return RunError(
            f"The workspace of {container} is full; free some space there and submit again."
        )
    if "read-only file system" in lowered:
        return RunError(
            f"The workspace of {container} is read-only; remount it writable and submit again."
        )
    if "permission denied" in lowered:
        return RunError(
            f"No permission to write in the workspace of {container}; fix its owner and submit"
            " again."
        )
    return None


_PYTHON_PROBE = (
    "for p in gpudesk-python python3 python; do "
    'command -v "$p" >/dev/null 2>&1 && { command -v "$p"; exit 0; }; done; exit 127'
)


def submit(service: Any, container_name: str, spec: RunSpec, *, now: datetime | None = None) -> Run:
    """Start a run detached in a running gpudesk container; on error nothing is left behind."""
    if spec.nproc < 1 or spec.nproc > 64:
        raise RunError(f"{spec.nproc} is not a number of processes; use 1 to 64.")
    script = spec.script.strip()
    bundled = script.removesuffix(".py") in BUNDLED_SCRIPTS and "/" not in script
    if not bundled and not PurePosixPath(script).is_absolute():
        raise RunError(
            f"Unknown script {script!r}: use one of {', '.join(BUNDLED_SCRIPTS)} or an absolute"
            " path inside the container."
        )
    name = validate_run_name(spec.name or default_run_name(script, now))
    client = service.docker()
    container = _container(client, container_name)
    labels = _labels(container)
    if label("flavour") not in labels:
        raise RunError(f"{container_name} is not a gpudesk container; launch one with gpudesk.")
    if container.status != "running":
        raise RunError(f"Container {container_name} is {container.status}; start it first.")
    user = labels.get(label("user"), "")

    code, out = _exec(container, ["sh", "-c", _PYTHON_PROBE], user)
    if code != 0 or not out.strip():
        raise RunError(f"There is no python in {container_name}; use a PyTorch image.")
    python = out.strip().splitlines()[-1]

    if bundled:
        files = bundled_files()
        scripts_dir = f"{SCRIPTS_DIR}/{scripts_hash(files)}"
        script_path = f"{scripts_dir}/{script.removesuffix('.py')}.py"
        _upload_scripts(container, scripts_dir, files, user)
    else:
        script_path = script
        code, _ = _exec(container, ["test", "-f", script_path], user)
        if code != 0:
            raise RunError(f"There is no file {script_path} in {container_name}; check the path.")

    run_dir = f"{RUNS_DIR}/{name}"
    # mkdir without -p is the lock on the name: of two submissions only one creates it.
    code, out = _exec(
        container, ["sh", "-c", 'mkdir -p "$1" && mkdir "$2"', "sh", RUNS_DIR, run_dir], user
    )
    if code != 0:
        problem = _space_error(out, container_name)
        if problem is not None:
            raise problem
        if "exists" in out.lower():
            raise RunError(
                f"A run named {name} already exists in {container_name}; pick another name."
            )
        raise RunError(f"Could not create {run_dir} in {container_name}: {out.strip()[:200]}.")
    try:
        argv = run_command(python, script_path, run_dir, spec)
        env = {"GPUDESK_RUN": name, "PYTHONUNBUFFERED": "1"}
        record: dict[str, Any] = {
            "id": f"{name}-{int(time.time() * 1000):x}",
            "name": name,
            "host": service.host.name,
            "container": container_name,
            "script": script,
            "script_path": script_path,
            "command": argv,
            "args": list(spec.args),
            "nproc": spec.nproc,
            "env": env,
            "started": time.time(),
            "pid": None,
            "gpudesk_version": __version__,
        }
        _write_json(container, run_dir, record, user)
        code, out = _exec(container, launch_argv(run_dir, wrapper_script(argv, env)), user)
        if code != 0:
            raise RunError(f"Could not start {name}: {out.strip()[:200] or f'exit {code}'}.")
        pid = _wait_pid(container, run_dir, user)
        record["pid"] = pid
        _write_json(container, run_dir, record, user)
    except BaseException as exc:
        _exec_quiet(container, ["rm", "-rf", "--", run_dir], user)
        if isinstance(exc, RunError):
            problem = _space_error(str(exc), container_name)
            if problem is not None:
                raise problem from exc
        raise
    return get_run(service, name, container=container_name)


def _exec_quiet(container: Any, argv: list[str], user: str) -> None:
    with contextlib.suppress(*_ENGINE_ERRORS):
        container.exec_run(argv, user=user)


def _wait_pid(container: Any, run_dir: str, user: str) -> int:
    deadline = time.monotonic() + PID_WAIT
    delay = 0.05
    while True:
        code, out = _exec(container, ["cat", f"{run_dir}/pid"], user)
        if code == 0 and out.strip().isdigit():
            return int(out.strip())
        if time.monotonic() > deadline:
            raise RunError(f"The run in {run_dir} did not start within {PID_WAIT:.0f} s.")
        time.sleep(delay)  # polling a file in the container; there is no event to wait on
        delay = min(delay * 2, 0.5)


def _write_json(container: Any, run_dir: str, record: dict[str, Any], user: str) -> None:
    data = (json.dumps(record, indent=2) + "\n").encode()
    # printf through argv, not put_archive, so the file belongs to the container user.
    code, out = _exec(
        container,
        [
            "sh",
            "-c",
            'printf "%s" "$1" > "$2.tmp" && mv "$2.tmp" "$2"',
            "sh",
            data.decode(),
            f"{run_dir}/run.json",
        ],
        user,
    )
    if code != 0:
        problem = _space_error(out, container.name)
        raise problem or RunError(f"Could not write {run_dir}/run.json: {out.strip()[:200]}.")


def _upload_scripts(container: Any, scripts_dir: str, files: dict[str, bytes], user: str) -> None:
    code, _ = _exec(container, ["test", "-f", f"{scripts_dir}/{_COMPLETE}"], user)
    if code == 0:
        return
    code, out = _exec(container, ["mkdir", "-p", scripts_dir], user)
    if code != 0:
        problem = _space_error(out, container.name)
        raise problem or RunError(f"Could not create {scripts_dir}: {out.strip()[:200]}.")
    # The marker comes last in the archive, so a torn upload is redone next time.
    payload = _tarball({**files, _COMPLETE: b""})
    try:
        ok = container.put_archive(scripts_dir, payload)
    except docker.errors.APIError as exc:
        text = str(getattr(exc, "explanation", None) or exc)
        problem = _space_error(text, container.name)
        raise problem or RunError(f"Could not upload the scripts: {text[:200]}.") from exc
    except _ENGINE_ERRORS as exc:
        raise RunError(f"Could not upload the scripts to {container.name} ({exc}).") from exc
    if not ok:
        raise RunError(f"Docker refused to upload the scripts into {container.name}.")


# ------------------------------------------------------------------------- discovery

# Runs on the GPU host with `python3 -`: reads every run folder of the given workspaces.
_HOST_READER = r"""
import json, os, sys
spec = json.loads(sys.argv[1])
def tail(path, limit):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return None
    if size > limit:
        data = data.split(b'\n', 1)[-1]
    return data.decode('utf-8', 'replace')
def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None
out = []
for ws in spec['workspaces']:
    root = os.path.join(os.path.expanduser(ws), 'runs')
    try:
        names = sorted(os.listdir(root))
    except OSError:
        continue
    for name in names:
        d = os.path.join(root, name)
        meta = read(os.path.join(d, 'run.json'))
        if meta is None:
            continue
        detail = name in spec.get('detail', [])
        ec = os.path.join(d, 'exit_code')
        item = {'workspace': ws, 'dir': d, 'name': name, 'run': meta,
                'pid': read(os.path.join(d, 'pid')), 'exit_code': read(ec),
                'stopped': os.path.exists(os.path.join(d, 'stopped')),
                'metrics': tail(os.path.join(d, 'metrics.jsonl'), spec['detail_bytes'] if detail else spec['tail_bytes'])}
        try:
            item['ended'] = os.stat(ec).st_mtime
        except OSError:
            item['ended'] = None
        if detail:
            log = tail(os.path.join(d, 'train.log'), 65536) or ''
            item['log'] = log.splitlines()[-spec['log_lines']:]
        out.append(item)
sys.stdout.write(json.dumps({'now': __import__('time').time(), 'runs': out}))
"""

# Runs in a container: for each pid (a process group leader), prints it if the group lives.
_ALIVE_CHECK = 'for p in "$@"; do kill -0 "-$p" 2>/dev/null && echo "$p"; done; true'


@dataclass(frozen=True)
class _Workspace:
    container: str
    path: str
    running: bool
    user: str


def _workspaces(client: Any) -> list[_Workspace]:
    try:
        found = client.containers.list(
            all=True, filters={"label": label("flavour")}, ignore_removed=True
        )
    except _ENGINE_ERRORS as exc:
        raise RunError(f"Could not list containers ({exc}); check the host's Docker.") from exc
    result = []
    for c in found:
        labels = _labels(c)
        path = labels.get(label("workspace"), "")
        if not path:
            for mount in c.attrs.get("Mounts") or []:
                if mount.get("Destination") == WORKSPACE:
                    path = str(mount.get("Source") or "")
        if path:
            state = (c.attrs.get("State") or {}).get("Status") or c.status
            result.append(
                _Workspace(c.name, path, state == "running", labels.get(label("user"), ""))
            )
    return result


def read_run_folders(
    service: Any, workspaces: Sequence[str], detail: Sequence[str] = ()
) -> dict[str, Any]:
    """The raw contents of every run folder in ``workspaces``, read on the GPU host."""
    spec = {
        "workspaces": list(workspaces),
        "detail": list(detail),
        "tail_bytes": LIST_TAIL_BYTES,
        "detail_bytes": DETAIL_TAIL_BYTES,
        "log_lines": DETAIL_LOG_LINES,
    }
    cmd = shell.command(["python3", "-", json.dumps(spec)])
    result = service.conn.exec(cmd, input=_HOST_READER.encode(), timeout=60.0)
    if not result.ok:
        raise RunError(
            f"Could not read the run folders on {service.host.name}: "
            f"{result.error_text()[-200:] or 'exit ' + str(result.exit_code)}; is python3 there?"
        )
    try:
        parsed: dict[str, Any] = json.loads(result.text())
    except ValueError as exc:
        raise RunError(f"The run folders on {service.host.name} could not be read.") from exc
    return parsed


def build_run(
    item: dict[str, Any],
    host: str,
    *,
    container_running: dict[str, bool],
    alive: dict[str, set[int]],
    now: float,
) -> Run:
    """A :class:`Run` from the raw folder contents the host reader returned."""
    try:
        record = json.loads(item.get("run") or "{}")
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    container = str(record.get("container") or "")
    pid_text = (item.get("pid") or "").strip()
    pid = int(pid_text) if pid_text.isdigit() else None
    if pid is None and isinstance(record.get("pid"), int):
        pid = record["pid"]
    code_text = (item.get("exit_code") or "").strip()
    exit_code = int(code_text) if re.fullmatch(r"-?\d+", code_text) else None
    running = container_running.get(container, False)
    is_alive = (pid in alive.get(container, set())) if running and pid is not None else None
    state = derive_state(
        exit_code=exit_code,
        stopped=bool(item.get("stopped")),
        alive=is_alive,
        container_running=running,
        has_pid=pid is not None,
    )
    metrics = parse_metrics((item.get("metrics") or "").splitlines())
    started = _number(record.get("started"))
    ended = _number(item.get("ended"))
    if state.finished and ended is None:
        ended = metrics.last_ts
    name = str(record.get("name") or item.get("name") or "")
    return Run(
        name=name,
        host=host,
        container=container,
        script=str(record.get("script") or ""),
        state=state,
        exit_code=exit_code,
        started=started,
        ended=ended,
        command=[str(a) for a in record.get("command") or []],
        args=[str(a) for a in record.get("args") or []],
        nproc=int(record.get("nproc") or 1),
        pid=pid,
        dir=str(item.get("dir") or ""),
        container_dir=f"{RUNS_DIR}/{name}",
        metrics=metrics,
        record=record,
        log_tail=[str(line) for line in item.get("log") or []],
        now=now,
    )


def list_runs(service: Any, detail: Sequence[str] = ()) -> list[Run]:
    """Every run in every gpudesk container's workspace on this host, newest first.

    Runs named in ``detail`` come with their whole metrics series and last log lines.
    """
    client = service.docker()
    spaces = _workspaces(client)
    if not spaces:
        return []
    paths = sorted({w.path for w in spaces})
    raw = read_run_folders(service, paths, detail)
    now = float(raw.get("now") or time.time())
    items: list[dict[str, Any]] = list(raw.get("runs") or [])
    running = {w.container: w.running for w in spaces}
    users = {w.container: w.user for w in spaces}
    # Only runs without an exit code in running containers need a look at their processes.
    pending: dict[str, list[int]] = {}
    for item in items:
        if (item.get("exit_code") or "").strip():
            continue
        try:
            container = str(json.loads(item.get("run") or "{}").get("container") or "")
        except (ValueError, AttributeError):
            continue
        pid_text = (item.get("pid") or "").strip()
        if running.get(container) and pid_text.isdigit():
            pending.setdefault(container, []).append(int(pid_text))
    alive: dict[str, set[int]] = {}
    for container_name, pids in pending.items():
        alive[container_name] = _alive_pids(
            client, container_name, pids, users.get(container_name, "")
        )
    vanished = {
        (c, pid) for c, pids in pending.items() for pid in pids if pid not in alive.get(c, set())
    }
    if vanished:
        # An exit code may have landed between reading the folders and checking the processes.
        again = {i["dir"]: i for i in read_run_folders(service, paths, detail).get("runs") or []}
        items = [again.get(i["dir"], i) for i in items]
    runs = [
        build_run(item, service.host.name, container_running=running, alive=alive, now=now)
        for item in items
    ]
    runs.sort(key=lambda r: r.started or 0.0, reverse=True)
    return runs


def _alive_pids(client: Any, container_name: str, pids: list[int], user: str) -> set[int]:
    try:
        container = client.containers.get(container_name)
        _code, out = container.exec_run(
            ["sh", "-c", _ALIVE_CHECK, "sh", *[str(p) for p in pids]], user=user
        )
    except _ENGINE_ERRORS:
        # Unknown is better than a false "lost": keep them as alive until the next poll.
        return set(pids)
    text = out.decode("utf-8", "replace") if isinstance(out, bytes) else ""
    return {int(x) for x in text.split() if x.isdigit()}


def get_run(service: Any, name: str, container: str | None = None, detail: bool = True) -> Run:
    runs = [
        r
        for r in list_runs(service, detail=[name] if detail else ())
        if r.name == name and (container is None or r.container == container)
    ]
    if not runs:
        raise RunError(f"There is no run named {name} on {service.host.name}; see `gpudesk runs`.")
    if len(runs) > 1:
        raise RunError(
            f"Several containers on {service.host.name} have a run named {name}; say which with"
            " --container."
        )
    return runs[0]


# ------------------------------------------------------------------------- stop / rerun

_STOP_SCRIPT = r"""
d=$1; grace=$2
[ -f "$d/exit_code" ] && { echo finished; exit 0; }
pg=$(cat "$d/pid" 2>/dev/null) || { echo nopid; exit 0; }
date +%s > "$d/stopped"
kill -TERM "-$pg" 2>/dev/null || { echo gone; exit 0; }
end=$(( $(date +%s) + grace ))
while kill -0 "-$pg" 2>/dev/null; do
  if [ "$(date +%s)" -ge "$end" ]; then kill -KILL "-$pg" 2>/dev/null; echo killed; exit 0; fi
  sleep 0.2
done
echo terminated
"""


@dataclass(frozen=True)
class StopResult:
    run: str
    outcome: str  # terminated | killed | finished | gone
    message: str


def stop_run(service: Any, run: Run | str, grace: float = 10.0) -> StopResult:
    """SIGTERM the run's process group (the scripts checkpoint), SIGKILL after ``grace`` s."""
    target = run if isinstance(run, Run) else get_run(service, run, detail=False)
    if target.state.finished:
        raise RunError(f"Run {target.name} already ended ({target.state_text}); nothing to stop.")
    client = service.docker()
    container = _container(client, target.container)
    if container.status != "running":
        raise RunError(
            f"Container {target.container} is not running, so {target.name} is not either."
        )
    user = _labels(container).get(label("user"), "")
    seconds = max(0, math.ceil(grace))
    code, out = _exec(
        container, ["sh", "-c", _STOP_SCRIPT, "sh", target.container_dir, str(seconds)], user
    )
    outcome = (out.strip().splitlines() or ["?"])[-1]
    if code != 0:
        raise RunError(f"Could not stop {target.name}: {out.strip()[:200]}.")
    messages = {
        "terminated": f"Stopped {target.name} (SIGTERM; it saved a checkpoint if it could).",
        "killed": f"Killed {target.name}: it did not end within {seconds} s of SIGTERM.",
        "finished": f"{target.name} had already ended.",
        "gone": f"{target.name} had no processes left; marked stopped.",
        "nopid": f"{target.name} has not started yet; try again in a moment.",
    }
    return StopResult(
        target.name, outcome, messages.get(outcome, f"Stopping {target.name}: {outcome}.")
    )


def rerun(service: Any, run: Run, name: str | None = None) -> Run:
    """Submit ``run`` again in the same container with the same script, arguments and nproc."""
    spec = RunSpec(
        script=run.script or run.record.get("script_path", ""),
        args=tuple(run.args),
        nproc=run.nproc,
        name=name,
    )
    return submit(service, run.container, spec)


def find_runs(runs: Iterable[Run], name: str) -> list[Run]:
    return [r for r in runs if r.name == name]
