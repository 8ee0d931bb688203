"""The real test bed: sshd and dockerd on loopback, started by scripts/testbed.py.

In CI (CI=true) a test bed that cannot start fails the run; elsewhere the integration tests
skip with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import testbed as testbed_module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def testbed() -> Any:
    why = testbed_module.can_run()
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if why and not in_ci:
        pytest.skip(f"integration tests need the test bed: {why}")
    try:
        return testbed_module.up()
    except Exception as exc:
        if in_ci:
            pytest.fail(f"the test bed could not start in CI: {exc}", pytrace=False)
        pytest.skip(f"the test bed could not start: {exc}")


@pytest.fixture(scope="session")
def docker_client(testbed: Any) -> Iterator[Any]:
    import docker

    client = docker.DockerClient(base_url=testbed.docker_host, timeout=120)
    yield client
    client.close()


@pytest.fixture
def known_hosts_file(testbed: Any, isolated_home: Path) -> Path:
    """The user's ~/.ssh/known_hosts, trusting the main test sshd."""
    path = isolated_home / ".ssh" / "known_hosts"
    path.write_text(testbed.ssh_known_hosts_line + "\n")
    return path


@pytest.fixture
def extra_sshd(testbed: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A second sshd of the test's own, for tests that kill or re-key it."""
    name = request.node.name.replace("[", "_").replace("]", "_")[:40]
    sshd = testbed_module.new_sshd(name, testbed.docker_host)
    yield sshd
    sshd.stop()
