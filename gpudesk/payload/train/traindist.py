"""Collectives of the training core that work without NumPy."""

from __future__ import annotations

import pickle
from typing import Any

import torch
import torch.distributed as dist


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
