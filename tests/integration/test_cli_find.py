"""Commands that find a container's host by searching the fleet (issue 14 item 9).

localhost has no Docker engine here (DOCKER_HOST names a socket that does not exist), the test
bed has the container: a command that finds it on the bed says nothing about localhost; only
when no host has it are the hosts that could not be asked named.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from gpudesk.core.config import Inventory
from tests.integration.bed import bed_host


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


@pytest.fixture
def env(
    testbed: Any, known_hosts_file: Path, isolated_home: Path, tmp_path: Path
) -> dict[str, str]:
    Inventory.load().add(bed_host(testbed))
    assert Inventory.load().names()[0] == "localhost"  # asked first, and it fails
    return {**os.environ, "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}"}


@pytest.fixture
def on_bed(testbed: Any, docker_client: Any) -> Iterator[str]:
    name = f"clitest-find-{uuid.uuid4().hex[:8]}"
    docker_client.containers.create(testbed.base_image, ["sleep", "600"], name=name)
    yield name
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(name).remove(force=True)


def test_a_container_found_on_another_host_is_acted_on_without_other_hosts_errors(
    env: dict[str, str], on_bed: str
) -> None:
    done = cli("start", on_bed, env=env)
    assert (done.returncode, done.stdout.strip()) == (0, f"{on_bed}: running"), done.stderr
    assert done.stderr == ""


def test_a_container_no_host_has_names_the_hosts_that_could_not_be_asked(
    env: dict[str, str],
) -> None:
    done = cli("stop", f"clitest-none-{uuid.uuid4().hex[:8]}", env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one sentence, naming the host that could not be asked
    assert lines[0].startswith("gpudesk: No container named"), done.stderr
    assert "localhost could not be asked: localhost: Docker could not look up container" in lines[0]
