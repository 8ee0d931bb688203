"""Submitting a run: upload the bundled scripts, create the run folder, start it detached."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import json
import posixpath
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from gpudesk import __version__
from gpudesk.core import shell
from gpudesk.core.archive import tar_bytes
from gpudesk.core.errors import disk_full, engine_errors
from gpudesk.core.flavours import label
from gpudesk.core.runs.container import container_labels, exec_in, get_container
from gpudesk.core.runs.discovery import get_run
from gpudesk.core.runs.model import (
    BUNDLED_SCRIPTS,
    PID_WAIT,
    RUNS_DIR,
    SCRIPTS_DIR,
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


def run_command(python: str, script_path: str, out_dir: str, spec: RunSpec) -> list[str]:
    """The argv of the training process; torchrun (as a module) for more than one process."""
    launcher = [python]
    if spec.nproc > 1:
        # torchrun via the bundled ddp_launch.py, which leaves SIGTERM to the ranks so a
        # stopped run checkpoints and exits 0 (plain torchrun exits 1 with a traceback)
        launch = posixpath.join(posixpath.dirname(script_path), "ddp_launch.py")
        launcher += [launch, "--standalone", "--nproc_per_node"]
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
    service: Service, container_name: str, spec: RunSpec, *, now: datetime | None = None
) -> Run:
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
    # mkdir without -p is the lock on the name: of two submissions only one creates it.
    code, out = exec_in(
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
        code, out = exec_in(container, launch_argv(run_dir, wrapper_script(argv, env)), user)
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
    with contextlib.suppress(*engine_errors()):
        container.exec_run(argv, user=user)


def _wait_pid(container: Any, run_dir: str, user: str) -> int:
    deadline = time.monotonic() + PID_WAIT
    delay = 0.05
    while True:
        code, out = exec_in(container, ["cat", f"{run_dir}/pid"], user)
        if code == 0 and out.strip().isdigit():
            return int(out.strip())
        if time.monotonic() > deadline:
            raise RunError(f"The run in {run_dir} did not start within {PID_WAIT:.0f} s.")
        time.sleep(delay)  # polling a file in the container; there is no event to wait on
        delay = min(delay * 2, 0.5)


def _write_json(container: Any, run_dir: str, record: dict[str, Any], user: str) -> None:
    data = (json.dumps(record, indent=2) + "\n").encode()
    # printf through argv, not put_archive, so the file belongs to the container user.
    code, out = exec_in(
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
    code, out = exec_in(container, ["mkdir", "-p", scripts_dir], user)
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
