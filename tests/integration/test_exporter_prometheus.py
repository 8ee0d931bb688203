"""A real Prometheus server (Debian's package) scrapes `gpudesk exporter` as the README runs it,
with the README's scrape config, against the test bed host over real SSH with 8 simulated GPUs.

Every scraped point of every GPU series must equal the agent's own sample for the sequence
number scraped with it: the reference is the agent's simulated backend run to that number in
this process (gpudesk/payload/gpu_agent.py, deterministic per seq), converted to dcgm-exporter's
units here; the path under test is agent -> SSH -> GpuStream -> board -> collector -> HTTP ->
Prometheus' parser and TSDB -> its query API.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpudesk.core.config import Inventory
from gpudesk.payload import gpu_agent
from scripts import testbed as testbed_module
from tests.integration.bed import bed_host
from tests.integration.interrupt import interruptible
from tests.integration.pace import SLOW_OP_S, Pace

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="needs Debian's prometheus package (scripts/testbed.py installs it)",
)

ROOT = Path(__file__).parents[2]
MIB = 2**20
GPUS = 8
SCRAPES = 4  # distinct agent samples to see scraped before comparing them all


def readme_usage_line() -> list[str]:
    """The Usage block's exporter line, without its comment."""
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("gpudesk exporter "):
            return shlex.split(line, comments=True)
    raise AssertionError("the README's Usage has no gpudesk exporter line")


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("### Prometheus exporter\n")
    return text[start : text.index("\n### ", start + 1)]


def fenced(section: str, lang: str) -> str:
    start = section.index(f"```{lang}\n") + len(lang) + 4
    return section[start : section.index("```", start)]


