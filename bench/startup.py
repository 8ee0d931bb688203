"""Benchmark: start-up, each figure beside its reference in the same run, as a ratio.

Whole-process wall times (spawn to exit, or spawn to first frame), runs interleaved so a busy
neighbour slows reference and subject alike; medians of ``--runs``:

1. ``gpudesk --version`` and ``gpudesk --help`` against ``python -c pass``;
2. the TUI's first frame (headless, 160x48, a hosts.toml of ``--hosts`` hosts that cannot be
   reached) against a bare Textual app with a Header, a DataTable and a Footer.

A first frame is the first screen update Textual renders for the screen the user will see
(``App._display`` is wrapped in the child process to notice it; app code is untouched); the
child prints its time and exits at once, so both are measured alike.

    .venv/bin/python bench/startup.py [--runs 7] [--hosts 16]

Targets (issue 15): --version <= 0.1 s; first frame <= 1.2x the bare app.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE = (160, 48)

# The child for a first frame: ``frame bare`` or ``frame gpudesk``.
CHILD = r"""
import os, sys, time
kind = sys.argv[1]
size = (int(sys.argv[2]), int(sys.argv[3]))
from textual.app import App

HEAVY = ("docker", "paramiko", "requests", "torch")

def done():
    loaded = sorted(m for m in HEAVY if m in sys.modules)
    sys.stdout.write("frame " + ",".join(loaded) + "\n")
    sys.stdout.flush()
    os._exit(0)

original = App._display

def display(self, screen, renderable):
    original(self, screen, renderable)
    if renderable is not None and ready(self, screen):
        done()

App._display = display

if kind == "bare":
    from textual.widgets import DataTable, Footer, Header

    class Bare(App):
        def compose(self):
            yield Header()
            yield DataTable()
            yield Footer()

        def on_mount(self):
            table = self.query_one(DataTable)
            table.add_columns("host", "state", "GPUs", "containers")
            for i in range(16):
                table.add_row(f"host-{i}", "connecting", "-", "-")

    def ready(app, screen):
        return screen is app.screen and screen.is_mounted

    app = Bare()
else:
    from gpudesk.app.app import GpudeskApp

    def ready(app, screen):
        from gpudesk.app.screens.fleet import FleetScreen

        return isinstance(screen, FleetScreen)

    app = GpudeskApp()
app.run(headless=True, size=size)
"""


def timed(argv: list[str], env: dict[str, str], until_line: bool = False) -> float:
    """Seconds from spawn to exit (or to the child's first stdout line)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT, text=True
    )
    if until_line:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        elapsed = time.perf_counter() - start
        _, err = proc.communicate(timeout=60)
        word, _, loaded = line.strip().partition(" ")
        if word != "frame":
            raise SystemExit(f"bench: {argv[-3]} child printed no frame: {err[-2000:]}")
        if loaded:
            raise SystemExit(f"bench: {argv[-3]} imported {loaded} before its first frame")
        return elapsed
    _, err = proc.communicate(timeout=60)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"bench: {argv} failed ({proc.returncode}): {err[-2000:]}")
    return elapsed


def write_hosts(home: Path, count: int) -> None:
    # Port 9 on loopback refuses at once; nothing should even try before the first frame.
    lines = ["# bench hosts"]
    for i in range(count):
        lines += [f"[hosts.gpu-{i:03d}]", 'hostname = "127.0.0.1"', "port = 9", ""]
    home.mkdir(parents=True, exist_ok=True)
    (home / "hosts.toml").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--hosts", type=int, default=16)
    opts = parser.parse_args()

    python = sys.executable
    gpudesk = str(Path(python).with_name("gpudesk"))
    with tempfile.TemporaryDirectory(prefix="gpudesk-bench-") as tmp:
        home = Path(tmp) / "home"
        write_hosts(home, opts.hosts)
        env = {
            **os.environ,
            "GPUDESK_HOME": str(home),
            "HOME": tmp,
            "GPUDESK_SIMULATE_GPUS": "",
        }
        # Installed packages come with their .pyc files (pip compiles them); an editable
        # checkout run with PYTHONDONTWRITEBYTECODE would compile gpudesk on every start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        child = [python, "-c", CHILD]
        cases: dict[str, tuple[list[str], bool]] = {
            "python -c pass": ([python, "-c", "pass"], False),
            "gpudesk --version": ([gpudesk, "--version"], False),
            "gpudesk --help": ([gpudesk, "--help"], False),
            "gpudesk ps --help": ([gpudesk, "ps", "--help"], False),
            "bare Textual first frame": ([*child, "bare", *map(str, SIZE)], True),
            "gpudesk first frame": ([*child, "gpudesk", *map(str, SIZE)], True),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for argv, line in cases.values():  # warm the page cache and .pyc files
            timed(argv, env, line)
        for _ in range(opts.runs):
            for name, (argv, line) in cases.items():
                times[name].append(timed(argv, env, line))

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"python {platform.python_version()}, medians of {opts.runs} interleaved runs")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    rows = [
        ("gpudesk --version", "python -c pass", "<= 0.1 s"),
        ("gpudesk --help", "python -c pass", "-"),
        ("gpudesk ps --help", "python -c pass", "-"),
        ("gpudesk first frame", "bare Textual first frame", "<= 1.2x"),
    ]
    print(f"{'figure':<22} {'s':>7}  {'reference':<26} {'s':>7}  {'ratio':>6}  target")
    for subject, reference, target in rows:
        ratio = med[subject] / med[reference]
        print(
            f"{subject:<22} {med[subject]:7.3f}  {reference:<26} {med[reference]:7.3f}  "
            f"{ratio:5.2f}x  {target}"
        )
    print()
    print("all runs (s):")
    for name, values in times.items():
        print(f"  {name:<26} " + " ".join(f"{v:.3f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
