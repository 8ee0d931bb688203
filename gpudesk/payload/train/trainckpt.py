"""Checkpoint save/restore of the ``Trainer`` (a mixin: it uses the trainer's attributes)."""

from __future__ import annotations

import random
import time
from typing import Any

import torch
import torch.distributed as dist
from trainbase import UserError
from traindist import all_gather_pickled
from trainio import CKPT_DIR, CKPT_FORMAT, atomic_save, list_checkpoints


class CheckpointMixin:
    # set by Trainer
    task: Any
    args: Any
    raw: Any
    opt: Any
    scaler: Any
    meta: dict
    out: Any
    step: int
    world: int
    rank: int
    is_main: bool
    device: torch.device
    metrics: Any
    resume_path: Any

    def log(self, msg: str) -> None:
        raise NotImplementedError

    def epoch(self, step: int | None = None) -> float:
        raise NotImplementedError

    def rng_state(self) -> dict:
        st: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if self.device.type == "cuda":
            st["cuda"] = torch.cuda.get_rng_state(self.device)
        return st

    def checkpoint_dict(self, rngs: list) -> dict:
        a = self.args
        return {
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

    def save_checkpoint(self) -> None:
        rngs = [self.rng_state()]
        if self.world > 1:
            rngs = all_gather_pickled(self.rng_state(), self.device)
        if self.is_main:
            t0 = time.perf_counter()
            path = self.out / CKPT_DIR / f"step_{self.step:08d}.pt"
            atomic_save(self.checkpoint_dict(rngs), path)
            for old in list_checkpoints(self.out)[: -max(1, self.args.keep)]:
                old.unlink(missing_ok=True)
            seconds = round(time.perf_counter() - t0, 3)
            self.metrics.write("ckpt", self.step, self.epoch(), path=str(path), seconds=seconds)
            self.log(f"checkpoint {path} ({seconds:.2f} s)")
        if self.world > 1:
            dist.barrier()

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
