"""The task API of the training core: ``Task``, datasets and the resumable batch sampler.

Only torch is imported; scripts run as plain files in containers.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

EXIT_BAD_INPUT = 2
EXIT_OOM = 3


class UserError(Exception):
    """A problem with the input or configuration: one line on stderr, exit code 2."""


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

    def note(self, msg: str | None) -> None:
        """Print a note once (rank 0) while setting up."""
        if msg and os.environ.get("RANK", "0") == "0":
            print(msg, flush=True)

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        """Load or synthesise data, fill train_set/val_set; return metadata for checkpoints.

        ``meta`` is the checkpoint's metadata on --resume (reuse its vocabulary/labels)."""
        raise NotImplementedError

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The *summed* loss of the batch's loss terms (``reduction="sum"``); the core
        divides by the global ``loss_count`` so accumulation and DDP are exact."""
        raise NotImplementedError

    def loss_count(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """How many loss terms ``loss`` sums over (default: one per sample). Called on the
        CPU batch, before it moves to the device, so counting never waits for the GPU."""
        return torch.tensor(batch[0].shape[0], device=batch[0].device)

    def evaluate(self, model: nn.Module, raw: nn.Module, batches: Any, amp: Any) -> dict:
        """This rank's partial validation result (sums, lists): picklable, merged over ranks
        by ``merge_eval``. ``batches`` yields (batch, n_valid, validation indices)."""
        raise NotImplementedError

    def merge_eval(self, parts: list[dict]) -> dict:
        """{"val_loss": ..., task metrics...} from every rank's ``evaluate`` result."""
        raise NotImplementedError

    def example_inputs(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Positional inputs of ``model.forward`` for torch.export."""
        return (batch[0],)

    def flops_per_token(self, raw: nn.Module) -> float | None:
        return None

    # --- predict (``<task>.py predict``; see trainpredict)
    def add_predict_args(self, p: argparse.ArgumentParser) -> None:
        pass

    def setup_predict(self, args: argparse.Namespace, meta: dict) -> None:
        """Restore what ``build_model`` and ``predict`` need (vocabulary, labels) from
        a checkpoint's metadata, without reading any data."""
        raise NotImplementedError

    def predict(
        self, model: nn.Module, lines: list[str], args: argparse.Namespace, device: torch.device
    ) -> list[str]:
        """One output line per input line, using only ``model``'s forward pass."""
        raise NotImplementedError


class TensorSet:
    """A dataset of equally long tensors with batched indexing (``__getitems__``)."""

    def __init__(self, *tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, ...]:
        i = torch.as_tensor(idx)
        return tuple(t[i] for t in self.tensors)


def identity(batch: Any) -> Any:
    return batch


def add_parts(parts: list[dict]) -> dict:
    """Key-wise sum (numbers) or concatenation (lists) of per-rank evaluation results."""
    out = dict(parts[0])
    for part in parts[1:]:
        for k, v in part.items():
            out[k] = out[k] + v
    return out


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
