"""The --json contract: docs/json.md is generated from the schema, and real outputs follow it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from jsonschema import Draft202012Validator

from gpudesk.cli.json_schema import COMMANDS, SCHEMA_VERSION, command_schema, render_markdown
from tests.json_contract import validate, validate_text

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=120
    )


def test_docs_are_generated_from_the_schema() -> None:
    assert (ROOT / "docs" / "json.md").read_text() == render_markdown(), (
        "docs/json.md is stale: run `python -m gpudesk.cli.json_schema > docs/json.md`"
    )


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_schema_is_valid_json_schema(command: str) -> None:
    Draft202012Validator.check_schema(command_schema(command))
    assert f"### {command}" in render_markdown()


def test_the_schema_refuses_what_the_contract_forbids() -> None:
    good = {"schema": SCHEMA_VERSION, "hosts": []}
    validate("hosts ls", good)
    bad_documents = [
        {"hosts": []},  # no version
        {**good, "schema": 0},  # another version
        {**good, "extra": 1},  # an undocumented field
    ]
    host = {"name": "h", "kind": "ssh", "hostname": "10.0.0.5", "user": "a", "port": 22,
            "identity": None, "jump": None, "builtin": False}  # fmt: skip
    validate("hosts ls", {**good, "hosts": [host]})
    bad_documents += [
        {**good, "hosts": [{**host, "user": ""}]},  # "" where null is meant
        {**good, "hosts": [{k: v for k, v in host.items() if k != "jump"}]},  # a missing field
        {**good, "hosts": [{**host, "port": "22"}]},  # a wrong type
    ]
    for document in bad_documents:
        with pytest.raises(jsonschema.ValidationError):
            validate("hosts ls", document)


def test_hosts_ls_json_follows_the_contract() -> None:
    assert cli("hosts", "add", "gpu1", "ssh://alice@10.0.0.5:2222", "--no-connect").returncode == 0
    done = cli("hosts", "ls", "--json")
    assert done.returncode == 0, done.stderr
    doc = validate_text("hosts ls", done.stdout)
    assert [h["name"] for h in doc["hosts"]] == ["localhost", "gpu1"]
    assert doc["hosts"][0]["hostname"] is None and doc["hosts"][1]["port"] == 2222


@pytest.fixture
def dead_host() -> str:
    # Port 1 on loopback is closed: every connection is refused at once.
    assert cli("hosts", "add", "dead", "ssh://root@127.0.0.1:1", "--no-connect").returncode == 0
    return "dead"


def test_hosts_check_json_carries_the_failed_host(dead_host: str) -> None:
    done = cli("hosts", "check", dead_host, "--json")
    assert done.returncode == 1
    (row,) = validate_text("hosts check", done.stdout)["hosts"]
    assert row["state"] == "unreachable" and "Cannot reach" in row["error"]
    assert row["docker"] is None and row["latency_ms"] is None


@pytest.mark.parametrize(("command", "key"), [("ps", "containers"), ("runs", "runs")])
def test_a_failed_host_is_an_error_entry_and_a_nonzero_exit(
    dead_host: str, command: str, key: str
) -> None:
    done = cli(command, "--host", dead_host, "--json")
    assert done.returncode == 1
    doc = validate_text(command, done.stdout)
    assert doc[key] == []
    (error,) = doc["errors"]
    assert error["host"] == dead_host and "Cannot reach" in error["error"]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_stats_json_has_an_error_line_for_a_failed_host(dead_host: str) -> None:
    done = cli("stats", "--host", dead_host, "--once", "--json")
    assert done.returncode == 1
    (line,) = validate_text("stats", done.stdout)
    assert line["host_name"] == dead_host and "Cannot reach" in line["error"]
    assert json.loads(done.stdout)["schema"] == SCHEMA_VERSION
