"""Submitting a run: upload the bundled scripts, create the run folder, start it detached."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from gpudesk import __version__
from gpudesk.core import shell
from gpudesk.core.archive import tar_bytes
from gpudesk.core.containers.model import WORKSPACE
from gpudesk.core.errors import disk_full, engine_errors
from gpudesk.core.flavours import label
from gpudesk.core.runs.container import container_labels, exec_in, get_container
from gpudesk.core.runs.discovery import get_run
from gpudesk.core.runs.model import (
    BUNDLED_SCRIPTS,
    PID_WAIT,
    RUNS_DIR,
    SCRIPTS_DIR,
    NodeLaunch,
    Run,
    RunError,
    RunSpec,
    default_run_name,
    script_label,
    validate_run_name,
)
from gpudesk.core.service import Service

if TYPE_CHECKING:
    import docker
    import docker.errors
else:
    from gpudesk.core.lazy import lazy_module

    docker = lazy_module("docker")

_COMPLETE = ".complete"
STAGING_DIR = f"{WORKSPACE}/.gpudesk/starting"

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


# ------------------------------------------------------------------------- commands


def run_command(
    python: str, script_path: str, out_dir: str, spec: RunSpec, node: NodeLaunch | None = None
) -> list[str]:
    """The argv of the training process; torchrun (as a module) for more than one process,
    joining a c10d rendezvous for one node of a multi-node run."""
    launcher = [python]
    if spec.nproc > 1 or node is not None:
        # torchrun via the bundled ddp_launch.py, which leaves SIGTERM to the ranks so a
        # stopped run checkpoints and exits 0 (plain torchrun exits 1 with a traceback)
        launch = posixpath.join(posixpath.dirname(script_path), "ddp_launch.py")
        rendezvous = ["--standalone"] if node is None else node.torchrun_args()
        launcher += [launch, *rendezvous, "--nproc_per_node"]
        launcher.append(str(spec.nproc))
    return [*launcher, script_path, "--out", out_dir, *spec.args]


# The detached wrapper: records its pid (= process group, thanks to setsid), runs the job and
# records the exit code atomically. The TERM trap keeps this shell alive while the job handles
# SIGTERM (it checkpoints), so the exit code is still written.
# A `stopped` marker already there (stop-run before the pid existed) means it must not start.
_WRAPPER = (
    "echo $$ > pid; [ -e stopped ] && exit 0; trap 'true' TERM INT; {cmd}; code=$?; "
    "echo $code > exit_code.tmp; mv exit_code.tmp exit_code"
)


def wrapper_script(argv: Sequence[str], env: dict[str, str]) -> str:
    return _WRAPPER.format(cmd=shell.command(argv, env=env))


def _space_error(text: str, container: str) -> RunError | None:
    lowered = text.lower()
    if disk_full(text):
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


def submit(
    service: Service,
    container_name: str,
    spec: RunSpec,
    *,
    now: datetime | None = None,
    progress: SubmitProgress | None = None,
    node: NodeLaunch | None = None,
) -> Run:
    """Start a run detached in a running gpudesk container.

    A refused submit leaves nothing behind; an interrupted one leaves either nothing or a run
    with its run.json (``progress`` says how far it got).
    """
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
    container = get_container(client, container_name)
    labels = container_labels(container)
    if label("flavour") not in labels:
        raise RunError(f"{container_name} is not a gpudesk container; launch one with gpudesk.")
    if container.status != "running":
        raise RunError(f"Container {container_name} is {container.status}; start it first.")
    user = labels.get(label("user"), "")

    code, out = exec_in(container, ["sh", "-c", _PYTHON_PROBE], user)
    if code != 0 or not out.strip():
        raise RunError(f"There is no python in {container_name}; use a PyTorch image.")
    python = out.strip().splitlines()[-1]

    if bundled:
        files = bundled_files()
        scripts_dir = f"{SCRIPTS_DIR}/{scripts_hash(files)}"
        script_path = f"{scripts_dir}/{script.removesuffix('.py')}.py"
        _upload_scripts(container, scripts_dir, files, user)
        check_script_args(container, python, script_path, spec, user)
    else:
        script_path = script
        code, _ = exec_in(container, ["test", "-f", script_path], user)
        if code != 0:
            raise RunError(f"There is no file {script_path} in {container_name}; check the path.")

    run_dir = f"{RUNS_DIR}/{name}"
    argv = run_command(python, script_path, run_dir, spec, node)
    env = {
        **dict(spec.env),
        "GPUDESK_RUN": name,
        "PYTHONUNBUFFERED": "1",
        **(node.env if node else {}),
    }
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
        "pid": None,  # the run folder's pid file is the truth; see discovery
        "gpudesk_version": __version__,
    }
    if node is not None:  # one node of a multi-node run: the same id on every node
        record.update(node.record, id=node.rdzv_id, node_rank=node.node_rank)
    if progress is not None:
        progress.run = name
        progress.stage = SubmitStage.STARTING
    # One exec does all that the container keeps: the run exists with its run.json and its
    # process, or not at all (see _START). No cleanup after this point: whatever an
    # interruption leaves is a run that `gpudesk runs` lists and `stop-run` can end.
    code, out = exec_in(
        container,
        ["sh", "-c", START_SCRIPT, "sh", RUNS_DIR, STAGING_DIR, name, _json_text(record),
         wrapper_script(argv, env)],
        user,
    )  # fmt: skip
    if code != 0:
        if progress is not None:
            progress.stage = SubmitStage.REFUSED
        problem = _space_error(out, container_name)
        if problem is not None:
            raise problem
        if code == _EXISTS:
            raise RunError(
                f"A run named {name} already exists in {container_name}; pick another name."
            )
        raise RunError(f"Could not start {name} in {container_name}: {out.strip()[:200]}.")
    _wait_pid(container, run_dir, user)
    if progress is not None:
        progress.stage = SubmitStage.STARTED
    return get_run(service, name, container=container_name)


class SubmitStage(StrEnum):
    """How far a submit got: what an interruption leaves behind."""

    CHECKING = "checking"  # nothing exists yet
    STARTING = "starting"  # the start command was sent: the run may exist
    STARTED = "started"  # the run's process wrote its pid
    REFUSED = "refused"  # the container refused the start; nothing exists


@dataclass
class SubmitProgress:
    """Filled in by :func:`submit` as it goes, for the caller to say what an interrupt left."""

    stage: SubmitStage = SubmitStage.CHECKING
    run: str = ""


# Everything the container keeps of a run, in one shell, as the container user:
# run.json is written into a staging folder beside runs/ (same file system) and renamed onto
# runs/<name> in one rename(2), which fails on a run that exists (the lock on the name) but
# takes over an empty folder an old interrupted submit left. Then the detached wrapper starts.
# umask 027: the run's files are 0640 and its folders 0750, not readable by other accounts.
_EXISTS = 17
START_SCRIPT = r"""
umask 027
runs=$1; staging=$2; name=$3
mkdir -p "$runs" "$staging" || exit 1
find "$staging" -mindepth 1 -maxdepth 1 -mmin +60 -exec rm -rf {} + 2>/dev/null
tmp=$(mktemp -d "$staging/$name.XXXXXX") || exit 1
chmod 0750 "$tmp"
printf '%s' "$4" > "$tmp/run.json" || { rm -rf "$tmp"; exit 1; }
if ! mv -T "$tmp" "$runs/$name" 2>/dev/null; then
  rm -rf "$tmp"
  [ -e "$runs/$name" ] && exit 17
  echo "cannot create $runs/$name"; exit 1
