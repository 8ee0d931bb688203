"""Validation and export of the ``Trainer`` (a mixin: it uses the trainer's attributes).

Evaluation is sharded: rank r scores validation samples r, r + W, r + 2W, ... (the first
``--eval-batches`` * ``--batch-size`` samples when capped), one batch on the device at a
time; every rank returns a mergeable partial result (sums, lists) and rank 0 merges them
with the task's ``merge_eval``. No rank idles in a barrier while another evaluates.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from trainbase import UserError
from traindist import all_gather_pickled
from trainio import atomic_save


class EvalMixin:
    # set by Trainer
    task: Any
    args: Any
    raw: Any
    model: Any
    out: Any
    step: int
    world: int
    rank: int
    is_main: bool
    device: torch.device
    metrics: Any

    def log(self, msg: str) -> None:
        raise NotImplementedError

    def epoch(self, step: int | None = None) -> float:
        raise NotImplementedError

    def amp(self) -> Any:
        raise NotImplementedError

    def to_device(self, batch: tuple) -> tuple:
        nb = self.device.type == "cuda"
        return tuple(t.to(self.device, non_blocking=nb) for t in batch)

    def val_batches(self, shard: bool = True) -> Iterator[tuple[tuple, int, list[int]]]:
        """(batch on the device, valid rows, their validation-set indices), one at a time.

        Batches have a fixed shape (the last is padded by repeating its first row) so a
        compiled model does not recompile; only the first ``valid`` rows count."""
        vs, b = self.task.val_set, self.args.batch_size
        n = len(vs)
        if self.args.eval_batches is not None:
            n = min(n, self.args.eval_batches * b)
        own = range(self.rank, n, self.world) if shard else range(n)
        for start in range(0, len(own), b):
            idx = list(own[start : start + b])
            rows = idx + [idx[0]] * (b - len(idx))
            yield self.to_device(vs.__getitems__(rows)), len(idx), idx

    def run_eval(self) -> None:
        self.model.eval()
        with torch.no_grad():
            part = self.task.evaluate(self.model, self.raw, self.val_batches(), self.amp)
        self.model.train()
        parts = all_gather_pickled(part, self.device) if self.world > 1 else [part]
        if not self.is_main:
            return
        res = {k: float(v) for k, v in self.task.merge_eval(parts).items()}
        self.metrics.write("eval", self.step, self.epoch(), **res)
        self.log(f"eval step {self.step}: " + " ".join(f"{k} {v:.4f}" for k, v in res.items()))

    def export(self) -> None:
        """torch.export the eager model with a dynamic batch dimension and check that it
        reproduces eager outputs at the training batch size and at batch size 1."""
        self.raw.eval()
        batch, _, _ = next(self.val_batches(shard=False))
        inputs = self.task.example_inputs(batch)
        batch_dim = torch.export.Dim("batch", min=1, max=4096)
        dynamic = tuple({0: batch_dim} for _ in inputs)
        with torch.no_grad():
            ep = torch.export.export(self.raw, inputs, dynamic_shapes=dynamic)
            for probe in (inputs, tuple(t[:1] for t in inputs)):
                ref, got = self.raw(*probe), ep.module()(*probe)
                if not torch.allclose(ref, got, rtol=1e-3, atol=1e-4):
                    err = (ref - got).abs().max().item()
                    raise UserError(
                        f"exported program does not match eager outputs (max err {err:.3g})"
                    )
        path = self.out / "model.pt2"
        atomic_save(ep, path, saver=torch.export.save)
        self.log(f"exported {path} (dynamic batch size; matches eager outputs)")
