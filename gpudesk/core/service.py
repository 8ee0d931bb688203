"""What runs and logs need of a host: :class:`Service` (a :class:`~gpudesk.core.fleet.HostService`
satisfies it; tests may pass anything that does)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import docker

from gpudesk.core.config import Host
from gpudesk.core.ssh import ExecResult, LineStream


class CommandShell(Protocol):
    """A host's shell for one-shot commands."""

    def exec(
        self, command: str, input: bytes | None = None, timeout: float | None = 60.0
    ) -> ExecResult: ...


class HostShell(CommandShell, Protocol):
    """A host's connection as a shell: one-shot commands and long-lived line streams."""

    def open_lines(
        self, command: str, stdin: bytes = b""
    ) -> AbstractContextManager[LineStream]: ...


class Service(Protocol):
    """One host: its inventory entry, its shell and the Docker client riding on it."""

    @property
    def host(self) -> Host: ...

    @property
    def conn(self) -> HostShell: ...

    def docker(self) -> docker.DockerClient: ...
