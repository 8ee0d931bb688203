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

import precision as precision_choice
import torch
import torch.distributed as dist
from textutil import DataError
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817
from torch.utils.data import DataLoader
from trainbase import (
    EXIT_BAD_INPUT,
    EXIT_OOM,
    StepSampler,
    Task,
    TensorSet,
    UserError,
    add_parts,
    identity,
)
from trainckpt import CheckpointMixin
from traindist import all_gather_pickled
from traineval import EvalMixin
from trainio import CKPT_DIR, Metrics, atomic_save, default_out, load_checkpoint, resolve_resume
from trainopts import build_parser, check_args, lr_at, make_optimizer
from trainperf import Throughput, gpt_flops_per_token, peak_flops
from trainpredict import predict_main

__all__ = [
    "StepSampler",
    "Task",
    "TensorSet",
    "Trainer",
    "UserError",
    "add_parts",
    "atomic_save",
    "gpt_flops_per_token",
    "lr_at",
    "main",
]


class Trainer(CheckpointMixin, EvalMixin):
    def __init__(self, task: Task, args: argparse.Namespace):
        self.task, self.args = task, args
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.is_main = self.rank == 0
        self.stop_requested = False
        self.metrics = Metrics(None, {})
        self.step = self._first_step = 0
        # Replaced by what setup_device chooses; until then (an error before it) a concrete
        # value keeps every metrics line within metrics_schema.PRECISIONS.
        self.precision = "fp32" if args.precision == precision_choice.AUTO else args.precision
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
        try:
            choice = precision_choice.choose(
                a.precision,
                self.device.type,
                bf16_native=cuda and torch.cuda.is_bf16_supported(including_emulation=False),
                bf16_any=cuda and torch.cuda.is_bf16_supported(),
            )
        except precision_choice.PrecisionError as exc:
            raise UserError(str(exc)) from None
        self.precision = choice.precision
        if choice.note:
            self.log(choice.note)
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
            worker_init_fn=_worker_ignores_stop_signals,
            generator=torch.Generator(),  # its base-seed draw must not touch the global RNG
        )

    # ----------------------------------------------------------------- checkpoints
    def epoch(self, step: int | None = None) -> float:
        s = self.step if step is None else step
        n = max(1, len(self.task.train_set)) if self.task.train_set is not None else 1
        return s * self.args.grad_accum * self.args.batch_size * self.world / n

    # ----------------------------------------------------------------- main loop
    def on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def setup_stop_group(self) -> None:
        """A gloo group for the per-step agreement: with NCCL, a CPU all-reduce of two
        numbers does not synchronise the GPU queue (under gloo: the default group)."""
        self.stop_group = None
        if self.world > 1 and self.device.type == "cuda":
            self.stop_group = dist.new_group(backend="gloo")

    def agree(self, micro: list[tuple]) -> tuple[bool, float]:
        """Before every step, from the CPU batches: whether any rank got SIGTERM (so all
        stop, and checkpoint, at the step they are at) and the global number of loss terms
        of the step (see ``train_step``). One CPU all-reduce per step, no device sync."""
        count = float(sum(int(self.task.loss_count(b)) for b in micro))
        if self.world == 1:
            return self.stop_requested, count
        both = torch.tensor([float(self.stop_requested), count], dtype=torch.float64)
        dist.all_reduce(both, op=dist.ReduceOp.SUM, group=self.stop_group)
        return bool(both[0] > 0), float(both[1])

    def train(self) -> str:
        a = self.args
        signal.signal(signal.SIGTERM, self.on_sigterm)
        self.setup_device()
        self.setup_stop_group()
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
            self.meter.step_started()
            micro = [next(batches) for _ in range(a.grad_accum)]
            stop, count = self.agree(micro)
            if stop:
                reason = "sigterm"
                break
            lr, loss_sum, gnorm = self.train_step(micro, count)
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

    def train_step(self, micro: list[tuple], count: float) -> tuple[float, Any, Any]:
        """One optimizer step over the ``grad_accum`` micro-batches; (lr, loss, grad norm).

        Each micro-batch's summed loss is scaled by world / ``count`` (the loss terms of the
        global batch); with DDP averaging gradients over ranks that is the mean over the
        global batch, so b * accum * N trains exactly like one batch of that size for every
        task, whatever the padding."""
        a = self.args
        lr = lr_at(self.step, a)
        for grp in self.opt.param_groups:
            grp["lr"] = lr
        loss_sum = torch.zeros((), device=self.device)
        scale = self.world / max(count, 1.0)
        micro = [self.to_device(b) for b in micro]
        for i, batch in enumerate(micro):
            sync = self.world == 1 or i == a.grad_accum - 1
            ctx = contextlib.nullcontext() if sync else self.train_model.no_sync()
            with ctx:
                with self.amp():
                    loss = self.task.loss(self.train_model, batch) * scale
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


def _worker_ignores_stop_signals(worker_id: int) -> None:
    """DataLoader workers ignore SIGTERM/SIGINT: ``gpudesk stop-run`` (and Ctrl-C) signal the
    whole process group, and a worker killed mid-batch makes the main process fail before
    it can checkpoint. The main process owns shutdown; workers exit with it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["predict"]:
        predict_main(task, argv[1:])
        return
    args = build_parser(task).parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    if os.environ.get("GPUDESK_CHECK_ARGS"):
        # gpudesk submit's dry run: the arguments are valid; nothing else happens.
        sys.exit(0)
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
