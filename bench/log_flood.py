"""Benchmark: a log flooded with 200,000 lines on the test bed host, followed two ways.

1. gpudesk: a :class:`LogFollower` over the test bed's SSH connection (the host-side run
   reader following the file in one exec channel, as ``tail -n 0 -F`` would) into its bounded
   ring buffer; reports lines/s ingested and the follower's
   memory (peak RSS growth of this process while following, and the buffer's size).
2. raw: ``ssh host tail -n 0 -F`` (OpenSSH) on a fresh file of the same lines, counting lines on
   its stdout.

Both runs follow a file that a separate process writes as fast as it can; the clock runs from
the first write to the last line received. Needs the test bed (``scripts/testbed.py up``).

    python bench/log_flood.py [--lines 200000] [--buffer 10000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpudesk.core import logs  # noqa: E402
from gpudesk.core.config import Host, Inventory  # noqa: E402
from gpudesk.core.fleet import Fleet, connect_blocking  # noqa: E402

LINE = "step {i:>8}/200000 loss 1.2345 lr 9.58e-04 gnorm 9.36 15,062 tok/s 204.0 ms/step  # {pad}"
WRITER = r"""
import sys
path, n, template = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, 'a', buffering=1 << 20) as f:
    for i in range(n):
        f.write(template.format(i=i, pad='x' * (i % 17)) + '\n')
"""


def load_testbed() -> Any:
    sys.path.insert(0, str(ROOT))
    from scripts import testbed

    bed = testbed.Testbed.load()
    return bed if bed is not None else testbed.up()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def write_flood(path: Path, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n), LINE])


READY = "gpudesk-bench-ready"


def announce_until(path: Path, seen: threading.Event) -> None:
    """Append a marker line until the follower has shown it: then the follower is reading."""
    while not seen.is_set():
        with path.open("a") as f:
            f.write(READY + "\n")
        seen.wait(0.05)


def bench_gpudesk(service: Any, path: Path, n: int, buffer: int) -> dict[str, float]:
    done = threading.Event()
    ready = threading.Event()
    before = [0]

    def on_batch(lines: list[str], total: int) -> None:
        if not ready.is_set():
            if READY in lines:
                before[0] = total
                ready.set()
            return
        if total - before[0] >= n:
            done.set()

    follower = logs.LogFollower(logs.file_opener(service, str(path), 0), on_batch, max_lines=buffer)
    thread = threading.Thread(target=follower.run, daemon=True)
    base = rss_kib()
    peak = [base]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.02):
            peak[0] = max(peak[0], rss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    thread.start()
    sampler.start()
    # The follower must have opened the file before the flood starts, or it would miss lines.
    announce_until(path, ready)
    start = time.perf_counter()
    writer = write_flood(path, n)
    if not done.wait(300):
        raise SystemExit(f"gpudesk follower saw only {follower.total} of {n} lines")
    elapsed = time.perf_counter() - start
    writer.wait()
    sampling.set()
    sampler.join()
    held = follower.lines()
    follower.stop()
    thread.join(10)
    flood = follower.total - before[0]
    return {
        "lines": flood,
        "seconds": elapsed,
        "lines_per_s": flood / elapsed,
        "buffer_lines": len(held),
        "buffer_mib": sum(sys.getsizeof(x) for x in held) / 2**20,
        "peak_rss_delta_mib": (peak[0] - base) / 1024,
    }


def bench_raw_ssh(bed: Any, known_hosts: Path, path: Path, n: int) -> dict[str, float]:
    cmd = [
        "ssh", "-p", str(bed.ssh_port), "-i", bed.ssh_client_key,
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes", "root@127.0.0.1", "tail", "-n", "0", "-F", str(path),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    ready = threading.Event()
    announcer = threading.Thread(target=announce_until, args=(path, ready), daemon=True)
    announcer.start()
    for line in proc.stdout:
        if line.rstrip(b"\n") == READY.encode():
            ready.set()
            break
    announcer.join()
    start = time.perf_counter()
    writer = write_flood(path, n)
    count = 0
    for line in proc.stdout:
        if line.rstrip(b"\n") == READY.encode():
            continue  # markers written before the reader caught up
        count += 1
        if count >= n:
            break
    elapsed = time.perf_counter() - start
    writer.wait()
    proc.kill()
    proc.wait()
    return {"lines": count, "seconds": elapsed, "lines_per_s": count / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--buffer", type=int, default=10_000, help="ring buffer size (lines)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    bed = load_testbed()
    with tempfile.TemporaryDirectory(prefix="gpudesk-flood-") as tmp:
        home = Path(tmp)
        os.environ["GPUDESK_HOME"] = str(home / "gpudesk")
        known_hosts = home / "known_hosts"
        known_hosts.write_text(bed.ssh_known_hosts_line + "\n")
        inventory = Inventory.load()
        inventory.add(
            Host(name="bed", hostname="127.0.0.1", user="root", port=bed.ssh_port,
                 identity=bed.ssh_client_key)
        )  # fmt: skip
        # gpudesk's own known_hosts is where accepted keys live.
        inventory.paths.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        inventory.paths.known_hosts.write_text(bed.ssh_known_hosts_line + "\n")
        fleet = Fleet.build(Inventory.load())
        service = fleet.get("bed")
        connect_blocking(service.conn)
        try:
            ours = bench_gpudesk(service, home / "flood-gpudesk.log", args.lines, args.buffer)
        finally:
            fleet.close()
        raw = bench_raw_ssh(bed, known_hosts, home / "flood-raw.log", args.lines)
        size_mib = (home / "flood-raw.log").stat().st_size / 2**20

    ratio = ours["lines_per_s"] / raw["lines_per_s"]
    print(f"log flood: {args.lines:,} lines ({size_mib:.1f} MiB) on the test bed host over SSH")
    print(
        f"  gpudesk LogFollower : {ours['lines_per_s']:>12,.0f} lines/s  ({ours['seconds']:.2f} s)"
        f"  buffer {ours['buffer_lines']:,} lines ({ours['buffer_mib']:.1f} MiB),"
        f" peak RSS +{ours['peak_rss_delta_mib']:.1f} MiB"
    )
    print(f"  ssh tail -F (raw)   : {raw['lines_per_s']:>12,.0f} lines/s  ({raw['seconds']:.2f} s)")
    print(f"  ratio gpudesk / raw : {ratio:.2f}")
    if args.json:
        args.json.write_text(
            json.dumps({"gpudesk": ours, "raw_ssh": raw, "ratio": ratio}, indent=2)
        )
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
