"""After an SSH container's launch: offer the one Include line in ~/.ssh/config that makes
`ssh gpudesk-<name>` (and scp, rsync, VS Code) reach gpudesk's containers; asked once."""

from __future__ import annotations

from typing import Any

from textual.app import App

from gpudesk.app.modals.confirm import ConfirmModal
from gpudesk.core import sshconfig
from gpudesk.core.config import Paths, private_dir
from gpudesk.core.destinations import user_ssh_config_path


def ask_ssh_include(app: App[Any], paths: Paths, alias: str) -> None:
    """Ask, unless the Include is there or the user said no before (remembered in a file)."""
    config = sshconfig.config_path(paths.home)
    declined = paths.state_dir / "ssh-include-declined"
    if sshconfig.include_present(user_ssh_config_path(), config) or declined.exists():
        return

    def answered(yes: bool | None) -> None:
        if yes:
            sshconfig.ensure_include(user_ssh_config_path(), config)
            app.notify(f"Added the Include line; `ssh {alias}` works everywhere now.")
        else:
            private_dir(declined.parent)
            declined.touch(mode=0o600)
            app.notify(f"Not changed. Use: ssh -F {config} {alias}")

    app.push_screen(
        ConfirmModal(
            "Add one Include line at the top of ~/.ssh/config?",
            f"It reads {config}, so `ssh {alias}`, scp, rsync and VS Code "
            "Remote-SSH reach gpudesk's containers. Nothing else in the file changes.\n"
            "Enter adds it (the default: it only adds that line, and gpudesk asks once); "
            "esc leaves the file as it is.",
            confirm="Add Include",
            default_yes=True,
        ),
        answered,
    )
