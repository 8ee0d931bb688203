"""Benchmark: ``gpudesk ps --host H`` against ``ssh H docker ps``, paired, on the test bed.

Whole-process wall times, runs interleaved (a busy neighbour slows both alike), medians:

- reference: OpenSSH's ``ssh H docker ps`` with a fresh connection each run (key exchange,
  auth, one command), the same key and known_hosts as gpudesk;
- ``gpudesk ps --host H`` as a user runs it again and again: through the OpenSSH client riding
  the master connection the previous command left (core/openssh.py), plain and ``--json``;
- the same with the master stopped before each run (the first command of a session: it pays
  the handshake and leaves the master behind);
- ``GPUDESK_OPENSSH=0 gpudesk ps --host H``: gpudesk's own paramiko connection, per command;
- for comparison, ``ssh H docker ps`` riding a warm ControlMaster.

H is the test bed's sshd, whose sessions reach the test bed's dockerd. Takes the shared test
bed lock itself; needs the test bed (``scripts/testbed.py up``, as root).

    .venv/bin/python bench/ps_vs_ssh.py [--runs 9]

Target (issue 15): gpudesk ps <= 1.1x the fresh ssh (the repeated command, warm master).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
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


def load_testbed() -> Any:
    from scripts import testbed

    bed = testbed.Testbed.load()
    return bed if bed is not None else testbed.up()


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv[:3])}... failed: {done.stderr.strip()}")
    return elapsed, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    opts = parser.parse_args()

    bed = load_testbed()
    work = Path(tempfile.mkdtemp(prefix="gdps", dir="/tmp"))  # short: a control socket lives here
    home, gd_home = work / "h", work / "g"
    (home / ".ssh").mkdir(parents=True)
    gd_home.mkdir()
    (home / ".ssh" / "known_hosts").write_text(bed.ssh_known_hosts_line + "\n")
    (gd_home / "known_hosts").write_text(bed.ssh_known_hosts_line + "\n")
    (gd_home / "hosts.toml").write_text(
        f'[hosts.bed]\nhostname = "127.0.0.1"\nport = {bed.ssh_port}\nuser = "root"\n'
        f'identity = "{bed.ssh_client_key}"\n'
    )
    env = {**os.environ, "HOME": str(home), "GPUDESK_HOME": str(gd_home)}
    env.pop("SSH_AUTH_SOCK", None)
    # Installed packages come with their .pyc files (pip compiles them); an editable checkout
    # run with PYTHONDONTWRITEBYTECODE would compile gpudesk from source on every start.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    gpudesk = str(Path(sys.executable).with_name("gpudesk"))
    ssh = [
        "ssh", "-F", "/dev/null", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={home / '.ssh' / 'known_hosts'}",
        "-i", bed.ssh_client_key, "-p", str(bed.ssh_port),
    ]  # fmt: skip
    control = str(work / "cm")
    mux = [*ssh, "-o", "ControlMaster=auto", "-o", f"ControlPath={control}",
           "-o", "ControlPersist=300"]  # fmt: skip
    master = ["ssh", "-F", str(gd_home / "ssh_hosts"), "-O", "exit", "gpudesk-host-bed"]

    def stop_master() -> None:
        subprocess.run(master, capture_output=True, env=env, check=False, timeout=30)

    def nothing() -> None:
        pass

    paramiko_env = {**env, "GPUDESK_OPENSSH": "0"}
    ps = [gpudesk, "ps", "--host", "bed"]
    cases = {  # name: (argv, environment, untimed step before each run)
        "ssh H docker ps": ([*ssh, "root@127.0.0.1", "docker", "ps"], env, nothing),
        "gpudesk ps --host H": (ps, env, nothing),
        "gpudesk ps --host H --json": ([*ps, "--json"], env, nothing),
        "gpudesk ps, master stopped": (ps, env, stop_master),
        "gpudesk ps, GPUDESK_OPENSSH=0": (ps, paramiko_env, nothing),
        "ssh H docker ps (warm master)": ([*mux, "root@127.0.0.1", "docker", "ps"], env, nothing),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with open(LOCK, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            outputs = {name: timed(argv, e)[1] for name, (argv, e, _b) in cases.items()}  # warm-up
            for _ in range(opts.runs):
                for name, (argv, case_env, before) in cases.items():
                    before()
                    times[name].append(timed(argv, case_env)[0])
        finally:
            subprocess.run([*mux, "-O", "exit", "root@127.0.0.1"], capture_output=True, env=env)
            stop_master()
    listed = len(outputs["ssh H docker ps"].splitlines()) - 1
    med = {name: statistics.median(values) for name, values in times.items()}
    ref = med["ssh H docker ps"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; medians of {opts.runs} runs")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"docker ps listed {listed} running container(s) on the test bed's engine")
    print()
    print(f"{'figure':<32} {'s':>7}  {'ratio to ssh H docker ps':>24}  target")
    for name, value in med.items():
        target = "<= 1.1x" if name == "gpudesk ps --host H" else ""
        print(f"{name:<32} {value:7.3f}  {value / ref:23.2f}x  {target}")
    print()
    print("all runs (s):")
    for name, values in times.items():
        print(f"  {name:<32} " + " ".join(f"{v:.3f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
