"""Dev containers on one host, end to end: launch, list, act, reach (ssh config, Jupyter URL).

This joins the pieces the TUI and the CLI both need: :mod:`containers` (the engine),
:mod:`sshconfig` (how ``ssh gpudesk-<name>`` gets there) and the host's connection (workspace
folders, readiness probes through the host's loopback, port forwards).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gpudesk.core import shell, sshconfig
from gpudesk.core.config import Host, HostKind, Inventory, Paths
from gpudesk.core.containers import (
    ContainerError,
    ContainerInfo,
    ContainerNotFoundError,
    Containers,
    LaunchResult,
    LaunchSpec,
    Probe,
    Removed,
    ready_probe,
)
from gpudesk.core.containers.engine import EventStream
from gpudesk.core.containers.listing import list_over_shell
from gpudesk.core.containers.workspace import check_workspace, prepare_workspace
from gpudesk.core.flavours import (
    DEFAULT_BASE_IMAGE,
    SSH_HOST_PREFIX,
    Flavour,
    generate_token,
    image_tag,
    validate_name,
)
from gpudesk.core.fleet import HostService
from gpudesk.core.forwards import Forward, ForwardKey, PortMemory, local_opener
from gpudesk.core.sshauth import DEFAULT_IDENTITIES

PROBE_TIMEOUT = 3.0
_FREE_PORT = (
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"
)
_SPEC_FIELDS = {f.name for f in fields(LaunchSpec)}
_RESOLVED = {"workspace", "public_key", "jupyter_token"}


@dataclass(frozen=True)
class LaunchRequest:
    """What the user asks for; :meth:`spec` resolves it into the engine's :class:`LaunchSpec`."""

    flavour: Flavour
    name: str
    gpus: str | None = None
    workspace: str | None = None  # on the GPU host; "~/..." is expanded there
    image: str | None = None
    base_image: str = DEFAULT_BASE_IMAGE
    memory: str | None = None
    key: str | None = None  # private key file; its .pub goes into the container
    sudo: bool = False  # passwordless sudo for the container user; off: sudo is refused
    pull: bool = False  # pull the base image onto the host when it is missing
    simulated: bool = False  # GPUs are simulated: labelled, not handed to Docker
    network: str = ""  # "host": the host's network (multi-node runs); see LaunchSpec

    def spec(self, *, workspace: str, public_key: str, jupyter_token: str | None) -> LaunchSpec:
        """The engine-level spec: this request's fields that LaunchSpec shares, plus the rest."""
        # The request's fields LaunchSpec also has, except those resolved here.
        shared = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name in _SPEC_FIELDS and f.name not in _RESOLVED
        }
        return LaunchSpec(
            **shared, workspace=workspace, public_key=public_key, jupyter_token=jupyter_token
        )


@dataclass(frozen=True)
class Reach:
    """How the operator gets into a launched container."""

    name: str
    flavour: Flavour
    ssh_alias: str | None = None
    ssh_config: str | None = None
    # Jupyter. url_here: on this machine; for a remote host it answers while forward_command
    # runs (or the TUI forwards it), always on the same local port. url_on_host: the GPU
    # host's own loopback, reachable only from that host.
    url: str | None = None  # the same as url_here, kept for older scripts
    url_here: str | None = None
    url_on_host: str | None = None
    forward_command: str | None = None

    def lines(self) -> list[str]:
        if self.flavour is Flavour.SSH:
            return [
                f"ssh {self.ssh_alias}",
                f"(or, without the Include line: ssh -F {self.ssh_config} {self.ssh_alias})",
            ]
        if self.forward_command:
            return [f"{self.url_here}  (after `{self.forward_command}`)"]
        return [self.url_here or ""]


def operator_key(host: Host, explicit: str | None = None) -> tuple[Path, str]:
    """The private key the container will trust, and its public half."""
    candidates: list[Path] = []
    if explicit:
        candidates.append(Path(explicit).expanduser())
    else:
        if host.identity:
            candidates.append(Path(host.identity).expanduser())
        candidates += [Path.home() / ".ssh" / name for name in DEFAULT_IDENTITIES]
    for private in candidates:
        public = private.with_name(private.name + ".pub")
        if private.exists() and public.exists():
            return private, public.read_text(encoding="utf-8").strip()
    raise ContainerError(
        "No SSH key pair to put into the container; create one with `ssh-keygen -t ed25519` "
        "or name one with --key."
    )


def host_alias(host: Host, inventory: Inventory, paths: Paths) -> sshconfig.HostAlias:
    jump: str | None = None
    if host.jump:
        names = inventory.names()
        jump = sshconfig.HOST_ALIAS_PREFIX + host.jump if host.jump in names else host.jump
    return sshconfig.HostAlias(
        name=host.name,
        hostname=host.hostname,
        port=host.port,
        user=host.user,
        identity=str(Path(host.identity).expanduser()) if host.identity else None,
        jump=jump,
        known_hosts=(str(Path.home() / ".ssh" / "known_hosts"), str(paths.known_hosts)),
        proxy_command=host.proxy_command,
    )


