"""Benchmark: `ssh gpudesk-<name> true` into an SSH dev container, cold and warm.

Launches an SSH-flavour container on the test bed through gpudesk (the test bed's sshd as the
GPU host, so every ssh jumps through it exactly as to a remote host), then times the real
OpenSSH client with gpudesk's generated config:

- cold: a copy of the generated config (and of the GPU host aliases it includes) without its
  Control* lines, so each run makes both handshakes, the jump's and the container's (the
  reference: what every ssh, scp and rsync cost before connection sharing);
- warm: the generated config as written, after one run has started the shared master.

Prints the median, p90 and min of each, and their ratio. Needs the test bed
(``scripts/testbed.py up``, as root) and takes the shared test bed lock itself.

    python bench/ssh_warm.py [--runs 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOCK = "/tmp/gpudesk-bed.lock"
NAME = "bench-sshwarm"


def load_testbed() -> Any:
    from scripts import testbed

    bed = testbed.Testbed.load()
    return bed if bed is not None else testbed.up()


def gpudesk(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpudesk", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ssh failed: {done.stderr.strip()}")
    return elapsed * 1000.0


def unshared_copy(gpudesk_home: Path) -> Path:
    """The generated config and its included host aliases, minus connection sharing."""
    out = gpudesk_home.parent / "cold"
    out.mkdir()

    def strip(text: str) -> str:
        return "".join(
            line for line in text.splitlines(keepends=True)
            if not line.strip().startswith("Control")
        )  # fmt: skip

    hosts = out / "ssh_hosts"
    hosts.write_text(strip((gpudesk_home / "ssh_hosts").read_text()))
    config = strip((gpudesk_home / "ssh_config").read_text())
    config = config.replace(f"Include {gpudesk_home / 'ssh_hosts'}", f"Include {hosts}")
    (out / "ssh_config").write_text(config)
    return out / "ssh_config"


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "min_ms": round(ordered[0], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    bed = load_testbed()
    work = Path(tempfile.mkdtemp(prefix="gdb", dir="/tmp"))  # short: control sockets live here
    home = work / "h"
    (home / ".ssh").mkdir(parents=True)
    env = {**os.environ, "HOME": str(home), "GPUDESK_HOME": str(work / "g")}
    env.pop("SSH_AUTH_SOCK", None)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519")],
        check=True,
    )
    (home / ".ssh" / "known_hosts").write_text(bed.ssh_known_hosts_line + "\n")
    config = str(work / "g" / "ssh_config")
    alias = f"gpudesk-{NAME}"
    base = ["ssh", "-F", config, "-o", "BatchMode=yes"]
    with open(LOCK, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            added = gpudesk(
                "hosts", "add", "bed", f"ssh://root@127.0.0.1:{bed.ssh_port}",
                "--identity", bed.ssh_client_key, env=env,
            )  # fmt: skip
            if added.returncode != 0:
                raise SystemExit(added.stderr.strip())
            launched = gpudesk(
                "launch", "ssh", "--host", "bed", "--name", NAME, "--base-image", bed.base_image,
                "--workspace", str(work / "ws"), env=env,
            )  # fmt: skip
            if launched.returncode != 0:
                raise SystemExit(launched.stderr.strip())
            cold_config = unshared_copy(work / "g")
            cold_argv = ["ssh", "-F", str(cold_config), "-o", "BatchMode=yes", alias, "true"]
            cold = [timed(cold_argv, env) for _ in range(args.runs)]
            first = timed([*base, alias, "true"], env)  # starts the shared master
            warm = [timed([*base, alias, "true"], env) for _ in range(args.runs)]
        finally:
            subprocess.run([*base, "-O", "exit", alias], capture_output=True, env=env, check=False)
            subprocess.run(
                ["ssh", "-F", config, "-O", "exit", "gpudesk-host-bed"],
                capture_output=True,
                env=env,
                check=False,
            )
            gpudesk("rm", NAME, "--host", "bed", env=env)
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "runs": args.runs,
        "cold": summary(cold),
        "first_with_master_ms": round(first, 1),
        "warm": summary(warm),
    }
    result["ratio_cold_over_warm"] = round(
        result["cold"]["median_ms"] / result["warm"]["median_ms"], 1
    )
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
