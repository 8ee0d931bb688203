"""The README's install-and-run command, exactly as written, on a fresh Debian 12 (the test
bed's base image, which like a stock install has python3 but no pip, venv or pipx)."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

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


def test_the_readme_install_command_works_on_stock_debian(testbed: Any, docker_client: Any) -> None:
    line = readme_install_line()
    assert "pip install" not in line.split("pipx")[0]  # never the refused system pip
    # The TUI reads keys from stdin: `q` arrives once it runs (apt and pipx do not read it).
    script = '(while :; do printf q; sleep 1; done) | bash -c "$LINE"'
    container = docker_client.containers.create(
        testbed.base_image,
        ["bash", "-c", script],
        working_dir="/root/gpudesk",
        environment={"LINE": line, "TERM": "xterm", "DEBIAN_FRONTEND": "noninteractive"},
    )
    try:
        assert container.put_archive("/root", source_tarball())
        container.start()
        status = container.wait(timeout=900)
        logs = container.logs().decode("utf-8", "replace")
        assert status["StatusCode"] == 0, logs[-3000:]
        assert "installed package gpudesk" in logs
        assert "gpudesk" in logs.split("installed package gpudesk", 1)[1]  # the TUI drew
    finally:
        container.remove(force=True)