def write_host_aliases(inventory: Inventory) -> None:
    aliases = [
        host_alias(h, inventory, inventory.paths) for h in inventory.hosts if h.kind is HostKind.SSH
    ]
    sshconfig.write_host_aliases(inventory.paths.home, aliases)


def remember_ports(paths: Paths, infos: Iterable[ContainerInfo]) -> None:
    """Docker picks a new host port at each start; keep `ssh gpudesk-<name>` working."""
    ports = {
        i.name: port
        for i in infos
        if i.flavour is Flavour.SSH and (port := i.host_port(Flavour.SSH.port_key))
    }
    if ports:
        sshconfig.update_ports(paths.home, ports)


class DevContainers:
    """The dev containers of one host."""

    def __init__(self, service: HostService, inventory: Inventory) -> None:
        self.service = service
        self.inventory = inventory
        self.paths = inventory.paths
        self._home: str | None = None

    @property
    def host(self) -> Host:
        return self.service.host

    @property
    def local(self) -> bool:
        return self.host.kind is HostKind.LOCAL

    def engine(self) -> Containers:
        return Containers(self.service.docker())

    # ------------------------------------------------------------------ host side

    def remote_home(self) -> str:
        if self.local:
            return str(Path.home())
        if self._home is None:
            result = self.service.conn.exec('printf %s "$HOME"', timeout=20)
            home = result.text().strip()
            if not result.ok or not home.startswith("/"):
                raise ContainerError(f"Cannot find the home folder on {self.host.name}.")
            self._home = home
        return self._home

    def resolve_workspace(self, name: str, workspace: str | None) -> str:
        """The workspace path on the host, ``~`` expanded, checked (see check_workspace)."""
        raw = workspace or f"~/gpudesk/{name}"
        home = None
        if raw == "~" or raw.startswith("~/"):
            home = self.remote_home()
            raw = home + raw[1:]
        if not raw.startswith("/"):
            raise ContainerError(
                f"The workspace {raw!r} must be an absolute path or start with ~/ on the host."
            )
        check_workspace(raw, home)  # the rest, with the home, when it is made
        return raw

    def ensure_dir(self, path: str) -> None:
        prepare_workspace(
            lambda command: self.service.conn.exec(command, timeout=30), path, self.host.name
        )

    def free_host_port(self) -> int:
        """A port nothing listens on on the host's loopback, for a host-network container's
        server (the kernel picks it; the container binds it moments later)."""
        result = self.service.conn.exec(shell.command(["python3", "-c", _FREE_PORT]), timeout=30)
        text = result.text().strip() if result.ok else ""
        if not text.isdigit():
            raise ContainerError(
                f"Could not find a free port on {self.host.name} for the container's server;"
                " is python3 there?"
            )
        return int(text)

    def _open(self, port: int) -> Any:
        return self.service.conn.open_tcp("127.0.0.1", port, PROBE_TIMEOUT)

    def probe(self, flavour: Flavour, token: str | None) -> Probe:
        """Readiness through the host's SSH connection to its loopback, where the port is."""
        return ready_probe(flavour, token, self._open, PROBE_TIMEOUT)

    # ------------------------------------------------------------------ launch

    def launch(
        self,
        request: LaunchRequest,
        on_progress: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float = 120.0,
    ) -> tuple[LaunchResult, Reach]:
        emit = on_progress or (lambda _line: None)
        validate_name(request.name)
        private_key, public_key = (
            operator_key(self.host, request.key) if request.flavour is Flavour.SSH else (None, "")
        )
        token = generate_token() if request.flavour is Flavour.JUPYTER else None
        workspace = self.resolve_workspace(request.name, request.workspace)
        spec = request.spec(workspace=workspace, public_key=public_key, jupyter_token=token)
        if spec.network:
            spec.host_port = self.free_host_port()
        if request.pull and not request.image:
            engine = self.engine()
            built = engine.image_exists(image_tag(request.flavour, request.base_image))
            if not built and not engine.image_exists(request.base_image):
                engine.pull_image(request.base_image, emit)
        result = self.engine().launch(
            spec,
            self.ensure_dir,
            probe=self.probe(request.flavour, token),
            on_progress=emit,
            timeout=timeout,
            cancel=cancel,
        )
        if request.flavour is Flavour.SSH:
            assert private_key is not None
            try:
                self.write_ssh_entry(result, private_key)
            except Exception:
                # Nothing half-made: a container nobody can reach by name goes again.
                self.engine().remove(request.name)
                raise
            emit(f"ssh config entry gpudesk-{request.name} written")
        return result, self.reach(result.info, token=result.token)

    def write_ssh_entry(self, result: LaunchResult, private_key: Path) -> None:
        jump = None
        if not self.local:
            write_host_aliases(self.inventory)
            jump = sshconfig.HOST_ALIAS_PREFIX + self.host.name
        sshconfig.add_entry(
            self.paths.home,
            sshconfig.ContainerEntry(
                name=result.info.name,
                port=result.host_port,
                user=result.user,
                identity_file=str(private_key),
                host_key=result.host_key or "",
                jump=jump,
            ),
        )

    def reach(
        self, info: ContainerInfo, token: str | None = None, local_port: int | None = None
    ) -> Reach:
        if info.flavour is Flavour.JUPYTER:
            host_port = info.host_port(Flavour.JUPYTER.port_key)
            token = token or self.jupyter_token(info.name)

            def url(port: int | None) -> str | None:
                return f"http://127.0.0.1:{port}/lab?token={token}" if port else None

            if self.local:
                return Reach(
                    info.name,
                    Flavour.JUPYTER,
                    url=url(host_port),
                    url_here=url(host_port),
                    url_on_host=url(host_port),
                )
            key = ForwardKey(self.host.name, info.name, Flavour.JUPYTER.container_port)
            memory = PortMemory(self.paths)
            if local_port is None:
                local_port = memory.choose(key)
                memory.remember(key, local_port)
            return Reach(
                info.name,
                Flavour.JUPYTER,
                url=url(local_port),
                url_here=url(local_port),
                url_on_host=url(host_port),
                forward_command=f"gpudesk jupyter {info.name} --host {self.host.name}",
            )
        return Reach(
            info.name,
            Flavour.SSH,
            ssh_alias=SSH_HOST_PREFIX + info.name,
            ssh_config=str(sshconfig.config_path(self.paths.home)),
        )

    def jupyter_token(self, name: str) -> str:
        env = self.engine().inspect(name).get("Config", {}).get("Env") or []
        for item in env:
            if item.startswith("JUPYTER_TOKEN="):
                return str(item.split("=", 1)[1])
        raise ContainerError(f"{name} has no Jupyter token; is it a Jupyter container?")

    def open_jupyter(
        self, name: str, local_port: int | None = None
    ) -> tuple[Reach, Forward | None]:
        """The URL to open here; for a remote host, through a local port forward on the port
        used last time (or ``local_port``), so bookmarks keep working."""
        info = self.engine().get(name)
        if info.flavour is not Flavour.JUPYTER:
            raise ContainerError(f"{name} is not a Jupyter container.")
        if info.state != "running":
            raise ContainerError(f"{name} is {info.state}; start it first.")
        port = info.host_port(Flavour.JUPYTER.port_key)
        if port is None:
            raise ContainerError(f"{name} publishes no Jupyter port.")
        if self.local and local_port is None:
            return self.reach(info), None
        forward = self.forward(name, Flavour.JUPYTER.container_port, local_port)
        return self.reach(info, local_port=forward.local_port), forward

    def forward(self, name: str, port: int, local_port: int | None = None) -> Forward:
        """Forward ``port`` of container ``name`` to 127.0.0.1 here, following restarts.

        Without ``local_port`` the port used last time for this container and port is taken
        again when it is free; the one used is remembered.
        """
        if not 0 < port < 65536 or (local_port is not None and not 0 < local_port < 65536):
            raise ContainerError("Ports are numbers from 1 to 65535.")
        key = ForwardKey(self.host.name, name, port)

        def inspect() -> dict[str, Any]:
            return self.engine().inspect(name)

        opener = local_opener if self.local else self._open_remote
        memory = PortMemory(self.paths)
        forward = Forward(key, inspect, opener, memory.choose(key, local_port))
        memory.remember(key, forward.local_port)
        return forward

    def _open_remote(self, host: str, port: int) -> Any:
        return self.service.conn.open_tcp(host, port, PROBE_TIMEOUT)

    # ------------------------------------------------------------------ list and act

    def list(self, all_containers: bool = False) -> list[ContainerInfo]:
        if self.local:
            infos = self.engine().list(all_containers)
        else:
            # The docker CLI over the connection: no Docker SDK to import, no round trip per
            # container (see core/containers/listing.py).
            infos = list_over_shell(self.service.conn, self.host.name, all_containers)
        self._remember_ports(infos)
        return infos

    def find(self, ident: str) -> ContainerInfo | None:
        """One container by id or name, inspected now; None when it is gone."""
        try:
            info = self.engine().get(ident)
        except ContainerNotFoundError:
            return None
        self._remember_ports([info])
        return info

    def events(self) -> EventStream:
        return self.engine().events()

    def _remember_ports(self, infos: Iterable[ContainerInfo]) -> None:
        remember_ports(self.paths, infos)

    def act(self, verb: str, name: str) -> ContainerInfo | Removed:
        engine = self.engine()
        if verb in ("start", "restart"):
            info = engine.start(name) if verb == "start" else engine.restart(name)
            port = info.host_port(Flavour.SSH.port_key)
            if info.flavour is Flavour.SSH and port:
                sshconfig.update_ports(self.paths.home, {name: port})
            return info
        if verb == "stop":
            return engine.stop(name)
        if verb == "rm":
            removed = engine.remove(name)
            sshconfig.remove_entry(self.paths.home, name)
            return removed
        raise ValueError(f"unknown container action {verb!r}")
