"""Which host folders gpudesk refuses to mount as a workspace (issue 11, item 1)."""

from __future__ import annotations

import pytest

from gpudesk.core.containers import ContainerError
from gpudesk.core.containers.workspace import check_workspace

HOME = "/home/alice"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("relative/ws", "absolute"),
        ("/home/alice/../../var/tmp/x", "'..'"),
        ("/data/ws/..", "'..'"),
        ("/", "shares"),
        ("/etc", "system folder"),
        ("/etc/gpudesk", "system folder"),
        ("/usr/local/ws", "system folder"),
        ("/var/tmp/x", "system folder"),
        ("/lib64", "system folder"),
        ("/proc/1", "system folder"),
        ("/root", "shares"),
        ("/home", "shares"),
        ("/tmp", "shares"),
        ("/home/alice", "home folder"),
        ("/home/alice/", "home folder"),
        ("/home/alice/.ssh", ".ssh"),
        ("/home/alice/.ssh/keys", ".ssh"),
    ],
)
def test_refused(path: str, why: str) -> None:
    with pytest.raises(ContainerError, match=why) as caught:
        check_workspace(path, HOME)
    assert str(caught.value).count(".") >= 1 and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "path",
    [
        "/home/alice/gpudesk/box",
        "/root/gpudesk/box",
        "/data/ws",
        "/tmp/ws",
        "/srv/box",
        "/etcetera",
    ],
)
def test_accepted(path: str) -> None:
    check_workspace(path, HOME)


def test_a_root_ssh_user_cannot_hand_over_root() -> None:
    with pytest.raises(ContainerError, match="home folder"):
        check_workspace("/root", "/root")
    check_workspace("/root/gpudesk/box", "/root")
