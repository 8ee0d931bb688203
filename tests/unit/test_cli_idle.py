"""``gpudesk ps --idle``: the observation, its refusals and its --json contract."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gpudesk.cli.common import CliError
from gpudesk.cli.idle import probe_policy
from tests.json_contract import validate_text


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_simulated_localhost_busy_ranks_are_not_idle() -> None:
    # The simulated GPUs' ranks run at 40-95 %; GPUs 0 and 7 are at 0 % but hold no process.
    done = cli("ps", "--idle", "--for", "1s", "--host", "localhost", "--json",
               GPUDESK_SIMULATE_GPUS="8")  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = validate_text("ps --idle", done.stdout)
    assert doc["containers"] == [] and doc["errors"] == []
    assert doc["simulated"] is True and doc["observed_s"] == 1.0 and doc["below"] == 5.0
    # Under 100 % everything is low: the simulated ranks' containers are listed, proven idle.
    done = cli("ps", "--idle", "--for", "1s", "--below", "100", "--host", "localhost",
               GPUDESK_SIMULATE_GPUS="8")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Idle: GPU utilisation under 100 % all the time (watched 1 host")
    assert "SIMULATED" in lines[0]
    assert lines[1].split() == ["HOST", "NAME", "GPUS", "GPU", "MEM", "IDLE"]
    assert [line.split()[1] for line in lines[2:]] == [f"sim-train-{n}" for n in range(4)]


def test_a_dead_host_is_an_error_entry() -> None:
    assert cli("hosts", "add", "dead", "ssh://root@127.0.0.1:1", "--no-connect").returncode == 0
    done = cli("ps", "--idle", "--host", "dead", "--for", "1s", "--json")
    assert done.returncode == 1
    doc = validate_text("ps --idle", done.stdout)
    assert doc["containers"] == []
    (error,) = doc["errors"]
    assert error["host"] == "dead" and "Cannot reach" in error["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle", "--for", "soon"], "--for must be a duration such as 30m, 90s or 1h"),
        (["--idle", "--for", "2d"], "--for must be at most 24h."),
        (["--idle", "--below", "0"], "--below must be a percentage above 0"),
        (["--for", "2s"], "--for and --below go with --idle."),
    ],
)
def test_refusals_are_one_sentence(args: list[str], message: str) -> None:
    done = cli("ps", *args)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"gpudesk: {message}") and done.stderr.count("\n") == 1


def test_probe_policy() -> None:
    policy, interval = probe_policy("2s", None)
    assert (policy.after_s, policy.below, interval) == (2.0, 5.0, 0.4)
    policy, interval = probe_policy("30m", "10")
    assert (policy.after_s, policy.below, interval, policy.max_gap_s) == (1800.0, 10.0, 1.0, 5.0)
    with pytest.raises(CliError):
        probe_policy("0s", None)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {"GPUDESK_IDLE_AFTER": "soon"}, "GPUDESK_IDLE_AFTER must be a duration"),
        (
            ["ps", "--idle"],
            {"GPUDESK_IDLE_BELOW": "200"},
            "GPUDESK_IDLE_BELOW must be a percentage",
        ),
    ],
)
def test_bad_settings_stop_the_tui_and_the_cli_in_one_sentence(
    args: list[str], env: dict[str, str], message: str
) -> None:
    done = cli(*args, **env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"gpudesk: {message}") and done.stderr.count("\n") == 1
