"""Reads every run folder of the given workspaces on the GPU host; prints one JSON object.

Shipped by gpudesk (``core/runs/discovery.py``) like the GPU agent: its source is piped into
``python3 - SPEC`` on the host over SSH, nothing is installed there. Standard library only and
Python 3.8 compatible (modern typing syntax only in annotations), so it runs with whatever
Python the host has. ``SPEC`` is JSON: ``workspaces`` (host paths), ``detail`` (run names whose
whole metrics and log tail are wanted), ``tail_bytes``, ``detail_bytes`` and ``log_lines``.
Output: ``{"now": <host time>, "runs": [<one object per run folder with a run.json>]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

LOG_TAIL_BYTES = 65536


def tail(path: str, limit: int) -> str | None:
    """The last ``limit`` bytes of a file, starting at a line boundary; None if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return None
    if size > limit:
        data = data.split(b"\n", 1)[-1]
    return data.decode("utf-8", "replace")


def read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_runs(spec: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for ws in spec["workspaces"]:
        root = os.path.join(os.path.expanduser(ws), "runs")
        try:
            names = sorted(os.listdir(root))
        except OSError:
            continue
        for name in names:
            d = os.path.join(root, name)
            meta = read(os.path.join(d, "run.json"))
            if meta is None:
                continue
            detail = name in spec.get("detail", [])
            ec = os.path.join(d, "exit_code")
            limit = spec["detail_bytes"] if detail else spec["tail_bytes"]
            item: dict[str, Any] = {
                "workspace": ws,
                "dir": d,
                "name": name,
                "run": meta,
                "pid": read(os.path.join(d, "pid")),
                "exit_code": read(ec),
                "stopped": os.path.exists(os.path.join(d, "stopped")),
                "metrics": tail(os.path.join(d, "metrics.jsonl"), limit),
            }
            try:
                item["ended"] = os.stat(ec).st_mtime
            except OSError:
                item["ended"] = None
            if detail:
                log = tail(os.path.join(d, "train.log"), LOG_TAIL_BYTES) or ""
                item["log"] = log.splitlines()[-spec["log_lines"] :]
            out.append(item)
    return out


def main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    runs = read_runs(spec)
    sys.stdout.write(json.dumps({"now": time.time(), "runs": runs}))


if __name__ == "__main__":
    main(sys.argv)
