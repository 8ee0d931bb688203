"""Workspace folders on the GPU host: which paths may be mounted into a dev container, and
creating one so that the container user owns it without gpudesk ever taking a folder over."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath

from gpudesk.core import shell
from gpudesk.core.connection import ExecResult
from gpudesk.core.containers.model import ContainerError

# Host folders a workspace may never be in: bind-mounted into a container, their contents would
# be the container's to read and write (and the container user's uid would own what it writes).
SYSTEM_TREES = (
    "/etc", "/usr", "/var", "/boot", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
    "/proc", "/sys", "/dev", "/run", "/snap",
)  # fmt: skip
# Folders shared by many (homes, temporary files, mounts): only a folder inside them will do.
SHARED_FOLDERS = ("/", "/root", "/home", "/tmp", "/opt", "/srv", "/mnt", "/media")


def check_workspace(path: str, home: str | None = None) -> None:
    """Refuse a workspace path gpudesk must not mount: relative, with ``..``, a system folder,
    a folder many share, or (given the SSH user's ``home``) that home, a folder above it, or
    its ``.ssh``. One sentence saying why; checked on the path as given and as resolved."""
    example = "pick a folder of its own, like ~/gpudesk/NAME"
    if not path.startswith("/"):
        raise ContainerError(
            f"The workspace {path!r} must be an absolute path on the GPU host; {example}."
        )
    if ".." in path.split("/"):
        raise ContainerError(f"The workspace {path!r} must not contain '..'; {example}.")
    pure = PurePosixPath(path)
    home_path = PurePosixPath(home) if home else None
    if home_path is not None:
        ssh_dir = home_path / ".ssh"
        if pure == ssh_dir or ssh_dir in pure.parents:
            raise ContainerError(f"The workspace {path} is the SSH user's .ssh folder; {example}.")
        if pure == home_path:
            raise ContainerError(
                f"The workspace {path} would hand the SSH user's home folder to the container;"
                f" {example}."
            )
    for tree in SYSTEM_TREES:
        if pure == PurePosixPath(tree) or PurePosixPath(tree) in pure.parents:
            raise ContainerError(
                f"The workspace {path} is inside {tree}, a system folder of the GPU host; {example}."
            )
    if str(pure) in SHARED_FOLDERS:
        raise ContainerError(
            f"The workspace {path} is a folder the whole GPU host shares; {example}."
        )
    if home_path is not None and pure in home_path.parents:
        raise ContainerError(f"The workspace {path} holds the SSH user's home folder; {example}.")


# The images' login user (Dockerfile: useradd -u 1000 dev); its uid follows the workspace owner.
CONTAINER_UID = 1000

# The SSH user's home, then the workspace path with every existing part resolved (symlinks
# followed), in POSIX sh: the deepest folder that exists is resolved with `cd -P`, the parts
# still to be made are appended.
_RESOLVE_SCRIPT = """
p=$1 rest=
while [ ! -d "$p" ]; do
    rest=/$(basename -- "$p")$rest
    p=$(dirname -- "$p")
done
printf '%s\n%s%s' "$HOME" "$(cd -P -- "$p" && pwd -P)" "$rest"
"""
# Makes the workspace. Only a folder made here gets the container user as owner (when the SSH
# user may chown, i.e. is root); an existing folder keeps its owner and only reports it.
_PREPARE_SCRIPT = """
p=$1 uid=$2
mkdir -p -- "$(dirname -- "$p")" || exit 4
if mkdir -- "$p" 2>/dev/null; then
    if [ "$(id -u)" = 0 ]; then chown -- "$uid:$uid" "$p" || exit 5; fi
    echo created
elif [ -d "$p" ]; then
    echo "existing $(stat -c %u -- "$p")"
else
    echo "it exists and is not a folder" >&2
    exit 3
fi
"""

Exec = Callable[[str], ExecResult]


def prepare_workspace(run: Exec, path: str, host: str = "") -> None:
    """Create the workspace ``path`` on the host ``run`` executes on, owned by the container
    user, or accept an existing folder the container user may own; refuse anything else.

    gpudesk never changes the owner of a folder it did not create: an existing root-owned folder
    is refused rather than handed to uid 1000 (who may be an unrelated account on the host).
    The path is checked as given and with its symlinks resolved, before anything is made.
    """
    where = f" on {host}" if host else ""
    check_workspace(path)
    resolved = run(shell.command(["sh", "-c", _RESOLVE_SCRIPT, "sh", path]))
    home, _, real = resolved.text().partition("\n")
    if not resolved.ok or not real.startswith("/"):
        raise ContainerError(
            f"Cannot resolve the workspace {path}{where}: {resolved.error_text() or 'sh failed'}."
        )
    home = home if home.startswith("/") else ""
    check_workspace(path, home)
    if real != path:
        check_workspace(real, home)
    made = run(shell.command(["sh", "-c", _PREPARE_SCRIPT, "sh", path, str(CONTAINER_UID)]))
    answer = made.text().split()
    if not made.ok or not answer:
        raise ContainerError(
            f"Cannot create the workspace {path}{where}: {made.error_text() or 'mkdir failed'}."
        )
    if answer[0] == "existing" and answer[1:] == ["0"]:
        raise ContainerError(
            f"The workspace {path}{where} exists and belongs to root; gpudesk only hands folders"
            " it creates to the container user, so give a new path or chown it yourself."
        )
