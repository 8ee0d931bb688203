"""The two dev container flavours: their build context, image tags, ports and labels.

Everything gpudesk knows about a container is kept in its labels (prefix :data:`LABEL_PREFIX`),
so the list of containers can always be rebuilt from the Docker engine alone.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.resources
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gpudesk import __version__
from gpudesk.core.archive import tar_bytes
from gpudesk.core.errors import GpudeskError

DEFAULT_BASE_IMAGE = "pytorch/pytorch:2.9.1-cuda12.8-cudnn9-devel"
DEFAULT_USER = "dev"
LABEL_PREFIX = "io.gpudesk."
IMAGE_REPOSITORY = "gpudesk"
SSH_HOST_PREFIX = "gpudesk-"

# Only these files form the build context; the rest of gpudesk/images is not sent to Docker.
CONTEXT_FILES = ("Dockerfile", "common.sh", "entrypoint-ssh.sh", "entrypoint-jupyter.sh")

_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


class InvalidNameError(GpudeskError, ValueError):
    """A container or user name gpudesk will not use; the message says what is allowed."""


class Flavour(enum.StrEnum):
    SSH = "ssh"
    JUPYTER = "jupyter"

    @property
    def container_port(self) -> int:
        return 22 if self is Flavour.SSH else 8888

    @property
    def port_key(self) -> str:
        """The key of this flavour's port in Docker's port maps, e.g. ``22/tcp``."""
        return f"{self.container_port}/tcp"


def validate_name(name: str) -> str:
    """Return ``name`` if it can name a gpudesk container, else raise :class:`InvalidNameError`."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"{name!r} cannot name a container: use 1 to 63 lowercase letters, digits, '_', '.'"
            " or '-', starting with a letter or digit."
        )
    return name


def validate_user(user: str) -> str:
    """Return ``user`` if it can be the container's login user, else raise InvalidNameError."""
    if user == "root" or not _USER_RE.fullmatch(user):
        raise InvalidNameError(
            f"{user!r} cannot be the container user: use a non-root name of lowercase letters,"
            " digits, '_' or '-' (at most 32), starting with a letter or '_'."
        )
    return user


def generate_token() -> str:
    """A fresh Jupyter token with 256 bits of randomness, safe in URLs."""
    return secrets.token_urlsafe(32)


def context_files() -> dict[str, bytes]:
    """The build context files, by name, read from the installed package."""
    root = importlib.resources.files("gpudesk.images")
    return {name: root.joinpath(name).read_bytes() for name in CONTEXT_FILES}


def context_tarball(files: dict[str, bytes] | None = None) -> bytes:
    """The build context as an uncompressed tar archive, built in memory.

    Fixed owners and times keep the archive identical for identical files, so Docker's layer
    cache holds across builds.
    """
    files = context_files() if files is None else files
    return tar_bytes(files)


def image_tag(
    flavour: Flavour, base_image: str = DEFAULT_BASE_IMAGE, files: dict[str, bytes] | None = None
) -> str:
    """``gpudesk/<flavour>:<hash>``; the hash changes with anything that shapes the image."""
    files = context_files() if files is None else files
    digest = hashlib.sha256()
    for part in (f"flavour={flavour.value}", f"base={base_image}"):
        digest.update(part.encode() + b"\0")
    for name in sorted(files):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256(files[name]).digest())
    return f"{IMAGE_REPOSITORY}/{flavour.value}:{digest.hexdigest()[:16]}"


def default_workspace(name: str) -> str:
    """The workspace folder on the GPU host; the caller resolves ``~`` there."""
    return f"~/gpudesk/{validate_name(name)}"


def created_by() -> str:
    return f"gpudesk {__version__}"


@dataclass(frozen=True)
class GpudeskLabels:
    """What gpudesk records on each container it creates."""

    flavour: Flavour
    owner: str
    workspace: str
    user: str
    gpus: str = ""
    ports: tuple[int, ...] = ()
    sudo: bool = False  # passwordless sudo for the container user
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    created_by: str = field(default_factory=created_by)

    def to_labels(self) -> dict[str, str]:
        return {
            label("flavour"): self.flavour.value,
            label("owner"): self.owner,
            label("created-by"): self.created_by,
            label("workspace"): self.workspace,
            label("gpus"): self.gpus,
            label("ports"): ",".join(str(p) for p in self.ports),
            label("user"): self.user,
            label("created"): self.created.isoformat(timespec="seconds"),
        } | ({label("sudo"): "1"} if self.sudo else {})

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> GpudeskLabels | None:
        """Parse a container's labels; None if it is not a gpudesk container (or unreadable)."""
        try:
            flavour = Flavour(labels[label("flavour")])
        except (KeyError, ValueError):
            return None
        ports: list[int] = []
        for part in labels.get(label("ports"), "").split(","):
            if part.strip().isdigit():
                ports.append(int(part))
        try:
            created = datetime.fromisoformat(labels.get(label("created"), ""))
        except ValueError:
            created = datetime.fromtimestamp(0, UTC)
        return cls(
            flavour=flavour,
            owner=labels.get(label("owner"), ""),
            workspace=labels.get(label("workspace"), ""),
            user=labels.get(label("user"), ""),
            gpus=labels.get(label("gpus"), ""),
            ports=tuple(ports),
            sudo=labels.get(label("sudo")) == "1",
            created=created,
            created_by=labels.get(label("created-by"), ""),
        )


def label(key: str) -> str:
    """The full label name for one of gpudesk's keys, e.g. ``io.gpudesk.flavour``."""
    return LABEL_PREFIX + key


def has_sudo(labels: dict[str, str] | None) -> bool:
    """Whether gpudesk gave this container's user passwordless sudo (``--sudo``)."""
    return (labels or {}).get(label("sudo")) == "1"


def is_gpudesk(labels: dict[str, str] | None) -> bool:
    return bool(labels) and label("flavour") in (labels or {})
