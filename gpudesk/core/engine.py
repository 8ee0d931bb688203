"""Docker engines: the local socket, or a remote engine reached through the host's SSH connection.

A remote engine is spoken to with the Docker SDK over ``docker system dial-stdio`` exec
channels of the host's one :class:`SshConnection`; no second SSH connection is opened, the
pool is kept small so the host's sshd ``MaxSessions`` is never exhausted, and long streams
(events, logs) run without the SDK's 60 s socket timeout.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpudesk.core.config import DEFAULT_DOCKER_SOCKET
from gpudesk.core.connection import SshError
from gpudesk.core.errors import GpudeskError

if TYPE_CHECKING:
    import docker
    import docker.errors
    import requests

    from gpudesk.core.ssh import SshConnection
else:
    from gpudesk.core.lazy import lazy_module

    docker = lazy_module("docker")
    requests = lazy_module("requests")

# Docker 20.10 speaks 1.41; newer engines accept older clients.
API_VERSION = "1.41"


class EngineError(GpudeskError):
    """The Docker engine could not be reached or refused a request; one sentence for the user."""


@dataclass(frozen=True)
class EngineInfo:
    version: str
    api_version: str
    os: str
    runtimes: tuple[str, ...]
    gpu_runtime: bool


def ssh_client(conn: SshConnection, timeout: float = 60.0) -> docker.DockerClient:
    """A Docker SDK client whose every request rides on ``conn``."""
    from gpudesk.core.dialstdio import SshAdapter

    client = docker.DockerClient(
        base_url="tcp://127.0.0.1:2375", version=API_VERSION, timeout=timeout
    )
    api = client.api
    # docker-py finds the raw stream of attach/exec responses by this prefix (ChannelFile.channel).
    api.mount("http+docker://ssh", SshAdapter(conn, timeout))
    api.base_url = "http+docker://ssh"
    return client


def local_socket() -> str:
    return os.environ.get("DOCKER_HOST") or f"unix://{DEFAULT_DOCKER_SOCKET}"


def local_client(timeout: float = 60.0) -> docker.DockerClient:
    return docker.DockerClient(base_url=local_socket(), version=API_VERSION, timeout=timeout)


def describe_failure(exc: BaseException, where: str) -> str:
    """Turn whatever the SDK raised into one sentence that says what to do."""
    text = str(exc)
    if isinstance(exc, SshError):
        return str(exc)
    if "dial-stdio" in text or "command not found" in text or "exit status 127" in text:
        return (
            f"The docker CLI is missing on {where}; install Docker there (docker.io or docker-ce)."
        )
    if isinstance(exc, docker.errors.APIError):
        return f"The Docker engine on {where} refused the request: {exc.explanation or text}."
    if "Permission denied" in text or "PermissionError" in text:
        return (
            f"No permission to use the Docker engine on {where}; add the user to the "
            "'docker' group (then log in again)."
        )
    if isinstance(
        exc, requests.exceptions.ConnectionError | docker.errors.DockerException | OSError
    ):
        return (
            f"The Docker engine on {where} is not reachable ({text.splitlines()[0][:160]}); "
            "start dockerd (`sudo systemctl start docker`) or set DOCKER_HOST."
        )
    return (
        f"Docker on {where} failed: {text.splitlines()[0][:200] if text else type(exc).__name__}."
    )


def engine_info(client: docker.DockerClient, where: str) -> EngineInfo:
    try:
        version = client.api.version(api_version=False)
        info = client.info()
    except Exception as exc:
        raise EngineError(describe_failure(exc, where)) from exc
    runtimes = tuple(sorted((info.get("Runtimes") or {}).keys()))
    return EngineInfo(
        version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        os=str(info.get("OperatingSystem", "?")),
        runtimes=runtimes,
        gpu_runtime="nvidia" in runtimes,
    )
