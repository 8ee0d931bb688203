"""The task API of the training core: ``Task``, datasets and the resumable batch sampler.

Only torch is imported; scripts run as plain files in containers.
"""

from __future__ import annotations

import argparse
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


def identity(batch: Any) -> Any:
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
