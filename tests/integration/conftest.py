"""The real test bed: sshd and dockerd on loopback, started by scripts/testbed.py.

In CI (CI=true) a test bed that cannot start fails the run; elsewhere the integration tests
skip with the reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core import sshconfig
from scripts import testbed as testbed_module
from tests.integration import early


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            # They share one test bed: under `pytest -n 2 --dist loadgroup` (scripts/test) they
            # run one at a time on one worker, while the other worker runs the rest.
            item.add_marker(pytest.mark.xdist_group("testbed"))
    # A test that waits for work started early (tests/integration/early.py) runs last, so the
    # rest of the session overlaps that work instead of waiting for it; so does a test that
    # restarts the shared dockerd (marked `restarts_dockerd`), which waits for that work first.
    items.sort(key=runs_last)


def runs_last(item: pytest.Item) -> bool:
    module_last = bool(getattr(getattr(item, "module", None), "RUN_LAST", False))
    return module_last or item.get_closest_marker("restarts_dockerd") is not None


_bed: list[Any] = []  # what testbed_module.up() gave (or raised), once per session


def bed_up() -> Any:
    if not _bed:
        try:
            _bed.append(testbed_module.up())
        except Exception as exc:  # the testbed fixture reports it
            _bed.append(exc)
    return _bed[0]


@pytest.fixture(scope="session", autouse=True)
def start_early(request: pytest.FixtureRequest) -> Iterator[None]:
    """With the session's first integration test, start the slow IO-bound preparations of the
    selected integration modules (tests/integration/early.py) in the background."""
    starters = {}
    for item in request.session.items:
        for starter in getattr(getattr(item, "module", None), "START_EARLY", ()):
            starters[starter] = None
    lock = None
    if not testbed_module.can_run():
        # One user of the shared test bed at a time: another session's suite, a bench or a
        # developer's run would otherwise restart dockerd or clear containers under this one.
        lock = open(testbed_module.BED_LOCK, "a")  # noqa: SIM115 - held for the whole session
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    bed = None if lock is None else bed_up()
    if bed is not None and not isinstance(bed, Exception):
        for starter in starters:
            starter(bed)
    # otherwise the tests skip or fail through the testbed fixture, as without this
    try:
        yield
        early.finish()
    finally:
        if lock is not None:
            lock.close()


@pytest.fixture(scope="session")
def testbed() -> Any:
    why = testbed_module.can_run()
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    if why and not in_ci:
        pytest.skip(f"integration tests need the test bed: {why}")
    bed = bed_up()
    if isinstance(bed, Exception):
        if in_ci:
            pytest.fail(f"the test bed could not start in CI: {bed}", pytrace=False)
        pytest.skip(f"the test bed could not start: {bed}")
    return bed


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


@pytest.fixture
def short_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # Control sockets need a short path; pytest's tmp_path is too deep for one.
    home = Path(tempfile.mkdtemp(prefix="gd", dir="/tmp"))
    monkeypatch.setenv("GPUDESK_HOME", str(home))
    yield home
    for socket_file in (home / "cm").glob("*"):
        subprocess.run(
            ["ssh", "-F", str(sshconfig.config_path(home)), "-O", "exit", "-S", str(socket_file),
             "x"], capture_output=True, check=False, timeout=20,
        )  # fmt: skip
    shutil.rmtree(home, ignore_errors=True)