fi
cd "$runs/$name" || exit 1
exec setsid nohup sh -c "$5" > train.log 2>&1 < /dev/null
"""


def _json_text(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2) + "\n"


def _wait_pid(container: Any, run_dir: str, user: str) -> int:
    deadline = time.monotonic() + PID_WAIT
    delay = 0.05
    while True:
        code, out = exec_in(container, ["cat", f"{run_dir}/pid"], user)
        if code == 0 and out.strip().isdigit():
            return int(out.strip())
        if time.monotonic() > deadline:
            name = posixpath.basename(run_dir)
            raise RunError(
                f"Run {name} did not start within {PID_WAIT:.0f} s; see `gpudesk logs {name}`"
                f" and `gpudesk runs` (stop-run {name} clears it)."
            )
        time.sleep(delay)  # polling a file in the container; there is no event to wait on
        delay = min(delay * 2, 0.5)


_OWN_SCRIPTS = '{ [ -z "$2" ] || chown -R "$2": "$1"; } && chmod -R u=rwX,g=rX,o= "$1"'


# A bundled script started with this set only parses its arguments (traincore.main), so submit
# refuses a typo before it makes a run folder, with the script's own parser and Python.
CHECK_ARGS_ENV = "GPUDESK_CHECK_ARGS"


def check_script_args(
    container: Any, python: str, script_path: str, spec: RunSpec, user: str
) -> None:
    code, out = exec_in(
        container, ["env", f"{CHECK_ARGS_ENV}=1", python, script_path, *spec.args], user
    )
    if code == 0:
        return
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    last = lines[-1][:300] if lines else f"exit status {code}"
    label = script_label(spec.script)
    if code != 2:  # not argparse's (nor traincore's bad-input) status: the script cannot start
        raise RunError(f"{label} cannot start in {container.name} ({last}); nothing was started.")
    # argparse ends with "<prog>: error: <what>"; traincore's own checks with "error: <what>".
    reason = last.split("error: ", 1)[-1]
    raise RunError(f"{label} does not accept these arguments ({reason}); nothing was started.")


def _upload_scripts(container: Any, scripts_dir: str, files: dict[str, bytes], user: str) -> None:
    code, _ = exec_in(container, ["test", "-f", f"{scripts_dir}/{_COMPLETE}"], user)
    if code == 0:
        return
    code, out = exec_in(
        container, ["sh", "-c", 'umask 027 && mkdir -p "$1"', "sh", scripts_dir], user
    )
    if code != 0:
        problem = _space_error(out, container.name)
        raise problem or RunError(f"Could not create {scripts_dir}: {out.strip()[:200]}.")
    # The marker comes last in the archive, so a torn upload is redone next time.
    payload = tar_bytes({**files, _COMPLETE: b""}, mtime=int(time.time()))
    try:
        ok = container.put_archive(scripts_dir, payload)
    except docker.errors.APIError as exc:
        text = str(getattr(exc, "explanation", None) or exc)
        problem = _space_error(text, container.name)
        raise problem or RunError(f"Could not upload the scripts: {text[:200]}.") from exc
    except engine_errors() as exc:
        raise RunError(f"Could not upload the scripts to {container.name} ({exc}).") from exc
    if not ok:
        raise RunError(f"Docker refused to upload the scripts into {container.name}.")
    # Docker unpacks an upload as root: hand the scripts to the container user, not readable
    # by other accounts (0750 folders, 0640 files), as the run folders are.
    code, out = exec_in(container, ["sh", "-c", _OWN_SCRIPTS, "sh", scripts_dir, user], "root")
    if code != 0:
        raise RunError(
            f"Could not give the scripts in {container.name} to {user or 'its user'}: "
            f"{out.strip()[:200]}."
        )
