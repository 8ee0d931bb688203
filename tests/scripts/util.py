"""Helpers for the bundled-script tests: run a script as a subprocess, read its metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gpudesk.payload.train import metrics_schema

SCRIPTS = Path(__file__).resolve().parents[2] / "gpudesk" / "payload" / "train"

# Tiny model shapes so every run takes a few seconds on 2 CPU cores.
TINY = {
    "textcls": ["--layers", "1", "--dim", "64", "--heads", "2", "--max-len", "64"],
    "translate": [
        "--layers",
        "1",
        "--dim",
        "64",
        "--heads",
        "2",
        "--max-len",
        "48",
        "--bleu-samples",
        "8",
    ],
    "lm": ["--layers", "2", "--dim", "64", "--heads", "2", "--seq-len", "64"],
    "recsys": ["--layers", "1", "--dim", "32", "--heads", "2", "--max-len", "20"],
}

# Steps of the shared tiny run of each task (conftest.py): enough for the loss to fall.
STEPS = {"textcls": 40, "translate": 40, "lm": 30, "recsys": 40}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("GPUDESK_RUN", None)
    e["OMP_NUM_THREADS"] = "1"
    e["PYTHONWARNINGS"] = "ignore"
    return e


def script_cmd(task: str, out: Path, *args: str, tiny: bool = True) -> list[str]:
    return [
        sys.executable,
        str(SCRIPTS / f"{task}.py"),
        "--out",
        str(out),
        "--device",
        "cpu",
        *(TINY[task] if tiny else []),
        *args,
    ]


def run_script(task: str, out: Path, *args: str, tiny: bool = True, timeout: int = 300):
    return subprocess.run(
        script_cmd(task, out, *args, tiny=tiny),
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        check=False,
    )


def read_metrics(out: Path) -> list[dict]:
    """Parse <out>/metrics.jsonl and assert every line validates against the schema."""
    records = []
    for n, line in enumerate((out / "metrics.jsonl").read_text(encoding="utf-8").splitlines(), 1):
        rec = json.loads(line)
        problems = metrics_schema.validate(rec)
        assert not problems, f"metrics line {n} invalid: {problems}: {line}"
        records.append(rec)
    return records


def losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if r["event"] == "train"}
