"""Shared training core for the bundled task scripts (textcls, translate, lm, recsys).

A task script defines a ``Task`` subclass (data, model, loss, evaluation) and calls
``traincore.main(MyTask())``. The core owns everything else: argument parsing, device and
DDP setup (torchrun; NCCL on GPU, gloo on CPU), AMP, torch.compile, gradient accumulation,
the LR schedule, resumable sampling, atomic checkpoints, SIGTERM handling, metrics.jsonl,
MFU, torch.export and the error policy (one line on stderr, an ``error`` metrics line and a
non-zero exit code; see metrics_schema for the codes).

Only torch and the sibling modules are imported; scripts run as plain files in containers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pickle
import random
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import precision as precision_choice
import torch
import torch.distributed as dist
from textutil import DataError
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: N817
from torch.utils.data import DataLoader

EXIT_BAD_INPUT = 2
EXIT_OOM = 3
CKPT_FORMAT = 1
CKPT_DIR = "ckpt"
WARMUP_ITERS = 3  # steps excluded from throughput/MFU averages (compile, allocator warm-up)

# Dense bf16 tensor-core peak FLOP/s per GPU, matched by substring of the device name.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def all_gather_pickled(obj: Any, device: torch.device) -> list[Any]:
    """Every rank's ``obj``, in rank order.

    torch's ``all_gather_object`` goes through NumPy, which the containers need not have;
    this sends the pickled bytes as uint8 tensors instead.
    """
    data = pickle.dumps(obj)
    payload = torch.tensor(list(data), dtype=torch.uint8, device=device)
    size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    longest = int(max(int(s.item()) for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    chunks = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(chunks, padded)
    return [
        pickle.loads(bytes(chunk[: int(n.item())].cpu().tolist()))
        for chunk, n in zip(chunks, sizes, strict=True)
    ]


class UserError(Exception):
    """A problem with the input or configuration: one line on stderr, exit code 2."""


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def gpt_flops_per_token(n_params: int, layers: int, heads: int, head_dim: int, seq: int) -> float:
    """PaLM appendix B / nanoGPT: 6N + 12·L·H·Q·T FLOPs per token (forward + backward)."""
    return 6 * n_params + 12 * layers * heads * head_dim * seq


class Task:
    """Base class of a task script. Subclasses set ``name`` and implement the hooks."""

    name = ""
    description = ""
    defaults: dict[str, Any] = {}
    model_args: tuple[str, ...] = ()  # args restored from a checkpoint on --resume
    eval_batches: int | None = None  # default cap on validation batches (None: all)
    tokens_per_sample = 1
    train_set: Any = None  # dataset with __len__ and __getitems__(list[int]) -> tuple
    val_set: Any = None

    def add_args(self, p: argparse.ArgumentParser) -> None:
        pass

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        """Load or synthesise data, fill train_set/val_set; return metadata for checkpoints.

        ``meta`` is the checkpoint's metadata on --resume (reuse its vocabulary/labels)."""
        raise NotImplementedError

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, raw: nn.Module, batches: list, amp: Any) -> dict:
        """Return {"val_loss": ..., task metrics...}. ``batches`` holds (batch, n_valid)."""
        raise NotImplementedError

    def example_inputs(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Positional inputs of ``model.forward`` for torch.export."""
        return (batch[0],)

    def flops_per_token(self, raw: nn.Module) -> float | None:
        return None


class TensorSet:
    """A dataset of equally long tensors with batched indexing (``__getitems__``)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        i = torch.as_tensor(idx)
        return tuple(t[i] for t in self.tensors)


def _identity(batch: Any) -> Any:
    return batch


class StepSampler:
    """Deterministic, resumable batch sampler.

    Micro-batch ``m`` of the run is a fixed function of (seed, m): an epoch-wise permutation
    sliced into global batches, each rank taking every world_size-th index. Resuming only
    needs the micro-batch counter, which is derived from the optimizer step."""

    def __init__(self, n: int, batch: int, rank: int, world: int, seed: int, *, start: int):
        self.n, self.batch, self.rank, self.world = n, batch, rank, world
        self.seed, self.start = seed, start
        self._perm_epoch, self._perm = -1, torch.empty(0)

    def indices(self, m: int) -> list[int]:
        g = self.batch * self.world
        if self.n >= g:
            per_epoch = self.n // g
            epoch, k = divmod(m, per_epoch)
            if epoch != self._perm_epoch:
                gen = torch.Generator().manual_seed(self.seed * 7919 + epoch)
                self._perm, self._perm_epoch = torch.randperm(self.n, generator=gen), epoch
            idx = self._perm[k * g : (k + 1) * g]
        else:  # tiny data set: sample with replacement
            gen = torch.Generator().manual_seed(self.seed * 7919 + m)
            idx = torch.randint(self.n, (g,), generator=gen)
        return idx[self.rank :: self.world].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        m = self.start
        while True:
            yield self.indices(m)
            m += 1


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
        a, task = self.args, self.task
        signal.signal(signal.SIGTERM, self.on_sigterm)
        self.setup_device()
        self.setup_out()
        self.open_metrics(self.out)
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
        n_params = sum(p.numel() for p in self.raw.parameters())
        self.log(
            f"{task.name}: {n_params / 1e6:.2f}M params, {len(task.train_set)} train / "
            f"{len(task.val_set)} val samples, device {self.device}, world {self.world}, "
            f"{self.precision}{' + compile' if self.compiled else ''}, out {self.out}"
        )
        self.model = torch.compile(self.raw) if a.compile else self.raw
        train_model: nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            train_model = DDP(self.model, device_ids=ids)
        fpt = task.flops_per_token(self.raw)
        peak = peak_flops(self.device)

        sampler = StepSampler(
            len(task.train_set),
            a.batch_size,
            self.rank,
            self.world,
            a.seed,
            start=self.step * a.grad_accum,
        )
        loader = DataLoader(
            task.train_set,
            batch_sampler=sampler,
            collate_fn=_identity,
            pin_memory=self.device.type == "cuda",
            num_workers=a.workers,
            generator=torch.Generator(),  # its base-seed draw must not touch the global RNG
        )
        batches = iter(loader)
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        samples_per_step = a.batch_size * a.grad_accum * self.world
        win_t, win_step = time.perf_counter(), self.step
        first_step = self._first_step = self.step
        last_eval = last_ckpt = -1
        reason = "completed"
        self.model.train()
        while self.step < a.steps:
            if self.should_stop():
                reason = "sigterm"
                break
            t_step = time.perf_counter()
            lr = lr_at(self.step, a)
            for grp in self.opt.param_groups:
                grp["lr"] = lr
            loss_sum = torch.zeros((), device=self.device)
            for micro in range(a.grad_accum):
                batch = self.to_device(next(batches))
                sync = self.world == 1 or micro == a.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else train_model.no_sync()
                with ctx:
                    with self.amp():
                        loss = task.loss(train_model, batch) / a.grad_accum
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
            done_steps = self.step - first_step
            if done_steps == WARMUP_ITERS and self.step % a.log_every:
                if cuda:
                    torch.cuda.synchronize()
                win_t, win_step = time.perf_counter(), self.step
            if self.step % a.log_every == 0 or self.step == a.steps:
                if self.world > 1:
                    dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
                loss_v = loss_sum.item()  # synchronises the device
                now = time.perf_counter()
                n = self.step - win_step
                elapsed = now - win_t
                if done_steps <= WARMUP_ITERS or n <= 0:
                    n, elapsed = 1, now - t_step
                step_time = elapsed / n
                sps = samples_per_step / step_time
                tps = sps * task.tokens_per_sample
                mfu = None
                if fpt and peak:
                    mfu = round(100 * fpt * tps / self.world / peak, 3)
                mem = (
                    round(torch.cuda.max_memory_allocated(self.device) / 2**30, 3) if cuda else None
                )
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
                    + (f" mem {mem:.2f} GiB" if mem is not None else "")
                )
                win_t, win_step = time.perf_counter(), self.step
            if a.eval_every and self.step % a.eval_every == 0:
                self.run_eval()
                last_eval = self.step
            if a.ckpt_every and self.step % a.ckpt_every == 0:
                self.save_checkpoint()
                last_ckpt = self.step
            if self.step in (last_eval, last_ckpt):  # keep eval/ckpt time out of throughput
                win_t, win_step = time.perf_counter(), self.step
        if reason == "completed" and last_eval != self.step:
            self.run_eval()
        if last_ckpt != self.step:
            self.save_checkpoint()
        if reason == "completed" and a.export and self.is_main:
            self.export()
        return reason

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


def main(task: Task, argv: list[str] | None = None) -> None:
    args = build_parser(task).parse_args(argv)
    for name in ("steps", "batch_size", "grad_accum", "log_every", "keep"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
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
    except (UserError, DataError) as e:
        code, msg = EXIT_BAD_INPUT, str(e)
    except torch.OutOfMemoryError:
        code = EXIT_OOM
        msg = (
            f"out of GPU memory with --batch-size {args.batch_size}; try a smaller "
            "--batch-size (raise --grad-accum to keep the global batch)"
        )
    except Exception as e:
        import traceback

        traceback.print_exc()
        code, msg = 1, f"{type(e).__name__}: {e}".splitlines()[0]
    if code:
        if tr.metrics.file is None and tr.is_main:
            with contextlib.suppress(Exception):
                tr.open_metrics(getattr(tr, "out", None) or Path(args.out or default_out()))
        with contextlib.suppress(Exception):
            tr.metrics.write("error", tr.step, tr.epoch(), message=msg)
        if tr.is_main or code == EXIT_OOM:
            prefix = "" if tr.is_main else f"[rank {tr.rank}] "
            print(f"{prefix}error: {msg}", file=sys.stderr, flush=True)
    tr.metrics.close()
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    sys.exit(code)
