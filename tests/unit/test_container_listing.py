"""Listing a remote host's containers with the docker CLI (core/containers/listing.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest

from gpudesk.core import shell
from gpudesk.core.connection import ExecResult, LineStream
from gpudesk.core.containers.listing import list_over_shell
from gpudesk.core.containers.model import ContainerError

LABEL = "io.gpudesk.flavour"


def _attrs(cid: str, name: str, flavour: str | None) -> dict[str, Any]:
    labels = {LABEL: flavour} if flavour else {}
    return {
        "Id": cid,
        "Name": f"/{name}",
        "Created": "2026-11-25T08:00:00.000000000Z",
        "Config": {"Image": "img", "Labels": labels},
        "State": {"Status": "exited", "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z"},
    }


class FakeDocker:
    """A host whose shell answers `docker ps` and `docker inspect` from a list of containers."""

    def __init__(self, containers: list[dict[str, Any]], gone: frozenset[str] = frozenset()):
        self.containers = containers
        self.gone = gone  # listed by ps, removed before inspect
        self.commands: list[list[str]] = []

    def exec(
        self, command: str, input: bytes | None = None, timeout: float | None = 60.0
    ) -> ExecResult:
        argv = shell.split(command)
        self.commands.append(argv)
        if argv[:2] == ["docker", "ps"]:
            wanted = [
                c for c in self.containers
                if "--filter" not in argv or LABEL in c["Config"]["Labels"]
            ]  # fmt: skip
            return ExecResult(0, "".join(c["Id"] + "\n" for c in wanted).encode(), b"")
        assert argv[:5] == ["docker", "inspect", "--type", "container", "--"]
        found = [c for c in self.containers if c["Id"] in argv[5:] and c["Id"] not in self.gone]
        err = "".join(f"Error: No such container: {i}\n" for i in argv[5:] if i in self.gone)
        return ExecResult(1 if err else 0, json.dumps(found).encode(), err.encode())

    def open_lines(self, command: str, stdin: bytes = b"") -> AbstractContextManager[LineStream]:
        raise AssertionError("listing needs no stream")


def test_an_empty_host_costs_one_command() -> None:
    host = FakeDocker([])
    assert list_over_shell(host, "h") == []
    assert host.commands == [
        ["docker", "ps", "--all", "--quiet", "--no-trunc", "--filter", f"label={LABEL}"]
    ]


def test_gpudesk_containers_only_unless_all_in_the_engines_order() -> None:
    host = FakeDocker(
        [_attrs("c1", "zeta", "ssh"), _attrs("c2", "other", None), _attrs("c3", "alpha", "jupyter")]
    )
    assert [i.name for i in list_over_shell(host, "h")] == ["alpha", "zeta"]
    # gpudesk's first, each group by name (as ContainerEngine.list sorts).
    everything = list_over_shell(host, "h", all_containers=True)
    assert [(i.name, i.is_gpudesk) for i in everything] == [
        ("alpha", True), ("zeta", True), ("other", False)
    ]  # fmt: skip
    assert everything[0].state == "exited" and everything[0].image == "img"


def test_a_container_removed_between_ps_and_inspect_is_left_out() -> None:
    host = FakeDocker([_attrs("c1", "a", "ssh"), _attrs("c2", "b", "ssh")], gone=frozenset({"c1"}))
    assert [i.name for i in list_over_shell(host, "h")] == ["b"]


class Failing:
    def __init__(self, code: int, stderr: str) -> None:
        self.result = ExecResult(code, b"", stderr.encode())

    def exec(self, command: str, input: bytes | None = None, timeout: float | None = 60.0):  # type: ignore[no-untyped-def]
        return self.result

    def open_lines(self, command: str, stdin: bytes = b"") -> Iterator[LineStream]:
        raise AssertionError


@pytest.mark.parametrize(
    ("code", "stderr", "says"),
    [
        (127, "sh: 1: docker: not found", "docker CLI is missing on gpu1"),
        (
            1,
            "permission denied while trying to connect to the Docker daemon socket",
            "'docker' group",
        ),
        (1, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", "start dockerd"),
        (1, "something odd\nmore", "Docker could not list containers on gpu1: something odd."),
    ],
)
def test_failures_are_one_sentence_naming_the_host(code: int, stderr: str, says: str) -> None:
    with pytest.raises(ContainerError) as caught:
        list_over_shell(Failing(code, stderr), "gpu1")  # type: ignore[arg-type]
    message = str(caught.value)
    assert says in message and "\n" not in message
