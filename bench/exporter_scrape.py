"""Benchmark: what one Prometheus scrape of `gpudesk exporter` costs, by fleet size.

Hosts of 8 simulated GPUs each (the agent's own simulated samples, 6 GPU processes in 3
containers per host) and 10 gpudesk containers each, served by the real exporter on
127.0.0.1; each figure is the median wall time of ``--runs`` HTTP GETs of /metrics, beside
the reference: a GET of the same bytes from a static handler on the same kind of server
(prometheus_client's WSGI server), so the ratio is what building the families costs.

    .venv/bin/python bench/exporter_scrape.py [--runs 21] [--hosts 1,16,64]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

from gpudesk.core.connection import ConnState
from gpudesk.core.containers import ContainerInfo
from gpudesk.core.flavours import Flavour
from gpudesk.core.gpu.sample import parse_sample
from gpudesk.core.metrics.board import HostSnapshot
from gpudesk.core.metrics.collect import exposition
from gpudesk.core.metrics.serve import Exporter, parse_listen
from gpudesk.payload import gpu_agent


def fleet(hosts: int) -> list[HostSnapshot]:
    backend = gpu_agent.SimBackend(8)
    raw = {"schema": 1, "seq": 0, "ts": time.time(), "simulated": True, **backend.collect()}
    sample = parse_sample(json.dumps(raw))
    infos = tuple(
        ContainerInfo(
            id=f"{i:064x}", name=f"dev{i}", flavour=Flavour.SSH, image="img", state="running",
            status="running", created=None, started_at=None, uptime=None, gpus="", ports=[],
            workspace="", labels={}, is_gpudesk=True,
        )
        for i in range(10)
    )  # fmt: skip
    return [
        HostSnapshot(f"gpu{h:03d}", ConnState.CONNECTED, 5.0, sample, infos) for h in range(hosts)
    ]


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def get(url: str) -> float:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--hosts", default="1,16,64")
    args = parser.parse_args()
    print(f"{platform.node()} {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, median of {args.runs} scrapes")  # fmt: skip
    print("hosts  series  bytes     scrape ms  static ms  ratio")
    for hosts in (int(h) for h in args.hosts.split(",")):
        snaps = fleet(hosts)
        body = exposition(snaps).encode()

        def static(environ: object, start_response: object, body: bytes = body) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
            return [body]

        server = make_server("127.0.0.1", 0, static, handler_class=Quiet)  # type: ignore[arg-type]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        exporter = Exporter(lambda snaps=snaps: snaps, parse_listen("127.0.0.1:0"))
        url = exporter.start().url
        ref = f"http://127.0.0.1:{server.server_port}/metrics"
        subject, reference = [], []
        for _ in range(args.runs):  # interleaved: a busy neighbour slows both alike
            subject.append(get(url))
            reference.append(get(ref))
        exporter.close()
        server.shutdown()
        series = sum(1 for line in body.decode().split("\n") if line and line[0] != "#")
        s_ms, r_ms = statistics.median(subject) * 1e3, statistics.median(reference) * 1e3
        print(
            f"{hosts:5d}  {series:6d}  {len(body):8d}  {s_ms:9.1f}  {r_ms:9.1f}  {s_ms / r_ms:5.1f}"
        )


if __name__ == "__main__":
    main()
