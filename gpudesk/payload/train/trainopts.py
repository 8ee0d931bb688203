"""Command-line options, optimizer and learning-rate schedule of the training core."""

from __future__ import annotations

import argparse
import math

import precision as precision_choice
import torch
from torch import nn
from trainbase import Task


def build_parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{task.name}.py",
        description=task.description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", help="training data file")
    g.add_argument("--val", help="validation file (default: hold out part of --data)")
    g.add_argument("--synthetic", action="store_true", help="generate data (smoke/bench)")
    g.add_argument(
        "--header",
        choices=("auto", "yes", "no"),
        default="auto",
        help="CSV/TSV first row is a header (auto: it names the columns)",
    )
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    g.add_argument("--batch-size", type=int, default=32, help="micro-batch per process")
    g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    g.add_argument("--lr", type=float, default=3e-4, help="peak learning rate")
    g.add_argument("--min-lr-ratio", type=float, default=0.1, help="final lr / peak lr")
    g.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 10%%)")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--clip", type=float, default=1.0, help="gradient clipping (0: off)")
    g.add_argument("--dropout", type=float, default=0.1)
    g.add_argument(
        "--precision",
        choices=precision_choice.CHOICES,
        default=precision_choice.AUTO,
        help="auto: bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 on CPU",
    )
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--seed", type=int, default=1337)
    g.add_argument("--device", default="auto", help="auto | cpu | cuda")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--out", help="run directory (default $GPUDESK_RUN or ./runs/<time>)")
    g.add_argument("--log-every", type=int, default=10)
    g.add_argument("--eval-every", type=int, default=200, help="0: only at the end")
    g.add_argument("--eval-batches", type=int, default=task.eval_batches)
    g.add_argument("--ckpt-every", type=int, default=500, help="0: only at the end")
    g.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    g.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        help="checkpoint file or run dir to continue from (no value: latest in --out)",
    )
    g.add_argument("--export", action="store_true", help="torch.export the final model")
    g = p.add_argument_group(task.name)
    task.add_args(g)
    p.set_defaults(**task.defaults)
    return p


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem with the numeric options, as one line, or None."""
    for name in ("steps", "batch_size", "grad_accum", "log_every", "keep"):
        if getattr(args, name) < 1:
            return f"--{name.replace('_', '-')} must be >= 1"
    return None


def make_optimizer(model: nn.Module, args: argparse.Namespace, device: torch.device):
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=args.lr, betas=(0.9, 0.95), fused=device.type == "cuda" or None
    )


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up then cosine decay to lr * min_lr_ratio (step is 0-based)."""
    warm = args.warmup if args.warmup is not None else max(1, min(100, args.steps // 10))
    if step < warm:
        return args.lr * (step + 1) / warm
    frac = (step - warm) / max(1, args.steps - warm)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * cos)
