"""The exporter's text exposition, parsed back with prometheus_client's own parser, against an
independent reading of the agent's raw samples; hostile label values; the listener's errors."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.request
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gpudesk.core.connection import ConnState
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.flavours import Flavour
from gpudesk.core.gpu.sample import GpuDevice, GpuProcess, GpuSample, parse_sample
from gpudesk.core.metrics.board import HostSnapshot, MetricsBoard
from gpudesk.core.metrics.collect import exposition
from gpudesk.core.metrics.serve import Exporter, ExporterError, ListenAddress, parse_listen
from gpudesk.core.runs.model import Metrics, Run, RunState
from gpudesk.core.ssh import ConnStatus
from gpudesk.payload import gpu_agent

MIB = 2**20
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def raw_sim_sample(seq: int, count: int = 8) -> dict[str, Any]:
    """The agent's own simulated sample number ``seq``, as the JSON it prints."""
    backend = gpu_agent.SimBackend(count)
    for _ in range(seq):
        backend.collect()
    data = backend.collect()
    return {"schema": 1, "seq": seq, "ts": 1700000000.5, "simulated": True, **data}


def series(text: str) -> Series:
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, f"duplicate series {key}"
            out[key] = s.value
    return out


def by_gpu(parsed: Series, name: str) -> dict[str, float]:
    return {dict(labels)["gpu"]: value for (n, labels), value in parsed.items() if n == name}


def up_host(name: str, sample: GpuSample | None, **kw: Any) -> HostSnapshot:
    return HostSnapshot(name, ConnState.CONNECTED, latency_ms=12.5, sample=sample, **kw)


@pytest.mark.parametrize("seq", [0, 1, 17])
def test_every_gpu_value_equals_the_agents_raw_sample_in_dcgm_units(seq: int) -> None:
    raw = raw_sim_sample(seq)
    parsed = series(exposition([up_host("gpu1", parse_sample(json.dumps(raw)))]))
    # The reference reads the agent's raw JSON, not gpudesk's parsed sample.
    expected = {
        "DCGM_FI_DEV_GPU_UTIL": lambda g: g["util_gpu"],
        "DCGM_FI_DEV_MEM_COPY_UTIL": lambda g: g["util_mem"],
        "DCGM_FI_DEV_FB_USED": lambda g: g["mem_used"] / MIB,
        "DCGM_FI_DEV_FB_FREE": lambda g: (g["mem_total"] - g["mem_used"]) / MIB,
        "DCGM_FI_DEV_FB_TOTAL": lambda g: g["mem_total"] / MIB,
        "DCGM_FI_DEV_GPU_TEMP": lambda g: g["temperature"],
        "DCGM_FI_DEV_POWER_USAGE": lambda g: g["power_draw"],
        "DCGM_FI_DEV_POWER_MGMT_LIMIT": lambda g: g["power_limit"],
        "DCGM_FI_DEV_SM_CLOCK": lambda g: g["clock_sm"],
        "DCGM_FI_DEV_MEM_CLOCK": lambda g: g["clock_mem"],
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": lambda g: g["ecc_errors"],
    }
    for name, value in expected.items():
        assert by_gpu(parsed, name) == {str(g["index"]): value(g) for g in raw["gpus"]}, name
    # The simulated backend reports no fan: N/A is left out, not exported as 0.
    assert by_gpu(parsed, "DCGM_FI_DEV_FAN_SPEED") == {}
    for (name, labels), _ in parsed.items():
        if name.startswith("DCGM_"):
            got = dict(labels)
            gpu = raw["gpus"][int(got["gpu"])]
            assert got == {
                "host": "gpu1",
                "gpu": str(gpu["index"]),
                "uuid": gpu["uuid"],
                "modelName": gpu["name"],
                "simulated": "true",
            }
    host = (("host", "gpu1"),)
    assert parsed[("gpudesk_host_up", host)] == 1
    assert parsed[("gpudesk_host_latency_seconds", host)] == 0.0125
    assert parsed[("gpudesk_simulated", host)] == 1
    assert parsed[("gpudesk_gpu_sample_seq", host)] == seq
    assert parsed[("gpudesk_gpus", host)] == 8
    # GPU memory per container: the sum of its processes' memory in the raw sample.
    per_container: dict[str, int] = {}
    for proc in raw["processes"]:
        name = proc["container_name"]
        per_container[name] = per_container.get(name, 0) + proc["used_memory"]
    got = {
        dict(labels)["container"]: value
        for (name, labels), value in parsed.items()
        if name == "gpudesk_container_gpu_memory_used_bytes"
    }
    assert got == per_container


