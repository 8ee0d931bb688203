"""Files a run writes: metrics.jsonl, atomic checkpoints, and finding one to resume from.

Only torch and the sibling modules are imported; scripts run as plain files in containers.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from trainbase import UserError

CKPT_FORMAT = 1
CKPT_DIR = "ckpt"


class Metrics:
    """Appends schema-conformant JSON lines to <out>/metrics.jsonl (rank 0 only)."""

    def __init__(self, path: Path | None, common: dict):
        self.path, self.common = path, common
        self.file = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, event: str, step: int, epoch: float, **fields: Any) -> None:
        if self.file is None:
            return
        rec = {"ts": round(time.time(), 3), "step": step, "epoch": round(epoch, 4)}
        fields = {
            k: None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in fields.items()
        }
        rec |= {"event": event, **self.common, **fields}
        self.file.write(json.dumps(rec, ensure_ascii=False, allow_nan=False) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def default_out() -> Path:
    run = os.environ.get("GPUDESK_RUN")
    if run:
        return Path("/workspace/runs") / run
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def list_checkpoints(out: Path) -> list[Path]:
    return sorted((out / CKPT_DIR).glob("step_*.pt"))


def resolve_resume(spec: str, out: Path | None) -> Path:
    if spec == "auto":
        if out is None:
            raise UserError("--resume without a path needs --out")
        path = out
    else:
        path = Path(spec)
    if path.is_dir():
        ckpts = list_checkpoints(path) or sorted(path.glob("step_*.pt"))
        if not ckpts:
            raise UserError(f"no checkpoint found in {path}")
        return ckpts[-1]
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    return path


def load_checkpoint(path: Path, task: str) -> dict:
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read checkpoint {path}: {msg}") from None
    if not isinstance(ck, dict) or "task" not in ck or ck.get("format") != CKPT_FORMAT:
        raise UserError(f"{path} is not a gpudesk training checkpoint")
    if ck["task"] != task:
        raise UserError(
            f"checkpoint {path} was written by task {ck['task']!r}, not {task!r}; "
            f"resume it with {ck['task']}.py"
        )
    return ck


def atomic_save(obj: Any, path: Path, saver: Any = torch.save) -> None:
    """Write to a temporary file in the same directory, fsync, then os.replace."""
    tmp = path.with_name("tmp-" + path.name)  # keeps the suffix (.pt2)
    try:
        saver(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
