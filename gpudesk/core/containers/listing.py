"""Listing a remote host's containers with the ``docker`` CLI over the host's connection.

The Docker SDK costs a quarter of a second to import and one HTTP round trip over a
``dial-stdio`` channel per container; ``docker ps`` plus one ``docker inspect`` of every id
give the same inspect documents (what the SDK's ``containers.list`` reads) in one or two
commands, which is what a one-shot ``gpudesk ps`` should cost.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gpudesk.core import shell
from gpudesk.core.containers.model import (
    ContainerError,
    ContainerInfo,
    info_from_attrs,
    list_order,
)
from gpudesk.core.flavours import label

if TYPE_CHECKING:
    from gpudesk.core.service import CommandShell

LIST_TIMEOUT_S = 60.0


def _failure(where: str, exit_code: int, stderr: str) -> ContainerError:
    """One sentence for what a failed ``docker`` command on ``where`` said."""
    lowered = stderr.lower()
    if exit_code == 127 or "command not found" in lowered or "docker: not found" in lowered:
        return ContainerError(
            f"The docker CLI is missing on {where}; install Docker there (docker.io or docker-ce)."
        )
    if "permission denied" in lowered:
        return ContainerError(
            f"No permission to use the Docker engine on {where}; add the user to the 'docker' "
            "group (then log in again)."
        )
    if "cannot connect to the docker daemon" in lowered or "no such file" in lowered:
        return ContainerError(
            f"The Docker engine on {where} is not reachable; start dockerd "
            "(`sudo systemctl start docker`) or set DOCKER_HOST."
        )
    first = stderr.strip().splitlines()[0][:200] if stderr.strip() else f"exit {exit_code}"
    return ContainerError(f"Docker could not list containers on {where}: {first}.")


def list_over_shell(
    conn: CommandShell, where: str, all_containers: bool = False
) -> list[ContainerInfo]:
    """gpudesk's containers on the host behind ``conn`` (every container with
    ``all_containers``), in the order :meth:`ContainerEngine.list` gives."""
    argv = ["docker", "ps", "--all", "--quiet", "--no-trunc"]
    if not all_containers:
        argv += ["--filter", f"label={label('flavour')}"]
    listed = conn.exec(shell.command(argv), timeout=LIST_TIMEOUT_S)
    if not listed.ok:
        raise _failure(where, listed.exit_code, listed.error_text())
    ids = listed.text().split()
    if not ids:
        return []
    inspected = conn.exec(
        shell.command(["docker", "inspect", "--type", "container", "--", *ids]),
        timeout=LIST_TIMEOUT_S,
    )
    documents = _documents(inspected.text())
    # A container removed between the two commands is left out, as the SDK's
    # ignore_removed=True does; any other failure is the user's to see.
    stderr = inspected.error_text()
    gone_only = all("no such" in line.lower() for line in stderr.splitlines() if line.strip())
    if documents is None or (not inspected.ok and not gone_only):
        raise _failure(where, inspected.exit_code, stderr or "its output was not JSON")
    now = datetime.now(UTC)
    infos = [info_from_attrs(attrs, now) for attrs in documents]
    return sorted(infos, key=list_order)


def _documents(text: str) -> list[dict[str, Any]] | None:
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(d, dict) for d in parsed):
        return None
    return parsed