def test_a_field_the_gpu_does_not_report_is_left_out_for_that_gpu_only() -> None:
    full = GpuDevice(index=0, util_gpu=50.0, temperature=60.0, mem_used=MIB, mem_total=4 * MIB)
    partial = GpuDevice(index=1, util_gpu=None, temperature=None, mem_used=None, mem_total=4 * MIB)
    sample = GpuSample(schema=1, seq=3, ts=1.0, gpus=(full, partial))
    parsed = series(exposition([up_host("h", sample)]))
    assert by_gpu(parsed, "DCGM_FI_DEV_GPU_UTIL") == {"0": 50.0}
    assert by_gpu(parsed, "DCGM_FI_DEV_GPU_TEMP") == {"0": 60.0}
    assert by_gpu(parsed, "DCGM_FI_DEV_FB_USED") == {"0": 1.0}
    assert by_gpu(parsed, "DCGM_FI_DEV_FB_FREE") == {"0": 3.0}  # needs both used and total
    assert by_gpu(parsed, "DCGM_FI_DEV_FB_TOTAL") == {"0": 4.0, "1": 4.0}
    assert by_gpu(parsed, "DCGM_FI_DEV_POWER_USAGE") == {}
    assert not any("simulated" in dict(labels) for _, labels in parsed)  # real GPUs: no marker
    assert parsed[("gpudesk_simulated", (("host", "h"),))] == 0


def test_a_host_that_is_down_is_up_0_with_nothing_else() -> None:
    board = MetricsBoard(["a", "b"])
    board.set_status(ConnStatus("a", ConnState.CONNECTED, latency_ms=3.0))
    board.set_sample("a", parse_sample(json.dumps(raw_sim_sample(0, 2))))
    board.set_status(ConnStatus("b", ConnState.CONNECTED, latency_ms=3.0))
    board.set_sample("b", parse_sample(json.dumps(raw_sim_sample(0, 2))))
    board.set_status(ConnStatus("b", ConnState.UNREACHABLE, "timed out"))
    board.set_sample("b", parse_sample(json.dumps(raw_sim_sample(1, 2))))  # a late report
    parsed = series(exposition(board.snapshots()))
    assert parsed[("gpudesk_host_up", (("host", "a"),))] == 1
    assert parsed[("gpudesk_host_up", (("host", "b"),))] == 0
    hosts_b = [name for name, labels in parsed if ("host", "b") in labels]
    assert hosts_b == ["gpudesk_host_up"]
    assert set(by_gpu(parsed, "DCGM_FI_DEV_GPU_UTIL")) == {"0", "1"}


def container(name: str, state: str, gpudesk: bool = True) -> ContainerInfo:
    return ContainerInfo(
        id=name * 4, name=name, flavour=Flavour.SSH if gpudesk else None, image="img",
        state=state, status=state, created=None, started_at=None, uptime=None, gpus="",
        ports=[], workspace="", labels={}, is_gpudesk=gpudesk,
    )  # fmt: skip


def run(name: str, container: str, pid: int, state: RunState = RunState.RUNNING) -> Run:
    return Run(
        name=name, host="h", container=container, script="lm", state=state, exit_code=None,
        started=1.0, ended=None, command=[], args=[], nproc=1, pid=pid, dir="/w", container_dir="/w",
        metrics=Metrics(),
    )  # fmt: skip


