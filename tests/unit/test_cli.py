import json
import subprocess
import sys

import pytest

from gpudesk import __version__
from gpudesk.cli.main import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args], capture_output=True, text=True, timeout=60
    )


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.strip() == f"gpudesk {__version__}"
    help_text = run_cli("--help").stdout
    assert "hosts" in help_text and "terminal UI" in help_text


def test_hosts_add_ls_rm_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hosts", "add", "gpu1", "ssh://alice@10.0.0.5:2222", "--no-connect"]) == 0
    assert main(["hosts", "ls", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.split("\n", 1)[1])["hosts"]
    assert [r["name"] for r in rows] == ["localhost", "gpu1"]
    assert rows[1]["port"] == 2222 and rows[1]["user"] == "alice"
    assert main(["hosts", "rm", "gpu1"]) == 0
    assert main(["hosts", "ls", "--json"]) == 0
    out = capsys.readouterr().out
    assert [r["name"] for r in json.loads(out[out.index("{") :])["hosts"]] == ["localhost"]


def test_errors_are_one_line_on_stderr_without_traceback() -> None:
    done = run_cli("hosts", "add", "bad name!", "ssh://a@b", "--no-connect")
    assert done.returncode == 1
    assert done.stderr.startswith("gpudesk: Host name 'bad name!' is not valid")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = run_cli("hosts", "rm", "nope")
    assert done.returncode == 1 and "No host named 'nope'" in done.stderr


def test_unreachable_host_is_not_added() -> None:
    # Port 1 on loopback is closed: connection refused at once.
    done = run_cli("hosts", "add", "dead", "ssh://root@127.0.0.1:1")
    assert done.returncode == 1
    assert "Cannot reach" in done.stderr and "Traceback" not in done.stderr
    assert "dead" not in run_cli("hosts", "ls").stdout
