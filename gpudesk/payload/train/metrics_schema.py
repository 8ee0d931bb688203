"""Schema of ``<out>/metrics.jsonl``, the progress file every bundled training script writes.

This module is the ONE place the format is defined; docs/training.md only summarises it.
It is pure stdlib so it can be imported both inside containers (``import metrics_schema``,
next to the scripts) and on the host (``from gpudesk.payload.train import metrics_schema``).

Format
------
One JSON object per line, UTF-8, flushed after every line, written by rank 0 only.
Every line has the common fields (``COMMON_REQUIRED``) and an ``event`` from ``EVENTS``:

``train``
    Periodic training progress (every ``--log-every`` steps). ``loss`` is the mean loss of
    the last optimizer step, throughput fields are averaged over the steps since the last
    train line, excluding the first warm-up steps of the run (compilation, allocator).
    ``total_steps`` lets a UI compute progress and ETA.
``eval``
    Validation metrics: always ``val_loss``, plus task metrics (``TASK_METRICS``).
``ckpt``
    A checkpoint was written atomically to ``path``.
``done``
    The run ended cleanly; ``reason`` is ``"completed"`` or ``"sigterm"`` (SIGTERM saves a
    ``ckpt`` line first, then ``done``; the process exits with code 0).
``error``
    The run failed; ``message`` is the same single line printed to stderr. Exit codes:
    2 bad input or configuration, 3 out of GPU memory, 1 anything unexpected.

Non-finite floats are written as ``null`` so every line is strict JSON.
``step`` counts optimizer steps completed (0 before the first). ``epoch`` is fractional
(samples seen / training-set size). Consumers should ignore fields they do not know;
``validate`` is strict so the scripts' own tests catch drift.
"""

from __future__ import annotations

import math
from typing import Any

SCHEMA_VERSION = 1

EVENTS = ("train", "eval", "ckpt", "done", "error")
PRECISIONS = ("fp32", "bf16", "fp16")
DONE_REASONS = ("completed", "sigterm")

_NUM = (int, float)
_INT = (int,)
_STR = (str,)
_BOOL = (bool,)
_NONE = (type(None),)

# name -> (accepted types, description). ``None`` is only accepted where listed.
FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    # common
    "ts": (_NUM, "Unix time in seconds (float) when the line was written"),
    "step": (_INT, "optimizer steps completed so far"),
    "epoch": (_NUM, "fractional epochs: samples seen / training samples"),
    "event": (_STR, "one of EVENTS"),
    "task": (_STR, "script name: textcls | translate | lm | recsys"),
    "world_size": (_INT, "number of DDP processes"),
    "precision": (_STR, "one of PRECISIONS (the precision actually used)"),
    "compiled": (_BOOL, "whether the model runs under torch.compile"),
    # train
    "loss": (_NUM + _NONE, "training loss of the last optimizer step; null if not finite"),
    "lr": (_NUM, "learning rate of the last optimizer step"),
    "grad_norm": (
        _NUM + _NONE,
        "global L2 norm of gradients before clipping; null if not finite (fp16 overflow)",
    ),
    "tokens_per_s": (_NUM, "tokens (incl. padding) per second, all ranks together"),
    "samples_per_s": (_NUM, "samples per second, all ranks together"),
    "step_time_s": (_NUM, "mean wall time of one optimizer step"),
    "mfu_pct": (_NUM + _NONE, "model FLOPs utilisation vs dense bf16 peak; null if unknown"),
    "mem_gib": (_NUM + _NONE, "peak CUDA memory allocated on rank 0 in GiB; null on CPU"),
    "total_steps": (_INT, "the run's --steps, for progress and ETA"),
    # eval
    "val_loss": (_NUM, "validation loss"),
    "accuracy": (_NUM, "textcls: validation accuracy in [0, 1]"),
    "macro_f1": (_NUM, "textcls: macro-averaged F1 in [0, 1]"),
    "bleu": (_NUM, "translate: corpus BLEU in [0, 100]"),
    "perplexity": (_NUM, "lm: exp(val_loss)"),
    "hr10": (_NUM, "recsys: hit rate at 10 in [0, 1]"),
    "ndcg10": (_NUM, "recsys: NDCG at 10 in [0, 1]"),
    # ckpt
    "path": (_STR, "checkpoint file written"),
    "seconds": (_NUM, "ckpt: wall time to write the checkpoint (sizes stop-run's grace)"),
    # done / error
    "reason": (_STR, "done: one of DONE_REASONS"),
    "message": (_STR, "error: one-line description, same as on stderr"),
}

COMMON_REQUIRED = ("ts", "step", "epoch", "event", "world_size", "precision", "compiled")

REQUIRED: dict[str, tuple[str, ...]] = {
    "train": (
        "loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "samples_per_s",
        "step_time_s",
        "mfu_pct",
        "mem_gib",
        "total_steps",
    ),
    "eval": ("val_loss",),
    "ckpt": ("path",),
    "done": ("reason",),
    "error": ("message",),
}

# Task metrics expected on eval lines, per script.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    "textcls": ("accuracy", "macro_f1"),
    "translate": ("bleu",),
    "lm": ("perplexity",),
    "recsys": ("hr10", "ndcg10"),
}


def validate(record: Any) -> list[str]:
    """Return a list of problems with one parsed metrics line (empty when valid)."""
    if not isinstance(record, dict):
        return [f"record is {type(record).__name__}, expected object"]
    errors: list[str] = []
    event = record.get("event")
    if event not in EVENTS:
        errors.append(f"event {event!r} not in {EVENTS}")
    required = COMMON_REQUIRED + REQUIRED.get(event, ())
    if event == "eval" and record.get("task") in TASK_METRICS:
        required += TASK_METRICS[record["task"]]
    errors.extend(f"missing field {name!r}" for name in required if name not in record)
    for name, value in record.items():
        if name not in FIELDS:
            errors.append(f"unknown field {name!r}")
            continue
        types, _ = FIELDS[name]
        # bool is a subclass of int: only accept it where bool is listed.
        ok = isinstance(value, types) and (not isinstance(value, bool) or bool in types)
        if not ok:
            errors.append(f"field {name!r} has type {type(value).__name__}")
        elif isinstance(value, float) and not math.isfinite(value):
            errors.append(f"field {name!r} is not finite")
    if record.get("precision") not in PRECISIONS and "precision" in record:
        errors.append(f"precision {record['precision']!r} not in {PRECISIONS}")
    if event == "done" and record.get("reason") not in DONE_REASONS:
        errors.append(f"reason {record.get('reason')!r} not in {DONE_REASONS}")
    if isinstance(record.get("step"), int) and record["step"] < 0:
        errors.append("step is negative")
    return errors
