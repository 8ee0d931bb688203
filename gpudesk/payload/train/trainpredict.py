"""``python <task>.py predict CHECKPOINT``: run a trained model on new inputs.

Reads one input per line (``--input FILE`` or stdin) and prints one output line per input.
CHECKPOINT is a checkpoint file or a run directory (its latest checkpoint). With ``--export``
the run directory's ``model.pt2`` (torch.export, any batch size) computes the outputs and the
checkpoint supplies only the vocabulary/labels; every task's prediction uses nothing but the
model's forward pass with fixed shapes, so the eager model and the export give the same
results. Errors are one line on stderr with exit code 2, like training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from textutil import DataError
from trainbase import EXIT_BAD_INPUT, Task, UserError
from trainio import CKPT_DIR, load_checkpoint, resolve_resume


def build_predict_parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{task.name}.py predict",
        description=f"Predict with a trained {task.name} model: one input per line.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("checkpoint", help="checkpoint file or run directory (latest checkpoint)")
    p.add_argument("--input", help="file with one input per line (default: stdin)")
    p.add_argument("--export", action="store_true", help="use the run's exported model.pt2")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--batch-size", type=int, default=32)
    task.add_predict_args(p)
    return p


def _load_model(task: Task, args: argparse.Namespace, ck: dict, path: Path) -> torch.nn.Module:
    margs = argparse.Namespace(**(ck["args"] | ck["model_args"]))
    margs.dropout = 0.0
    task.setup_predict(margs, ck["meta"])
    device = torch.device(args.device)
    if args.export:
        run_dir = path.parent.parent if path.parent.name == CKPT_DIR else path.parent
        pt2 = run_dir / "model.pt2"
        if not pt2.is_file():
            raise UserError(f"no exported model at {pt2}; train with --export first")
        ep = torch.export.load(str(pt2))
        return ep.module().to(device)
    model = task.build_model(margs)
    model.load_state_dict(ck["model"])
    return model.to(device).eval()


def _read_inputs(args: argparse.Namespace) -> list[str]:
    if args.input:
        p = Path(args.input)
        if not p.is_file():
            raise UserError(f"input file not found: {p}")
        text = p.read_text(encoding="utf-8")
    else:
        text = sys.stdin.read()
    return [line for line in text.splitlines() if line.strip()]


def predict_main(task: Task, argv: list[str]) -> None:
    args = build_predict_parser(task).parse_args(argv)
    try:
        path = resolve_resume(args.checkpoint, None)
        ck = load_checkpoint(path, task.name)
        model = _load_model(task, args, ck, path)
        lines = _read_inputs(args)
        device = torch.device(args.device)
        with torch.no_grad():
            for start in range(0, len(lines), args.batch_size):
                chunk = lines[start : start + args.batch_size]
                for out in task.predict(model, chunk, args, device):
                    print(out, flush=True)
    except (UserError, DataError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
