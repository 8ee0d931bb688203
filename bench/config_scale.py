"""Benchmark: hosts.toml with 1,000 and 4,000 hosts: load, save, and adding one host.

For each size, in one run: ``tomllib.loads`` of the same text (the reference: parsing alone),
``Inventory.load``, ``Inventory.save`` of the loaded inventory into the file (comments kept),
``Inventory.add`` of one more host and ``Inventory.remove`` of it again (each: load, edit,
atomic write). Medians of ``--runs``.

    .venv/bin/python bench/config_scale.py [--sizes 1000 4000] [--runs 5]

Target (issue 15): 4,000 hosts load in under 0.2 s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpudesk.core.config import Host, Inventory, Paths  # noqa: E402

TARGET_LOAD_S = 0.2


def hosts_text(count: int) -> str:
    lines = ["# gpudesk hosts; edit freely or use `gpudesk hosts add/rm`.", ""]
    for i in range(count):
        lines += [
            f"# rack {i // 40}, slot {i % 40}",
            f"[hosts.gpu-{i:05d}]",
            f'hostname = "10.{i // 65536}.{i // 256 % 256}.{i % 256}"',
            'user = "train"',
            *(["port = 2222"] if i % 3 == 0 else []),
            "",
        ]
    return "\n".join(lines)


def median_time(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; medians of {opts.runs} runs")
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print(
        f"{'hosts':>6} {'tomllib.loads':>14} {'load':>8} {'ratio':>6} {'save':>8} "
        f"{'add one':>8} {'rm one':>8}  target (load)"
    )
    for size in opts.sizes:
        with tempfile.TemporaryDirectory(prefix="gpudesk-cfg-") as tmp:
            paths = Paths(Path(tmp))
            text = hosts_text(size)
            paths.hosts_file.write_text(text)
            parse = median_time(lambda text=text: tomllib.loads(text), opts.runs)
            load = median_time(lambda paths=paths: Inventory.load(paths), opts.runs)
            inventory = Inventory.load(paths)
            assert len(inventory.hosts) == size + 1  # and localhost
            save = median_time(inventory.save, opts.runs)
            assert paths.hosts_file.read_text() == text  # nothing to change: byte for byte

            adds, removes = [], []
            for _ in range(opts.runs):
                paths.hosts_file.write_text(text)
                start = time.perf_counter()
                fresh = Inventory.load(paths)
                fresh.add(Host(name="extra", hostname="10.99.0.1"))
                middle = time.perf_counter()
                Inventory.load(paths).remove("extra")
                adds.append(middle - start)
                removes.append(time.perf_counter() - middle)
            assert Inventory.load(paths).hosts == inventory.hosts  # add then remove: as before
            add, remove = statistics.median(adds), statistics.median(removes)
            verdict = "ok" if load < TARGET_LOAD_S else "MISSED"
            print(
                f"{size:>6} {parse:14.3f} {load:8.3f} {load / parse:5.2f}x {save:8.3f} "
                f"{add:8.3f} {remove:8.3f}  < {TARGET_LOAD_S} s: {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