def query(port: int, promql: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def points(port: int, promql: str) -> dict[tuple[str, float], float]:
    """``promql`` (a range selector) as {(gpu label, scrape time): value}."""
    out = {}
    for series in query(port, promql):
        for ts, value in series["values"]:
            out[(series["metric"].get("gpu", ""), float(ts))] = float(value)
    return out


def agent_sample(seq: int) -> dict[str, Any]:
    backend = gpu_agent.SimBackend(GPUS)
    for _ in range(seq):
        backend.collect()
    return backend.collect()


EXPECTED = {
    "DCGM_FI_DEV_GPU_UTIL": lambda g: g["util_gpu"],
    "DCGM_FI_DEV_MEM_COPY_UTIL": lambda g: g["util_mem"],
    "DCGM_FI_DEV_FB_USED": lambda g: g["mem_used"] / MIB,
    "DCGM_FI_DEV_FB_FREE": lambda g: (g["mem_total"] - g["mem_used"]) / MIB,
    "DCGM_FI_DEV_GPU_TEMP": lambda g: g["temperature"],
    "DCGM_FI_DEV_POWER_USAGE": lambda g: g["power_draw"],
    "DCGM_FI_DEV_SM_CLOCK": lambda g: g["clock_sm"],
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": lambda g: g["ecc_errors"],
}


@pytest.fixture
def bed(testbed: Any, known_hosts_file: Path) -> str:
    inventory = Inventory.load()
    inventory.add(bed_host(testbed))
    # A host that is down: nothing listens on its port.
    inventory.add(bed_host(testbed, port=testbed_module.free_port(), name="gone"))
    return "bed"


@pytest.fixture
def container(testbed: Any, docker_client: Any) -> Iterator[Any]:
    """A running container labelled as gpudesk's, on the bed host (removed at the end)."""
    name = f"gdexp-{uuid.uuid4().hex[:8]}"
    created = docker_client.containers.run(
        testbed.base_image, ["sleep", "600"], name=name, labels={"io.gpudesk.flavour": "ssh"},
        detach=True,
    )  # fmt: skip
    try:
        yield created
    finally:
        created.remove(force=True)


@pytest.fixture
def exporter(bed: str, container: Any) -> Iterator[tuple[subprocess.Popen[str], str]]:
    [line] = [ln for ln in fenced(readme_section(), "sh").splitlines() if ln.strip()]
    argv = shlex.split(line)
    assert argv == ["gpudesk", "exporter"]  # the README's line, run as written
    gpudesk = str(Path(sys.executable).with_name("gpudesk"))
    env = {**os.environ, "GPUDESK_SIMULATE_GPUS": str(GPUS)}
    proc = subprocess.Popen(
        interruptible([gpudesk, *argv[1:]]),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        yield proc, first
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[int]:
    config = tmp_path / "prometheus.yml"
    # The README's scrape config as written, with a 1 s interval for the test.
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + fenced(readme_section(), "yaml")
    )
    port = testbed_module.free_port()
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready = f"http://127.0.0.1:{port}/-/ready"
        while True:  # until it answers, or fails: the test's timeout bounds a hang
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(ready, timeout=30) as response:
                    if response.status == 200:
                        break
            except OSError:  # not listening yet, or 503 while it starts
                pass
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def scraped_seqs(port: int) -> dict[float, int]:
    """{scrape time: agent seq} of every scrape of the bed host so far."""
    got = points(port, 'gpudesk_gpu_sample_seq{host="bed"}[1h]')
    return {ts: int(value) for (_, ts), value in got.items()}


@pytest.mark.timeout(600)
def test_prometheus_scrapes_the_agents_samples_for_8_simulated_gpus(
    exporter: tuple[subprocess.Popen[str], str], prometheus: int, container: Any
) -> None:
    proc, first = exporter
    assert first == (
        "gpudesk: exporter on http://127.0.0.1:9835/metrics for bed, gone, localhost; "
        f"SIMULATED GPUs ({GPUS} per host)\n"
    )
    pace = Pace()
    while True:  # Prometheus has no event to wait on: poll its API while scrapes progress
        seqs = scraped_seqs(prometheus)
        if len(set(seqs.values())) >= SCRAPES:
            break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        pace.saw(len(seqs))
        assert not pace.stalled(), f"no new scrapes of the bed host: {pace.describe()}"
        time.sleep(0.5)

    [up] = query(prometheus, 'up{job="gpudesk"}')
    assert up["value"][1] == "1"
    [host_up] = query(prometheus, 'gpudesk_host_up{host="bed"}')
    assert host_up["value"][1] == "1"
    assert query(prometheus, 'gpudesk_simulated{host="bed"}')[0]["value"][1] == "1"
    # The host that is down is up 0, and nothing else.
    gone = query(prometheus, '{host="gone"}')
    assert [(s["metric"]["__name__"], s["value"][1]) for s in gone] == [("gpudesk_host_up", "0")]
    assert query(prometheus, 'DCGM_FI_DEV_FAN_SPEED{host="bed"}') == []  # N/A: left out

    labels = [s["metric"] for s in query(prometheus, 'DCGM_FI_DEV_GPU_UTIL{host="bed"}')]
    assert sorted(labels, key=lambda m: int(m["gpu"])) == [
        {
            "__name__": "DCGM_FI_DEV_GPU_UTIL",
            "job": "gpudesk",
            "instance": "127.0.0.1:9835",
            "host": "bed",
            "gpu": str(i),
            "uuid": f"GPU-00000000-0000-0000-0000-{i:012d}",
            "modelName": "NVIDIA H100 80GB HBM3",
            "simulated": "true",
        }
        for i in range(GPUS)
    ]

    seqs = scraped_seqs(prometheus)
    compared = 0
    for name, expected in EXPECTED.items():
        got = points(prometheus, f'{name}{{host="bed"}}[1h]')
        for ts, seq in seqs.items():
            sample = agent_sample(seq)
            for gpu in sample["gpus"]:
                key = (str(gpu["index"]), ts)
                assert got[key] == expected(gpu), f"{name} gpu {gpu['index']} seq {seq}"
                compared += 1
        # Nothing scraped that the reference does not account for.
        assert {ts for _, ts in got} == set(seqs), name
    assert compared >= len(EXPECTED) * GPUS * SCRAPES

    # GPU memory per container: the agent's processes summed by container, at every scrape.
    got_mem: dict[tuple[str, float], float] = {}
    for series in query(prometheus, 'gpudesk_container_gpu_memory_used_bytes{host="bed"}[1h]'):
        for ts, value in series["values"]:
            got_mem[(series["metric"]["container"], float(ts))] = float(value)
    want_mem: dict[tuple[str, float], float] = {}
    for ts, seq in seqs.items():
        for p in agent_sample(seq)["processes"]:
            key = (p["container_name"], ts)
            want_mem[key] = want_mem.get(key, 0) + p["used_memory"]
    assert got_mem == want_mem

    # Every panel of the documented Grafana dashboard has data for the bed host.
    dashboard = json.loads((ROOT / "docs/grafana-dashboard.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$host", "bed").replace("$gpu", ".*")
            assert query(prometheus, expr), f"{panel['title']}: {expr} has no data"

    # The container list comes from the container watch: its row, then its Docker event.
    selector = f'gpudesk_container_running{{host="bed", container="{container.name}"}}'
    [row] = query(prometheus, selector)
    assert (row["metric"]["state"], row["value"][1]) == ("running", "1")
    container.kill()
    since = time.monotonic()
    while True:  # the event reaches the exporter, then the next scrape carries it
        rows = query(prometheus, selector)
        if [(r["metric"]["state"], r["value"][1]) for r in rows] == [("exited", "0")]:
            break
        assert time.monotonic() - since < SLOW_OP_S, f"still {rows} after the kill"
        time.sleep(0.5)

    proc.send_signal(signal.SIGINT)  # ctrl+c
    _, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")

    # The Usage block's line, as written, serves the same address (SIGTERM stops it too).
    argv = readme_usage_line()
    assert argv == ["gpudesk", "exporter", "--listen", "127.0.0.1:9835"]
    gpudesk = str(Path(sys.executable).with_name("gpudesk"))
    env = {**os.environ, "GPUDESK_SIMULATE_GPUS": str(GPUS)}
    again = subprocess.Popen(
        [gpudesk, *argv[1:]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert again.stdout is not None
        assert again.stdout.readline() == first
        with urllib.request.urlopen("http://127.0.0.1:9835/metrics", timeout=30) as response:
            assert 'gpudesk_host_up{host="bed"}' in response.read().decode()
        again.terminate()
        _, err = again.communicate(timeout=60)
        assert (again.returncode, err) == (0, "")
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
