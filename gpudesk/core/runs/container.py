"""The Docker calls runs make on a container, each failure turned into a RunError."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gpudesk.core.errors import engine_errors
from gpudesk.core.runs.model import RunError

if TYPE_CHECKING:
    import docker
    import docker.errors
else:
    from gpudesk.core.lazy import lazy_module

    docker = lazy_module("docker")


def get_container(client: Any, name: str) -> Any:
    try:
        return client.containers.get(name)
    except docker.errors.NotFound as exc:
        raise RunError(f"There is no container named {name} on this host; check the name.") from exc
    except engine_errors() as exc:
        raise RunError(f"Could not reach Docker to find {name} ({exc}); check the host.") from exc


def container_labels(container: Any) -> dict[str, str]:
    return dict((container.attrs.get("Config") or {}).get("Labels") or {})


def exec_in(container: Any, argv: list[str], user: str = "") -> tuple[int, str]:
    try:
        code, out = container.exec_run(argv, user=user, demux=False)
    except engine_errors() as exc:
        raise RunError(f"Could not run a command in {container.name} ({exc}).") from exc
    text = out.decode("utf-8", "replace") if isinstance(out, bytes) else str(out or "")
    return int(code if code is not None else -1), text