def test_containers_by_state_and_gpu_memory_per_run() -> None:
    infos = (
        container("dev1", "running"), container("dev2", "exited"), container("nb", "running"),
        container("other", "running", gpudesk=False),
    )  # fmt: skip
    procs = (
        GpuProcess(gpu=0, pid=100, used_memory=5 * MIB, container_name="dev1", ns_pgid=7),
        GpuProcess(gpu=1, pid=101, used_memory=3 * MIB, container_name="dev1", ns_pgid=7),
        GpuProcess(gpu=1, pid=102, used_memory=2 * MIB, container_name="dev1", ns_pgid=9),
        GpuProcess(gpu=1, pid=103, used_memory=None, container_name="nb"),
        GpuProcess(gpu=0, pid=104, used_memory=MIB),  # on the host, in no container
    )
    sample = GpuSample(schema=1, seq=1, ts=1.0, gpus=(GpuDevice(0), GpuDevice(1)), processes=procs)
    runs = (run("r1", "dev1", 7), run("old", "dev1", 9, RunState.SUCCEEDED))
    parsed = series(exposition([up_host("h", sample, containers=infos, runs=runs)]))
    states = {
        dict(labels)["state"]: value
        for (name, labels), value in parsed.items()
        if name == "gpudesk_containers"
    }
    assert states["running"] == 2 and states["exited"] == 1 and states["paused"] == 0
    running = {
        dict(labels)["container"]: value
        for (name, labels), value in parsed.items()
        if name == "gpudesk_container_running"
    }
    assert running == {"dev1": 1, "dev2": 0, "nb": 1}
    assert (
        parsed[("gpudesk_container_gpu_memory_used_bytes", (("container", "dev1"), ("host", "h")))]
        == 10 * MIB
    )
    per_run = [(dict(k[1]), v) for k, v in parsed.items() if k[0].startswith("gpudesk_run_")]
    assert per_run == [({"host": "h", "container": "dev1", "run": "r1"}, 8 * MIB)]
    assert by_gpu(parsed, "gpudesk_gpu_processes") == {"0": 2, "1": 3}


hostile = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40
) | st.sampled_from(['a"b', "a\\b", "a\nb", '\\"', "\\n", "}", 'x{y="z"}', "\\", '"'])


@given(host=hostile, container_name=hostile, uuid=hostile, model=hostile)
def test_hostile_label_values_come_back_exactly(
    host: str, container_name: str, uuid: str, model: str
) -> None:
    gpu = GpuDevice(index=0, uuid=uuid, name=model, util_gpu=42.0)
    proc = GpuProcess(gpu=0, pid=1, used_memory=MIB, container_name=container_name)
    sample = GpuSample(schema=1, seq=1, ts=1.0, gpus=(gpu,), processes=(proc,))
    text = exposition([up_host(host, sample, containers=(container(container_name, "running"),))])
    parsed = series(text)
    [(util_labels, util)] = [
        (dict(k[1]), v) for k, v in parsed.items() if k[0] == "DCGM_FI_DEV_GPU_UTIL"
    ]
    assert util == 42.0
    assert util_labels == {"host": host, "gpu": "0", "uuid": uuid, "modelName": model}
    mem = [dict(k[1]) for k in parsed if k[0] == "gpudesk_container_gpu_memory_used_bytes"]
    assert mem == [{"host": host, "container": container_name}]
    running = [dict(k[1]) for k in parsed if k[0] == "gpudesk_container_running"]
    assert running == [
        {"host": host, "container": container_name, "flavour": "ssh", "state": "running"}
    ]
    # One line per sample: a newline in a value never splits a line (only \n ends a line in
    # the text format; str.splitlines would also split at \x1e and \u2028).
    assert all(line.startswith(("#", "DCGM_", "gpudesk_")) for line in text.split("\n")[:-1])


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("127.0.0.1:9835", ListenAddress("127.0.0.1", 9835)),
        ("localhost:0", ListenAddress("127.0.0.1", 0)),
        ("[::1]:9835", ListenAddress("::1", 9835)),
        ("0.0.0.0:80", ListenAddress("0.0.0.0", 80)),
    ],
)
def test_listen_addresses(text: str, want: ListenAddress) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize(
    "text", ["9835", "127.0.0.1", "example.com:9835", "::1:9835", "[127.0.0.1]:1", "1.2.3.4:65536"]
)
def test_bad_listen_addresses_are_one_sentence(text: str) -> None:
    with pytest.raises(ExporterError) as err:
        parse_listen(text)
    message = str(err.value)
    assert message.startswith("--listen takes ADDRESS:PORT") and "\n" not in message


