"""Shared training core for the bundled task scripts (textcls, translate, lm, recsys).

A task script defines a ``Task`` subclass (data, model, loss, evaluation) and calls
``traincore.main(MyTask())``. The core owns everything else: argument parsing, device and
DDP setup (torchrun; NCCL on GPU, gloo on CPU), AMP, torch.compile, gradient accumulation,
the LR schedule, resumable sampling, atomic checkpoints, SIGTERM handling, metrics.jsonl,
MFU, torch.export and the error policy (one line on stderr, an ``error`` metrics line and a
non-zero exit code; see metrics_schema for the codes).

The pieces live in sibling modules (trainbase: task API and sampler; trainopts: options,
optimizer, schedule; trainio: metrics and checkpoint files; trainperf: throughput and MFU;
traindist: collectives); this module holds the ``Trainer`` and ``main``. Only torch and the
sibling modules are imported; scripts run as plain files in containers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from textutil import DataError
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817
from torch.utils.data import DataLoader
from trainbase import EXIT_BAD_INPUT, EXIT_OOM, StepSampler, Task, TensorSet, UserError, identity
from traindist import all_gather_pickled
from trainio import (
    CKPT_DIR,
    CKPT_FORMAT,
    Metrics,
    atomic_save,
    default_out,
    list_checkpoints,
    load_checkpoint,
    resolve_resume,
)
from trainopts import build_parser, check_args, lr_at, make_optimizer
from trainperf import Throughput, gpt_flops_per_token, peak_flops

__all__ = [
    "StepSampler",
    "Task",
    "TensorSet",
    "Trainer",
    "UserError",
    "atomic_save",
    "gpt_flops_per_token",
    "lr_at",
    "main",
]


class Trainer:
    def __init__(self, task: Task, args: argparse.Namespace):
        self.task, self.args = task, args
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.is_main = self.rank == 0
        self.stop_requested = False
        self.metrics = Metrics(None, {})
        self.step = self._first_step = 0
        self.precision = args.precision
        self.compiled = bool(args.compile)

    # ----------------------------------------------------------------- setup
    def log(self, msg: str) -> None:
        if self.is_main:
            print(msg, flush=True)

    def setup_device(self) -> None:
        a = self.args
        want = a.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise UserError("--device cuda requested but no CUDA device is available")
            self.device = (
                torch.device(want) if ":" in want else torch.device("cuda", self.local_rank)
            )
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device(want)
        if self.world > 1:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.set_float32_matmul_precision("high")  # TF32 matmuls (cuDNN: on by default)
            if a.precision == "bf16" and not torch.cuda.is_bf16_supported():
                raise UserError("this GPU does not support bf16; use --precision fp16")
        if a.precision == "fp16" and not cuda:
            self.log("note: fp16 autocast is not supported on CPU here; falling back to fp32")
            self.precision = "fp32"
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[
            self.precision
        ]
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None

    def amp(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def setup_out(self) -> None:
        a = self.args
        out = Path(a.out) if a.out else None
        self.resume_path = resolve_resume(a.resume, out) if a.resume else None
        if out is None and self.resume_path is not None:
            p = self.resume_path.parent
            out = p.parent if p.name == CKPT_DIR else p
        if out is None:
            out = default_out()
            if self.world > 1:  # every rank must agree on the timestamp
                out = Path(all_gather_pickled(str(out), self.device)[0])
        self.out = out
        if self.is_main:
            (out / CKPT_DIR).mkdir(parents=True, exist_ok=True)

    def open_metrics(self, out: Path) -> None:
        common = {
            "task": self.task.name,
            "world_size": self.world,
            "precision": self.precision,
            "compiled": self.compiled,
        }
        self.metrics = Metrics(out / "metrics.jsonl" if self.is_main else None, common)

    def setup_model(self) -> None:
        """Data, model and optimizer, restored from the checkpoint on --resume."""
        a, task = self.args, self.task
        ck = load_checkpoint(self.resume_path, task.name) if self.resume_path else None
        if ck is not None:
            for k, v in ck["model_args"].items():
                setattr(a, k, v)
        torch.manual_seed(a.seed)
        random.seed(a.seed)
        self.meta = task.setup(a, ck["meta"] if ck else None)
        if len(task.train_set) == 0 or len(task.val_set) == 0:
            raise UserError("training or validation set is empty")
        self.raw = task.build_model(a).to(self.device)
        self.opt = make_optimizer(self.raw, a, self.device)
        torch.manual_seed(a.seed + 1000 * self.rank)  # per-rank dropout streams
        if ck is not None:
            self.restore(ck)
        n_params = sum(p.numel() for p in self.raw.parameters())
        self.log(
            f"{task.name}: {n_params / 1e6:.2f}M params, {len(task.train_set)} train / "
            f"{len(task.val_set)} val samples, device {self.device}, world {self.world}, "
            f"{self.precision}{' + compile' if self.compiled else ''}, out {self.out}"
        )
        self.model = torch.compile(self.raw) if a.compile else self.raw
        self.train_model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)

    def restore(self, ck: dict) -> None:
        try:
            self.raw.load_state_dict(ck["model"])
            self.opt.load_state_dict(ck["optim"])
        except (RuntimeError, ValueError, KeyError) as e:
            msg = str(e).splitlines()[0]
            raise UserError(f"checkpoint does not match the model: {msg}") from None
        if self.scaler is not None and ck.get("scaler"):
            self.scaler.load_state_dict(ck["scaler"])
        self.step = int(ck["step"])
        self.restore_rng(ck)
        self.log(f"resumed from {self.resume_path} at step {self.step}")

    def make_loader(self) -> DataLoader:
        a = self.args
        sampler = StepSampler(
            len(self.task.train_set),
            a.batch_size,
            self.rank,
            self.world,
            a.seed,
            start=self.step * a.grad_accum,
        )
        return DataLoader(
            self.task.train_set,
            batch_sampler=sampler,
            collate_fn=identity,
            pin_memory=self.device.type == "cuda",
            num_workers=a.workers,
            generator=torch.Generator(),  # its base-seed draw must not touch the global RNG
        )

    # ----------------------------------------------------------------- checkpoints
    def epoch(self, step: int | None = None) -> float:
        s = self.step if step is None else step
        n = max(1, len(self.task.train_set)) if self.task.train_set is not None else 1
        return s * self.args.grad_accum * self.args.batch_size * self.world / n

    def rng_state(self) -> dict:
        st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            st["cuda"] = torch.cuda.get_rng_state(self.device)
        return st

    def save_checkpoint(self) -> None:
        rngs = [self.rng_state()]
        if self.world > 1:
            rngs = all_gather_pickled(self.rng_state(), self.device)
        if self.is_main:
            a = self.args
            ck = {
                "format": CKPT_FORMAT,
                "task": self.task.name,
                "step": self.step,
                "model": self.raw.state_dict(),
                "optim": self.opt.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "meta": self.meta,
                "model_args": {k: getattr(a, k) for k in self.task.model_args},
                "rng": rngs,
                "world_size": self.world,
                "args": {k: v for k, v in vars(a).items() if isinstance(v, int | float | str)},
            }
            path = self.out / CKPT_DIR / f"step_{self.step:08d}.pt"
            atomic_save(ck, path)
            for old in list_checkpoints(self.out)[: -max(1, a.keep)]:
                old.unlink(missing_ok=True)
            self.metrics.write("ckpt", self.step, self.epoch(), path=str(path))
            self.log(f"checkpoint {path}")
        if self.world > 1:
            dist.barrier()

    def restore_rng(self, ck: dict) -> None:
        rngs = ck["rng"]
        if ck.get("world_size") != self.world or len(rngs) != self.world:
            self.log("note: world size changed since the checkpoint; RNG streams re-seeded")
            return
        st = rngs[self.rank]
        torch.set_rng_state(st["torch"])
        random.setstate(st["python"])
        if "cuda" in st and self.device.type == "cuda":
            torch.cuda.set_rng_state(st["cuda"], self.device)

    # ----------------------------------------------------------------- main loop
    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def should_stop(self) -> bool:
        if self.world == 1:
            return self.stop_requested
        # all ranks must agree; a collective every step would stall the GPU queue, so
        # ranks compare flags every 10 steps (and on the first step of the run)
        if self.step % 10 and self.step != self._first_step:
            return False
        flag = torch.tensor([float(self.stop_requested)], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def to_device(self, batch: tuple) -> tuple:
        nb = self.device.type == "cuda"
        return tuple(t.to(self.device, non_blocking=nb) for t in batch)

    def val_batches(self) -> list:
        vs, b = self.task.val_set, self.args.batch_size
        n = len(vs)
        limit = self.args.eval_batches
        out = []
        for start in range(0, n, b):
            if limit is not None and len(out) >= limit:
                break
            idx = list(range(start, min(n, start + b)))
            valid = len(idx)
            idx += [idx[0]] * (b - valid)  # fixed shapes: pad the last batch
            out.append((self.to_device(vs.__getitems__(idx)), valid))
        return out

    def run_eval(self) -> None:
        if self.is_main:
            self.model.eval()
            with torch.no_grad():
                res = self.task.evaluate(self.model, self.raw, self.val_batches(), self.amp)
            self.model.train()
            res = {k: float(v) for k, v in res.items()}
            self.metrics.write("eval", self.step, self.epoch(), **res)
            self.log(f"eval step {self.step}: " + " ".join(f"{k} {v:.4f}" for k, v in res.items()))
        if self.world > 1:
            dist.barrier()

    def train(self) -> str:
        a = self.args
        signal.signal(signal.SIGTERM, self.on_sigterm)
        self.setup_device()
        self.setup_out()
        self.open_metrics(self.out)
        self.setup_model()
        self.fpt = self.task.flops_per_token(self.raw)
        self.peak = peak_flops(self.device)
        if self.fpt and self.device.type == "cuda" and self.peak is None:
            name = torch.cuda.get_device_name(self.device)
            self.log(f"note: unknown peak FLOP/s for GPU {name!r}; MFU not reported")
        batches = iter(self.make_loader())
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self._first_step = self.step
        self.meter = Throughput(self.device, self.step)
        last_eval = last_ckpt = -1
        reason = "completed"
        self.model.train()
        while self.step < a.steps:
            if self.should_stop():
                reason = "sigterm"
                break
            self.meter.step_started()
            lr, loss_sum, gnorm = self.train_step(batches)
            logging = self.step % a.log_every == 0 or self.step == a.steps
            self.meter.step_done(self.step, logging)
            if logging:
                self.log_train(lr, loss_sum, gnorm)
            if a.eval_every and self.step % a.eval_every == 0:
                self.run_eval()
                last_eval = self.step
            if a.ckpt_every and self.step % a.ckpt_every == 0:
                self.save_checkpoint()
                last_ckpt = self.step
            if self.step in (last_eval, last_ckpt):  # keep eval/ckpt time out of throughput
                self.meter.restart(self.step)
        if reason == "completed" and last_eval != self.step:
            self.run_eval()
        if last_ckpt != self.step:
            self.save_checkpoint()
        if reason == "completed" and a.export and self.is_main:
            self.export()
        return reason

    def train_step(self, batches: Any) -> tuple[float, torch.Tensor, torch.Tensor]:
        """One optimizer step over ``grad_accum`` micro-batches; (lr, loss, grad norm)."""
        a = self.args
        lr = lr_at(self.step, a)
        for grp in self.opt.param_groups:
            grp["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(a.grad_accum):
            batch = self.to_device(next(batches))
            sync = self.world == 1 or micro == a.grad_accum - 1
            ctx = contextlib.nullcontext() if sync else self.train_model.no_sync()
            with ctx:
                with self.amp():
                    loss = self.task.loss(self.train_model, batch) / a.grad_accum
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            loss_sum += loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        gnorm = torch.nn.utils.clip_grad_norm_(
            self.raw.parameters(), a.clip if a.clip > 0 else float("inf")
        )
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        return lr, loss_sum, gnorm

    def log_train(self, lr: float, loss_sum: torch.Tensor, gnorm: torch.Tensor) -> None:
        a = self.args
        if self.world > 1:
            dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
        loss_v = loss_sum.item()  # synchronises the device
        step_time = self.meter.step_time(self.step)
        sps = a.batch_size * a.grad_accum * self.world / step_time
        tps = sps * self.task.tokens_per_sample
        mfu = None
        if self.fpt and self.peak:
            mfu = round(100 * self.fpt * tps / self.world / self.peak, 3)
        cuda = self.device.type == "cuda"
        mem = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if cuda else None
        self.metrics.write(
            "train",
            self.step,
            self.epoch(),
            loss=loss_v,
            lr=lr,
            grad_norm=float(gnorm),
            tokens_per_s=round(tps, 1),
            samples_per_s=round(sps, 2),
            step_time_s=round(step_time, 5),
            mfu_pct=mfu,
            mem_gib=mem,
            total_steps=a.steps,
        )
        self.log(
            f"step {self.step}/{a.steps} loss {loss_v:.4f} lr {lr:.2e} "
            f"gnorm {float(gnorm):.2f} {tps:,.0f} tok/s {step_time * 1000:.1f} ms/step"
            + (f" mfu {mfu:.1f}%" if mfu is not None else "")
            + (" mfu unknown peak" if mfu is None and self.fpt and cuda else "")
            + (f" mem {mem:.2f} GiB" if mem is not None else "")
        )
        self.meter.restart(self.step)

    def export(self) -> None:
        """torch.export the eager model and check it reproduces eager outputs."""
        self.raw.eval()
        batch, _ = self.val_batches()[0]
        inputs = self.task.example_inputs(batch)
        with torch.no_grad():
            ref = self.raw(*inputs)
            ep = torch.export.export(self.raw, inputs)
            got = ep.module()(*inputs)
        if not torch.allclose(ref, got, rtol=1e-3, atol=1e-4):
            err = (ref - got).abs().max().item()
            raise UserError(f"exported program does not match eager outputs (max err {err:.3g})")
        path = self.out / "model.pt2"
        atomic_save(ep, path, saver=torch.export.save)
        self.log(f"exported {path} (matches eager outputs)")


def _failure(tr: Trainer, args: argparse.Namespace, e: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for an exception that ended the run."""
    if isinstance(e, UserError | DataError):
        return EXIT_BAD_INPUT, str(e)
    if isinstance(e, torch.OutOfMemoryError):
        return EXIT_OOM, (
            f"out of GPU memory with --batch-size {args.batch_size}; try a smaller "
            "--batch-size (raise --grad-accum to keep the global batch)"
        )
    import traceback

    traceback.print_exception(e)
    return 1, f"{type(e).__name__}: {e}".splitlines()[0]


def _report_failure(tr: Trainer, args: argparse.Namespace, code: int, msg: str) -> None:
    if tr.metrics.file is None and tr.is_main:
        with contextlib.suppress(Exception):
            tr.open_metrics(getattr(tr, "out", None) or Path(args.out or default_out()))
    with contextlib.suppress(Exception):
        tr.metrics.write("error", tr.step, tr.epoch(), message=msg)
    if tr.is_main or code == EXIT_OOM:
        prefix = "" if tr.is_main else f"[rank {tr.rank}] "
        print(f"{prefix}error: {msg}", file=sys.stderr, flush=True)


def main(task: Task, argv: list[str] | None = None) -> None:
    args = build_parser(task).parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    tr = Trainer(task, args)
    code = 0
    try:
        reason = tr.train()
        tr.metrics.write("done", tr.step, tr.epoch(), reason=reason)
        tr.log(f"done ({reason}) at step {tr.step}")
    except Exception as e:
        code, msg = _failure(tr, args, e)
        _report_failure(tr, args, code, msg)
    tr.metrics.close()
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    sys.exit(code)
