"""Benchmark: Docker API calls the TUI's container list makes for a submit and one `runs`.

Registers the test bed's sshd as GPU host `bed`, starts a CPU-torch gpudesk container there,
and watches the host's container events twice, each over its own SSH connection and Docker
client, counting the container requests each sends to the engine:

- reference (the old watcher, issue 15): a full relist (`GET /containers/json`, then docker-py
  inspects every container it lists) on every container event;
- now: ``ContainerWatch`` (core/containers/watch.py): one listing when it subscribes, then one
  inspect per container that a list-changing event names, bursts coalesced.

Then runs, as a user would, `gpudesk submit ... -- --steps 2` and `gpudesk runs --host bed`,
then stops and starts the container (events that do change the list), and prints the events
seen and each watcher's requests. Needs the test bed (``scripts/testbed.py up``, as root) and
takes the shared test bed lock itself.

    python bench/container_events.py [--idle 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOCK = "/tmp/gpudesk-bed.lock"
NAME = "bench-events"
LIST = re.compile(r"/containers/json$")
INSPECT = re.compile(r"/containers/[^/]+/json$")


def gpudesk(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "gpudesk", *args],
        capture_output=True, text=True, env=env, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"gpudesk {args[0]} failed: {done.stderr.strip()}")
    return done


class Counted:
    """Counts a Docker client's container requests: listings and single inspects."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        send = client.api.send

        def counting(request: Any, **kw: Any) -> Any:
            path = request.path_url.split("?", 1)[0]
            if request.method == "GET" and LIST.search(path):
                self.counts["list"] += 1
            elif request.method == "GET" and INSPECT.search(path):
                self.counts["inspect"] += 1
            return send(request, **kw)

        client.api.send = counting


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument(
        "--idle", type=int, default=4, help="stopped containers beside it (a relist inspects each)"
    )
    args = parser.parse_args()

    from scripts import testbed

    bed = testbed.Testbed.load() or testbed.up()
    work = Path(tempfile.mkdtemp(prefix="gdev", dir="/tmp"))
    home = work / "h"
    (home / ".ssh").mkdir(parents=True)
    os.environ.update(HOME=str(home), GPUDESK_HOME=str(work / "g"))
    os.environ.pop("SSH_AUTH_SOCK", None)
    env = dict(os.environ)
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (home / ".ssh" / "known_hosts").write_text(bed.ssh_known_hosts_line + "\n")

    import docker

    from gpudesk.core.config import Inventory
    from gpudesk.core.containers import Containers, LaunchSpec
    from gpudesk.core.containers.watch import ContainersChanged, ContainerWatch, WatchChange
    from gpudesk.core.devcontainers import DevContainers
    from gpudesk.core.flavours import Flavour
    from gpudesk.core.fleet import Fleet, connect_blocking
    from tests.integration.bed import bed_host
    from tests.integration.test_runs import ensure_torch_image

    client = docker.DockerClient(base_url=bed.docker_host, timeout=120)
    with open(LOCK, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        names = [NAME] + [f"{NAME}-idle{i}" for i in range(args.idle)]
        for name in names:
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(name).remove(force=True)
        for name in names[1:]:
            client.containers.create(bed.base_image, ["true"], name=name)
        Inventory.load().add(bed_host(bed))
        image = ensure_torch_image(client, bed.base_image)
        Containers(client).launch(
            LaunchSpec(
                flavour=Flavour.SSH, name=NAME, workspace=str(work / "ws"),
                public_key=key.with_suffix(".pub").read_text(), base_image=image,
            ),
            lambda path: Path(path).mkdir(parents=True, exist_ok=True),
        )  # fmt: skip
        fleets = [Fleet.build(Inventory.load()) for _ in range(2)]
        try:
            devs = []
            for fleet in fleets:
                service = fleet.get("bed")
                connect_blocking(service.conn)
                devs.append(DevContainers(service, fleet.inventory))
            ref_dev, new_dev = devs
            ref_count, new_count = (
                Counted(ref_dev.service.docker()),
                Counted(new_dev.service.docker()),
            )

            # The reference: the old FleetState._watch_containers, one full relist per event.
            events: Counter[str] = Counter()
            ref_stream = ref_dev.events()
            ref_dev.list(True)
            seen_ref = threading.Condition()
            ref_last: list[str] = []

            def reference() -> None:
                for event in ref_stream:
                    events[event.action.split(":")[0]] += 1
                    ref_dev.list(True)
                    with seen_ref:
                        ref_last.append(event.action)
                        seen_ref.notify_all()

            threading.Thread(target=reference, daemon=True).start()
            seen_new = threading.Condition()
            new_states: list[str] = []

            def report(change: WatchChange) -> None:
                if isinstance(change, ContainersChanged):
                    with seen_new:
                        new_states.extend(i.state for i in change.updated if i.name == NAME)
                        seen_new.notify_all()

            watch = ContainerWatch(lambda: new_dev, report)
            threading.Thread(target=watch.run, daemon=True).start()
            while watch.lists == 0:
                time.sleep(0.05)

            gpudesk("submit", "--host", "bed", "--container", NAME, "textcls", "--nproc", "1",
                    "--name", "bench1", "--", "--steps", "2", env=env)  # fmt: skip
            gpudesk("runs", "--host", "bed", env=env)
            # A marker both watchers must see: everything before it has been handled.
            client.containers.get(NAME).stop(timeout=1)
            with seen_ref:
                seen_ref.wait_for(lambda: "stop" in ref_last, 120)
            with seen_new:
                seen_new.wait_for(lambda: "exited" in new_states, 120)
            submit_runs = {
                "events": dict(events),
                "reference": dict(ref_count.counts),
                "now": dict(new_count.counts),
            }
            client.containers.get(NAME).start()
            with seen_new:
                seen_new.wait_for(lambda: new_states[-1:] == ["running"], 120)
            with seen_ref:
                seen_ref.wait_for(lambda: "start" in ref_last, 120)
            containers = len(client.containers.list(all=True))
            total = {
                "events": dict(events),
                "reference": dict(ref_count.counts),
                "now": dict(new_count.counts),
            }
            watch.stop()
            ref_stream.close()
        finally:
            for fleet in fleets:
                fleet.close()
            for name in names:
                with contextlib.suppress(docker.errors.NotFound):
                    client.containers.get(name).remove(force=True)
    result = {"containers_on_engine": containers, "through_stop": submit_runs, "with_start": total}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