def test_not_loopback_only_when_named() -> None:
    with pytest.raises(ExporterError, match="loopback"):
        Exporter(list, parse_listen("0.0.0.0:9835"))
    Exporter(list, parse_listen("0.0.0.0:9835"), allow_remote=True)  # the user's choice


def test_serves_over_http_and_a_busy_port_is_one_sentence() -> None:
    snaps = [up_host("h", parse_sample(json.dumps(raw_sim_sample(2, 1))))]
    exporter = Exporter(lambda: snaps, parse_listen("127.0.0.1:0"))
    address = exporter.start()
    try:
        assert address.port != 0
        with urllib.request.urlopen(address.url, timeout=30) as response:
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
        assert series(body) == series(exposition(snaps))
        busy = Exporter(list, address)
        with pytest.raises(ExporterError) as err:
            busy.start()
        assert str(err.value) == (
            f"The exporter could not start: {address} is already in use; stop what listens "
            "there or choose another --listen."
        )
    finally:
        exporter.close()
    with pytest.raises(OSError):
        socket.create_connection((address.host, address.port), timeout=5).close()


def test_cli_on_a_busy_port_says_so_in_one_line_and_exits_1() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gpudesk", "exporter", "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"gpudesk: The exporter could not start: 127.0.0.1:{port} is already in use; stop what "
        "listens there or choose another --listen.\n"
    )


def test_snapshot_is_frozen() -> None:
    snap = HostSnapshot("h", ConnState.CONNECTING)
    assert replace(snap, state=ConnState.CONNECTED).up and not snap.up


def test_the_grafana_dashboard_asks_only_for_exported_metrics() -> None:
    from pathlib import Path

    infos = (container("dev1", "running"),)
    text = exposition([up_host("h", parse_sample(json.dumps(raw_sim_sample(1))), containers=infos)])
    exported = {family.name for family in text_string_to_metric_families(text)}
    dashboard = json.loads((Path(__file__).parents[2] / "docs/grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dashboard["templating"]["list"]]
    asked = {name for expr in exprs for name in re.findall(r"\b(DCGM_FI_\w+|gpudesk_\w+)", expr)}
    assert asked and asked <= exported, asked - exported


def test_feeds_fill_the_board_from_the_local_hosts_real_agent_and_stop() -> None:
    import threading

    from gpudesk.core.config import Inventory
    from gpudesk.core.metrics.feeds import FleetFeeds

    class Recording(MetricsBoard):
        def __init__(self) -> None:
            super().__init__()
            self.sampled = threading.Event()

        def set_sample(self, host: str, sample: GpuSample | None) -> None:
            super().set_sample(host, sample)
            if sample is not None and self.get(host) is not None:
                self.sampled.set()

    board = Recording()
    feeds = FleetFeeds(Inventory.load(), board, simulate=2)
    assert feeds.hosts == ["localhost"]
    feeds.start()
    try:
        assert board.sampled.wait(120), "no sample from the local agent"
        [snap] = board.snapshots()
        assert snap.up and snap.sample is not None and snap.sample.simulated
        parsed = series(exposition([snap]))
        assert set(by_gpu(parsed, "DCGM_FI_DEV_GPU_UTIL")) == {"0", "1"}
    finally:
        feeds.close()
    [snap] = board.snapshots()
    assert snap.sample is None  # the stopped stream's last sample is no longer current
