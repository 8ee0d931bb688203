"""Killing a GPU process (nvitop's ``k``): who may, and SIGTERM then SIGKILL after a grace.

A process in one of gpudesk's containers is signalled from inside that container (``docker
exec`` as root there, by its pid in the container's namespace), whoever owns it; a process on
the host itself only when the SSH user owns it or is root. Everything else (another tool's
container, another account's process, a simulated sample) is refused with the reason, before
anything is sent.
"""

from __future__ import annotations

import getpass
import math
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

from gpudesk.core import shell
from gpudesk.core.config import Host, HostKind
from gpudesk.core.errors import GpudeskError
from gpudesk.core.gpu.sample import GpuProcess
from gpudesk.core.runs.container import exec_in, get_container
from gpudesk.core.runs.model import RunError
from gpudesk.core.service import Service

DEFAULT_GRACE = 10.0
MAX_GRACE = 600.0

# $1 pid, $2 grace seconds, $3 the command line the GPU sample showed for it. The command is
# compared first so a pid reused since the sample is never signalled; a zombie counts as gone.
_KILL_SCRIPT = r"""
pid=$1; grace=$2; want=$3
alive() {
  [ -r "/proc/$pid/status" ] || return 1
  st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$pid/status")
  [ "$st" != Z ] && [ "$st" != X ]
}
alive || { echo gone; exit 0; }
have=$(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | sed 's/ *$//')
[ -z "$have" ] && have=$(cat "/proc/$pid/comm" 2>/dev/null)
case "$have" in "$want"*) ;; *) echo "other $have"; exit 0;; esac
kill -TERM "$pid" 2>/dev/null || { alive && { echo denied; exit 0; }; echo gone; exit 0; }
end=$(( $(date +%s) + grace ))
while alive; do
  if [ "$(date +%s)" -ge "$end" ]; then
    kill -KILL "$pid" 2>/dev/null || { echo denied; exit 0; }
    echo killed; exit 0
  fi
  sleep 0.2
done
echo terminated
"""


class KillError(GpudeskError):
    """A GPU process could not be signalled; the message says why and what to do."""


class Via(StrEnum):
    CONTAINER = "container"  # docker exec into the gpudesk container, by its namespace pid
    HOST = "host"  # the host's kill, as the SSH user, by the host pid


@dataclass(frozen=True)
class KillPlan:
    """How a process will be signalled: the pid to use where, and what the user is told."""

    host_pid: int
    via: Via
    pid: int  # the pid as seen where the signal is sent
    command: str  # the sample's command line, re-checked before signalling
    container: str | None = None


@dataclass(frozen=True)
class KillResult:
    outcome: str  # terminated | killed | gone | other | denied
    message: str


def ssh_user(host: Host) -> str:
    """The account gpudesk acts as on ``host`` (ssh's default is the local user's name)."""
    if host.kind is HostKind.LOCAL:
        return getpass.getuser()
    return host.user or getpass.getuser()


def plan_kill(
    proc: GpuProcess,
    *,
    host: Host,
    ours: Collection[str],
    simulated: bool = False,
) -> KillPlan | str:
    """The plan for killing ``proc``, or the one-sentence reason gpudesk will not.

    ``ours`` holds the names of gpudesk's containers on the host.
    """
    label = f"pid {proc.pid}"
    if simulated:
        return f"{label} is from a simulated GPU sample; there is no real process to kill."
    command = proc.command or ""
    if not command:
        return (
            f"{label} has no readable command line, so gpudesk cannot check it is the same process."
        )
    if proc.container_id or proc.container_name:
        name = proc.container_name or (proc.container_id or "")[:12]
        if proc.container_name not in ours:
            return (
                f"{label} runs in container {name}, which gpudesk did not create; "
                "stop it with docker on the host."
            )
        if proc.ns_pid is None:
            return (
                f"{label} runs in {name}, but the GPU agent could not read its pid inside the "
                "container; reconnect the host and try again."
            )
        return KillPlan(proc.pid, Via.CONTAINER, proc.ns_pid, command, proc.container_name)
    account = ssh_user(host)
    if account == "root" or (proc.user is not None and proc.user == account):
        return KillPlan(proc.pid, Via.HOST, proc.pid, command)
    return (
        f"{label} belongs to {proc.user or 'an unknown user'} and runs outside gpudesk's "
        f"containers; gpudesk connects to {host.name} as {account} and may not signal it."
    )


def _grace_seconds(grace: float) -> int:
    if not math.isfinite(grace) or grace < 0 or grace > MAX_GRACE:
        raise KillError(f"The grace must be between 0 and {MAX_GRACE:.0f} seconds.")
    return math.ceil(grace)


def kill_process(service: Service, plan: KillPlan, grace: float = DEFAULT_GRACE) -> KillResult:
    """SIGTERM the planned process, then SIGKILL if it still lives after ``grace`` seconds."""
    seconds = _grace_seconds(grace)
    argv = ["sh", "-c", _KILL_SCRIPT, "sh", str(plan.pid), str(seconds), plan.command]
    where = f"in {plan.container}" if plan.container else f"on {service.host.name}"
    if plan.via is Via.CONTAINER:
        assert plan.container is not None
        try:
            container = get_container(service.docker(), plan.container)
            code, out = exec_in(container, argv, user="0")
        except RunError as exc:
            raise KillError(str(exc)) from exc
    else:
        try:
            result = service.conn.exec(shell.command(argv), timeout=seconds + 30.0)
        except (OSError, GpudeskError) as exc:
            raise KillError(
                f"Could not reach {service.host.name} to kill pid {plan.pid} ({exc})."
            ) from exc
        code = result.exit_code
        out = (result.stdout + result.stderr).decode("utf-8", "replace")
    words = (out.strip().splitlines() or ["?"])[-1].split(" ", 1)
    outcome = words[0]
    if code != 0 or outcome not in ("terminated", "killed", "gone", "other", "denied"):
        raise KillError(f"Could not kill pid {plan.host_pid} {where}: {out.strip()[:200]}.")
    label = f"pid {plan.host_pid}" + (f" (pid {plan.pid} {where})" if plan.container else "")
    messages = {
        "terminated": f"{label} ended after SIGTERM.",
        "killed": f"{label} ignored SIGTERM for {seconds} s and was killed (SIGKILL).",
        "gone": f"{label} had already ended.",
        "other": f"{label} is now a different process ({words[-1][:80]}); nothing was sent.",
        "denied": f"{label} {where} may not be signalled by gpudesk's account; nothing was sent.",
    }
    return KillResult(outcome, messages[outcome])
