"""Listing over the docker CLI gives what the Docker SDK gives (real sshd and dockerd)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from gpudesk.core.config import Paths
from gpudesk.core.containers import ContainerEngine
from gpudesk.core.containers.listing import list_over_shell
from gpudesk.core.flavours import label
from gpudesk.core.ssh import SshConnection
from tests.integration.bed import bed_host


def test_the_cli_listing_matches_the_sdks(
    testbed: Any, known_hosts_file: Path, docker_client: Any
) -> None:
    tag = uuid.uuid4().hex[:8]
    made = [
        docker_client.containers.create(
            testbed.base_image, ["true"], name=f"lst-{tag}-dev", labels={label("flavour"): "ssh"}
        ),
        docker_client.containers.create(testbed.base_image, ["true"], name=f"lst-{tag}-other"),
    ]
    conn = SshConnection(bed_host(testbed), Paths.from_env())
    conn.connect_once()
    try:
        sdk = ContainerEngine(docker_client)  # the reference: the SDK on the engine's socket
        for everything in (False, True):
            over_ssh = list_over_shell(conn, "bed", all_containers=everything)
            expected = sdk.list(all_containers=everything)
            # Other tests may add or remove containers meanwhile: compare this test's own.
            mine = [i for i in over_ssh if i.name.startswith(f"lst-{tag}")]
            assert mine == [i for i in expected if i.name.startswith(f"lst-{tag}")]
            assert {i.name for i in mine} == (
                {f"lst-{tag}-dev", f"lst-{tag}-other"} if everything else {f"lst-{tag}-dev"}
            )
    finally:
        conn.close()
        for container in made:
            container.remove(force=True)
