"""The test bed's sshd as a gpudesk host."""

from __future__ import annotations

from typing import Any

from gpudesk.core.config import Host


def bed_host(
    testbed: Any, port: int | None = None, identity: str | None = None, name: str = "bed"
) -> Host:
    """root@127.0.0.1 on the main test sshd (or another one's ``port`` and key)."""
    return Host(
        name=name,
        hostname="127.0.0.1",
        user="root",
        port=port or testbed.ssh_port,
        identity=identity or testbed.ssh_client_key,
    )
