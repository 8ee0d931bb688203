"""Finding runs: every run folder of a host's gpudesk containers, read on the host in one go.

Nothing about a run lives only in gpudesk's memory: :func:`list_runs` rebuilds every run from
its folder, read on the host by the payload's ``run_reader.py`` (so stopped containers' runs
are listed too), plus one ``docker exec`` per running container to see which processes are
still alive.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gpudesk.core import shell
from gpudesk.core.containers.model import workspace_from_mounts
from gpudesk.core.errors import engine_errors
from gpudesk.core.flavours import label
from gpudesk.core.runs.container import container_labels
from gpudesk.core.runs.model import (
    DETAIL_LOG_LINES,
    DETAIL_TAIL_BYTES,
    LIST_TAIL_BYTES,
    RUNS_DIR,
    Run,
    RunError,
    derive_state,
    number,
    parse_metrics,
)
from gpudesk.core.service import Service


def reader_source() -> bytes:
    """The host-side run reader, piped into ``python3 -`` on the GPU host."""
    return importlib.resources.files("gpudesk.payload").joinpath("run_reader.py").read_bytes()


# The host-side reader ends itself after this many seconds (a read stuck on a hung disk cannot
# leave a process behind); the operator waits a little longer for its answer.
READER_DEADLINE_S = 20
READER_WAIT_S = READER_DEADLINE_S + 15


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
    except engine_errors() as exc:
        raise RunError(f"Could not list containers ({exc}); check the host's Docker.") from exc
    result = []
    for c in found:
        labels = container_labels(c)
        path = labels.get(label("workspace"), "")
        path = path or workspace_from_mounts(c.attrs)
        if path:
            state = (c.attrs.get("State") or {}).get("Status") or c.status
            result.append(
                _Workspace(c.name, path, state == "running", labels.get(label("user"), ""))
            )
    return result


def read_run_folders(
    service: Service, workspaces: Sequence[str], detail: Sequence[str] = ()
) -> dict[str, Any]:
    """The raw contents of every run folder in ``workspaces``, read on the GPU host."""
    spec = {
        "workspaces": list(workspaces),
        "detail": list(detail),
        "tail_bytes": LIST_TAIL_BYTES,
        "detail_bytes": DETAIL_TAIL_BYTES,
        "log_lines": DETAIL_LOG_LINES,
        "deadline": READER_DEADLINE_S,
    }
    cmd = shell.command(["python3", "-", json.dumps(spec)])
    result = service.conn.exec(cmd, input=reader_source(), timeout=READER_WAIT_S)
    if result.exit_code < 0:
        # No exit status at all: the channel closed under the reader (sshd or the network
        # went away), which says nothing about python3.
        raise RunError(
            f"Lost the connection to {service.host.name} while reading its run folders;"
            " check the host and try again."
        )
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
    started = number(record.get("started"))
    state = derive_state(
        exit_code=exit_code,
        stopped=bool(item.get("stopped")),
        alive=is_alive,
        container_running=running,
        has_pid=pid is not None,
        waited=None if started is None else now - started,
    )
    metrics = parse_metrics((item.get("metrics") or "").splitlines())
    ended = number(item.get("ended"))
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


def list_runs(service: Service, detail: Sequence[str] = ()) -> list[Run]:
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
    except engine_errors():
        # Unknown is better than a false "lost": keep them as alive until the next poll.
        return set(pids)
    text = out.decode("utf-8", "replace") if isinstance(out, bytes) else ""
    return {int(x) for x in text.split() if x.isdigit()}


def runs_named(runs: Iterable[Run], name: str, container: str | None = None) -> list[Run]:
    """The runs called ``name`` (in ``container`` when given): the one way runs are found by name."""
    return [r for r in runs if r.name == name and (container is None or r.container == container)]


def get_run(service: Service, name: str, container: str | None = None, detail: bool = True) -> Run:
    runs = runs_named(list_runs(service, detail=[name] if detail else ()), name, container)
    if not runs:
        raise RunError(f"There is no run named {name} on {service.host.name}; see `gpudesk runs`.")
    if len(runs) > 1:
        raise RunError(
            f"Several containers on {service.host.name} have a run named {name}; say which with"
            " --container."
        )
    return runs[0]
