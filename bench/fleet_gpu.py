"""Benchmark: N hosts streaming simulated 8-GPU samples at 1 Hz into the real app, headless.

Starts K OpenSSH servers (the test bed's helpers), each also listening on its own loopback
address 127.0.0.x, gives the inventory N hosts spread over them (several host entries per sshd
when N > K: each is still its own SSH connection, agent and stream), runs the GPU agent for
every host in simulated mode over real SSH, and measures, in one run:

1. reference: a bare paramiko reader (one ``SshConnection`` per host reading the agent's
   lines, no parsing, no UI) for S seconds;
2. the real ``GpudeskApp`` (Fleet screen, ``run_test`` headless) with the same N hosts for
   S seconds.

For each it reports the operator process's CPU time (all threads) per host-sample and as % of
one core; for the app also the sample-to-screen latency: the agent's ``ts`` to the moment the
Fleet list was repainted after ``FleetScreen.show_host`` updated that host's row (the
method is wrapped here; app code is untouched); and, while the samples stream, the key-press-
to-frame latency: every ``--key-every`` seconds the pilot presses down/up in the host list and
the time to the next refresh after the key was handled is recorded. Agents run on this
machine, so their clock is the operator's.

    sudo .venv/bin/python bench/fleet_gpu.py [--hosts 32] [--sshds 32] [--seconds 60] [--gpus 8]
    sudo .venv/bin/python bench/fleet_gpu.py --hosts 256 --sshds 32 --seconds 30

Needs root and /usr/sbin/sshd (as the test bed does); takes the test bed lock unless
``--no-lock`` (its sshd are its own; the shared dockerd is only read). Targets: 32
hosts under 10 % of one core; 256 hosts under 100 % of one core; p95 sample-to-screen under
250 ms; key-press-to-frame p95 under 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fcntl
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_CPU_PERCENT_PER_32 = 10.0  # 32 hosts: 10 %; the 256-host target is 100 % of a core
TARGET_P95_MS = 250.0
TARGET_KEY_MS = 100.0
LOCK = "/tmp/gpudesk-bed.lock"


def startup_s(hosts: int) -> float:
    """How long every host may take to send its first sample: this machine also runs every
    host's sshd and agent, whose start-up (a handshake and a Python start each) is paid on the
    same 2 cores, so it grows with the fleet."""
    return max(120.0, 1.5 * hosts)


def cpu_target(hosts: int) -> float:
    return 100.0 if hosts > 32 else TARGET_CPU_PERCENT_PER_32


def load_testbed() -> ModuleType:
    sys.path.insert(0, str(ROOT))
    from scripts import testbed

    return testbed


NO_DOCKER = """#!/bin/sh
echo "docker: not found" >&2
exit 127
"""


def start_sshds(testbed: ModuleType, count: int, docker: bool = True) -> list[tuple[Any, str]]:
    """``count`` sshd, each on 127.0.0.1 (readiness check) and 127.0.0.(k+2): (sshd, addr).

    Without ``docker`` the hosts look like GPU hosts with no Docker installed: their sessions
    find a ``docker`` that says "not found" first on PATH, so the app's engine probes and
    container watches fail at once and back off (this machine also runs every host's side,
    and 256 real ``docker system dial-stdio`` processes and event streams on its one dockerd
    are more than its 2 cores can serve alongside the agents)."""
    bed = testbed.Testbed.load()
    docker_host = bed.docker_host if bed else "unix:///var/run/docker.sock"
    path_env = ""
    if not docker:
        bin_dir = testbed.RUN_DIR / "sshd" / "bench-no-docker"
        bin_dir.mkdir(parents=True, exist_ok=True)
        (bin_dir / "docker").write_text(NO_DOCKER)
        (bin_dir / "docker").chmod(0o755)
        path_env = f" PATH={bin_dir}:/usr/local/bin:/usr/bin:/bin"
    started: list[tuple[Any, str]] = []
    try:
        for k in range(count):
            addr = f"127.0.0.{k + 2}"
            sshd = testbed.Sshd(
                testbed.RUN_DIR / "sshd" / f"bench-{k}", testbed.free_port(), docker_host
            )
            sshd.prepare()
            config = sshd.config.read_text().replace(
                "ListenAddress 127.0.0.1\n", f"ListenAddress 127.0.0.1\nListenAddress {addr}\n"
            )
            config = config.replace(
                f"SetEnv DOCKER_HOST={docker_host}", f"SetEnv DOCKER_HOST={docker_host}{path_env}"
            )
            sshd.config.write_text(config)
            sshd.start()
            started.append((sshd, addr))
    except BaseException:
        stop_sshds(started)
        raise
    return started


def stop_sshds(sshds: list[tuple[Any, str]]) -> None:
    for sshd, _ in sshds:
        sshd.stop()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# ------------------------------------------------------------------------------ reference


def bare_reader(hosts: list[Any], paths: Any, gpus: int, seconds: float) -> dict[str, float]:
    """Read the same agent streams with nothing but paramiko: CPU per received line."""
    from gpudesk.core.gpu.stream import agent_command, agent_source
    from gpudesk.core.ssh import SshConnection, SshError

    command, source = agent_command(1.0, gpus), agent_source()
    counts = [0] * len(hosts)
    counting = threading.Event()
    first = [threading.Event() for _ in hosts]
    conns = [SshConnection(host, paths) for host in hosts]
    closers: list[Any] = []

    errors: list[str] = []

    def read(i: int) -> None:
        try:
            read_one(i)
        except Exception as exc:  # said when the bench gives up on this reader
            errors.append(f"{hosts[i].name}: {type(exc).__name__}: {exc}")

    def read_one(i: int) -> None:
        conn = conns[i]
        for attempt in range(5):  # as the app's own backoff would: a burst can drop a handshake
            try:
                conn.connect_once()
                break
            except SshError:
                time.sleep(1.0 + attempt)
        with conn.open_lines(command, source) as lines:
            closers.append(lines.close)
            for line in lines:
                if line:
                    first[i].set()
                    if counting.is_set():
                        counts[i] += 1

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(len(hosts))]
    for t in threads:
        t.start()
    for event in first:
        if not event.wait(startup_s(len(hosts))):
            raise SystemExit(
                f"bench: a reference reader got no sample in time: {errors[:3] or 'no error'}"
            )
    time.sleep(2.0)  # let the startup burst (key exchange, agent start) settle
    cpu0, wall0 = time.process_time(), time.monotonic()
    counting.set()
    time.sleep(seconds)
    counting.clear()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    for close in closers:
        close()
    for conn in conns:
        conn.close()
    for t in threads:
        t.join(timeout=10)
    samples = sum(counts)
    return {"cpu_s": cpu, "wall_s": wall, "samples": samples}


# ------------------------------------------------------------------------------ the app


async def run_app(
    n_hosts: int,
    seconds: float,
    size: tuple[int, int],
    profile: str | None = None,
    key_every: float = 0.5,
) -> dict[str, Any]:
    from textual import events

    from gpudesk.app.app import GpudeskApp
    from gpudesk.app.messages import GpuUpdate
    from gpudesk.app.screens.fleet import FleetScreen
    from gpudesk.app.widgets.host_list import HostList
    from gpudesk.core.config import LOCALHOST, Inventory
    from gpudesk.core.fleet import Fleet

    def fleet_without_localhost(on_status: Any) -> Fleet:
        # Only the benchmark's SSH hosts: the built-in localhost would add a local agent
        # and a local Docker watcher that are not part of what is measured.
        fleet = Fleet.build(Inventory.load(), on_status=on_status)
        local = fleet.services.pop(LOCALHOST, None)
        if local is not None:
            local.close()
        return fleet

    latencies: list[float] = []
    key_latencies: list[float] = []
    measuring = threading.Event()
    received = [0]
    streaming: set[str] = set()
    all_streaming = asyncio.Event()
    seen: dict[str, float] = {}
    original = FleetScreen.show_host

    def timed_show_host(self: FleetScreen, name: str) -> None:
        original(self, name)
        record(self, name)

    def record(self: FleetScreen, name: str) -> None:
        model = self.desk.state.models.get(name)
        sample = model.gpu if model is not None else None
        if sample is None or seen.get(name) == sample.ts:
            return  # not a new sample (a status or engine update)
        seen[name] = sample.ts
        if not measuring.is_set():
            return
        ts = sample.ts

        def painted() -> None:
            latencies.append((time.time() - ts) * 1000.0)

        self.call_after_refresh(painted)

    def hook(message: object) -> None:
        if isinstance(message, GpuUpdate):
            if measuring.is_set():
                received[0] += 1
            if message.host not in streaming:
                streaming.add(message.host)
                if len(streaming) == n_hosts:
                    all_streaming.set()

    original = FleetScreen.show_host
    FleetScreen.show_host = timed_show_host  # type: ignore[method-assign]
    try:
        app = GpudeskApp(fleet_factory=fleet_without_localhost)
        async with app.run_test(size=size, message_hook=hook) as pilot:
            try:
                try:
                    await asyncio.wait_for(all_streaming.wait(), startup_s(n_hosts))
                except TimeoutError:
                    states = {
                        name: m.status.state.value for name, m in app.models.items()
                    }  # for the error message
                    raise SystemExit(
                        f"bench: only {len(streaming)}/{n_hosts} hosts streamed: {states}"
                    ) from None
                await asyncio.sleep(5.0)  # startup burst: connections, engine probes, listings
                await pilot.pause()
                profiler = cProfile.Profile() if profile else None
                cpu0, wall0 = time.process_time(), time.monotonic()
                measuring.set()
                if profiler is not None:
                    profiler.enable()  # the event loop's thread: where the UI work runs
                deadline = time.monotonic() + seconds
                presses = 0
                host_list = app.screen.query_one(HostList)
                host_list.focus()
                moved = host_list.action_cursor
                waiting: list[asyncio.Future[float]] = []

                def cursor(delta: int) -> None:
                    # The key's action ran: the frame after it is the one the user sees.
                    moved(delta)
                    if waiting:
                        future = waiting.pop()
                        host_list.call_after_refresh(
                            lambda: future.done() or future.set_result(time.perf_counter())
                        )

                host_list.action_cursor = cursor  # type: ignore[method-assign]
                while time.monotonic() < deadline:
                    await asyncio.sleep(key_every)
                    # A key through the driver, as a terminal's would arrive (not the pilot's
                    # press(), which also waits for the process to go idle).
                    painted: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    waiting.append(painted)
                    key = "down" if presses % 2 == 0 else "up"
                    start = time.perf_counter()
                    app._driver.send_message(events.Key(key, None))  # type: ignore[union-attr]
                    key_latencies.append((await asyncio.wait_for(painted, 30) - start) * 1000.0)
                    presses += 1
                if profiler is not None:
                    profiler.disable()
                measuring.clear()
                cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
                if profiler is not None and profile:
                    profiler.dump_stats(profile)
                assert isinstance(app.screen, FleetScreen)
                cells = [app.screen.query_one(HostList).cells(name)[5] for name in app.models]
                summary = str(app.screen.query_one("#fleet-summary").render())
                states = [m.status.state for m in app.models.values()]
            finally:
                await app.action_quit()
    finally:
        FleetScreen.show_host = original  # type: ignore[method-assign]
    return {
        "cpu_s": cpu,
        "wall_s": wall,
        "samples": received[0],
        "latencies": latencies,
        "key_latencies": key_latencies,
        "cells": cells,
        "summary": summary,
        "connected": sum(s.value == "connected" for s in states),
    }


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=32, help="number of hosts (max 1000)")
    parser.add_argument(
        "--sshds",
        type=int,
        default=0,
        help="sshd servers to spread them over (default: one each, max 250)",
    )
    parser.add_argument(
        "--no-lock",
        action="store_true",
        help="do not wait for the test bed lock (the bench starts its own sshd and only reads "
        "the shared dockerd)",
    )
    parser.add_argument("--key-every", type=float, default=0.5, help="seconds between key presses")
    parser.add_argument("--seconds", type=float, default=60.0, help="measured seconds per phase")
    parser.add_argument("--gpus", type=int, default=8, help="simulated GPUs per host")
    parser.add_argument(
        "--size", default="160x50", help="terminal size of the headless app (COLSxROWS)"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip the bare reader")
    parser.add_argument(
        "--no-docker",
        action="store_true",
        help="hosts without Docker (see start_sshds): GPU streaming alone, for fleets larger "
        "than this machine can also serve the Docker side of",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the app's event-loop thread into FILE"
    )
    args = parser.parse_args(argv)
    sshd_count = args.sshds or args.hosts
    if not 1 <= args.hosts <= 1000 or not 1 <= sshd_count <= min(250, args.hosts):
        parser.error("--hosts must be 1 to 1000 and --sshds 1 to min(250, hosts)")
    cols, rows = (int(v) for v in args.size.lower().split("x"))

    testbed = load_testbed()
    if os.geteuid() != 0 or not Path("/usr/sbin/sshd").exists():
        print("bench: needs root and /usr/sbin/sshd (as scripts/testbed.py does)", file=sys.stderr)
        return 2

    home = Path(tempfile.mkdtemp(prefix="gpudesk-bench-"))
    (home / ".ssh").mkdir()
    os.environ["HOME"] = str(home)
    os.environ["GPUDESK_HOME"] = str(home / "gpudesk")
    os.environ["GPUDESK_SIMULATE_GPUS"] = str(args.gpus)
    os.environ.pop("SSH_AUTH_SOCK", None)
    os.environ.pop("XDG_CONFIG_HOME", None)

    from gpudesk.core.config import Host, Inventory, Paths

    lock = open(LOCK, "a")  # noqa: SIM115 - held for the whole run
    if not args.no_lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
    print(f"bench: starting {sshd_count} sshd on 127.0.0.2..", file=sys.stderr, flush=True)
    sshds = start_sshds(testbed, sshd_count, docker=not args.no_docker)
    try:
        known = []
        for sshd, addr in sshds:
            keytype, key = sshd.host_public_key().split()[:2]
            known.append(f"[{addr}]:{sshd.port} {keytype} {key}")
        inventory = Inventory.load()
        hosts = []
        for k in range(args.hosts):
            sshd, addr = sshds[k % len(sshds)]
            host = Host(
                name=f"gpu{k:03d}",
                hostname=addr,
                user="root",
                port=sshd.port,
                identity=str(sshd.client_key),
            )
            hosts.append(host)
        for host in hosts:
            inventory.hosts.append(host)
        inventory.save()
        (home / ".ssh" / "known_hosts").write_text("\n".join(known) + "\n")
        paths = Paths.from_env()

        ref: dict[str, float] | None = None
        if not args.no_reference:
            print(f"bench: reference reader, {args.seconds:g} s", file=sys.stderr, flush=True)
            ref = bare_reader(hosts, paths, args.gpus, args.seconds)
        print(f"bench: headless app, {args.seconds:g} s", file=sys.stderr, flush=True)
        res = asyncio.run(
            run_app(args.hosts, args.seconds, (cols, rows), args.profile, args.key_every)
        )
    finally:
        stop_sshds(sshds)
        lock.close()

    lat = res["latencies"]
    app_ms = 1000.0 * res["cpu_s"] / max(1, res["samples"])
    app_pct = 100.0 * res["cpu_s"] / res["wall_s"]
    p50, p95, pmax = percentile(lat, 0.5), percentile(lat, 0.95), max(lat, default=float("nan"))
    print()
    print(
        f"fleet_gpu: {args.hosts} hosts ({sshd_count} sshd) x {args.gpus} simulated GPUs at 1 Hz, "
        f"{args.seconds:g} s per phase, terminal {cols}x{rows}"
        + (", hosts without Docker (--no-docker)" if args.no_docker else "")
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"app end state: {res['connected']}/{args.hosts} connected; {res['summary']}")
    print(f"a Fleet GPU cell: {res['cells'][0]}")
    print()
    header = f"{'':<28}{'samples':>9}{'CPU s':>9}{'ms CPU/sample':>15}{'% of 1 core':>13}"
    print(header)
    print("-" * len(header))
    if ref is not None:
        ref_ms = 1000.0 * ref["cpu_s"] / max(1, ref["samples"])
        ref_pct = 100.0 * ref["cpu_s"] / ref["wall_s"]
        print(
            f"{'bare paramiko reader':<28}{ref['samples']:>9.0f}{ref['cpu_s']:>9.2f}"
            f"{ref_ms:>15.3f}{ref_pct:>13.1f}"
        )
    print(
        f"{'gpudesk app (headless)':<28}{res['samples']:>9}{res['cpu_s']:>9.2f}"
        f"{app_ms:>15.3f}{app_pct:>13.1f}"
    )
    if ref is not None and ref["samples"]:
        print(f"{'ratio app / bare reader':<28}{'':>9}{'':>9}{app_ms / ref_ms:>14.1f}x")
    print()
    print(
        f"sample-to-screen latency ({len(lat)} samples): p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {pmax:.0f} ms"
    )
    keys = res["key_latencies"]
    k50, k95 = percentile(keys, 0.5), percentile(keys, 0.95)
    print(
        f"key-press-to-frame latency while streaming ({len(keys)} presses): p50 {k50:.0f} ms, "
        f"p95 {k95:.0f} ms, max {max(keys, default=float('nan')):.0f} ms"
    )
    target_cpu = cpu_target(args.hosts)
    ok_cpu, ok_lat, ok_key = app_pct < target_cpu, p95 < TARGET_P95_MS, k95 < TARGET_KEY_MS
    print(
        f"target: < {target_cpu:g} % of one core: {'met' if ok_cpu else 'MISSED'}; "
        f"p95 < {TARGET_P95_MS:g} ms: {'met' if ok_lat else 'MISSED'}; "
        f"key p95 < {TARGET_KEY_MS:g} ms: {'met' if ok_key else 'MISSED'}"
    )
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if res["samples"] < 0.9 * args.hosts * args.seconds:
        print(
            f"warning: {res['samples']} samples, expected about {args.hosts * args.seconds:.0f}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
