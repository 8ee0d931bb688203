"""The README's install-and-run command, exactly as written, on a fresh Debian 12 (the test
bed's base image, which like a stock install has python3 but no pip, venv or pipx).

It starts in the background with the session's first integration test (tests/integration/
early.py) and this test, run last, waits for it: the install is mostly downloads, which need
not hold up the rest of the suite.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.integration import early

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def readme_install_line() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Two commands", 1)[1]
    match = re.search(r"```sh\n(.+?)\n```", section, re.DOTALL)
    assert match is not None
    return match.group(1)


def source_tarball() -> bytes:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
        text=True, check=True,
    ).stdout.split()  # fmt: skip
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in files:
            if (ROOT / name).is_file():
                tar.add(str(ROOT / name), arcname=f"gpudesk/{name}")
    return buf.getvalue()


def run_install(docker_client: Any, base_image: str) -> tuple[bool, int, str]:
    """Run the README's line in a fresh container: whether the source went in, exit status, log."""
    line = readme_install_line()
    # The TUI reads keys from stdin: `q` arrives once it runs (apt and pipx do not read it).
    script = '(while :; do printf q; sleep 1; done) | bash -c "$LINE"'
    container = docker_client.containers.create(
        base_image,
        ["bash", "-c", script],
        working_dir="/root/gpudesk",
        environment={"LINE": line, "TERM": "xterm", "DEBIAN_FRONTEND": "noninteractive"},
    )
    early.on_session_end(lambda: container.remove(force=True))
    try:
        if not container.put_archive("/root", source_tarball()):
            return False, -1, ""
        container.start()
        status = container.wait(timeout=900)
        return True, status["StatusCode"], container.logs().decode("utf-8", "replace")
    finally:
        container.remove(force=True)


def start_install(bed: Any) -> Future[tuple[bool, int, str]]:
    """The install is mostly apt and pip downloading: it runs beside the rest of the session."""

    def work() -> tuple[bool, int, str]:
        client = docker.DockerClient(base_url=bed.docker_host, timeout=120)
        try:
            return run_install(client, bed.base_image)
        finally:
            client.close()

    return early.start(("readme-install", bed.base_image), work)


START_EARLY = (start_install,)
RUN_LAST = True


def test_the_readme_install_command_works_on_stock_debian(testbed: Any) -> None:
    line = readme_install_line()
    assert "pip install" not in line.split("pipx")[0]  # never the refused system pip
    put, status, logs = start_install(testbed).result()
    assert put
    assert status == 0, logs[-3000:]
    assert "installed package gpudesk" in logs
    assert "gpudesk" in logs.split("installed package gpudesk", 1)[1]  # the TUI drew
