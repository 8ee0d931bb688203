"""SASRec-style sequential recommender: a causal Transformer over item histories.

Input: one user per line, ``user<TAB>item item item ...`` (oldest first; item ids are any
whitespace-free strings). Leave-one-out: the model trains on each history without its last
item and is evaluated on ranking that last item among all items (full ranking, no negative
sampling). Eval metrics: HR@10 and NDCG@10.

    python recsys.py --data data/histories.tsv --steps 500
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import layers
import torch
import torch.nn.functional as F  # noqa: N812
import traincore
from textutil import PAD, DataError, read_lines
from torch import nn

HERE = Path(__file__).resolve().parent
TOPK = 10


class SASRec(nn.Module):
    def __init__(self, n_items: int, args: argparse.Namespace):
        super().__init__()
        self.stack = layers.Stack(
            n_items + 1,
            args.max_len,
            args.dim,
            args.heads,
            args.layers,
            dropout=args.dropout,
            padding_idx=PAD,
        )
        layers.init_weights(self)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) item ids, left-padded with 0 -> (B, T, n_items + 1) next-item scores."""
        h = self.stack(seq, causal=True)
        return h @ self.stack.tok.weight.t()


def read_histories(path: str | Path) -> list[list[str]]:
    p = Path(path)
    lines = read_lines(p)
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].split():
            raise DataError(f"{p}:{n}: expected 'user<TAB>item item ...'")
        items = parts[1].split()
        if len(items) >= 3:
            out.append(items)
    if not out:
        raise DataError(f"{p}: no histories with at least 3 items")
    return out


def synthetic_histories(users: int, items: int, seed: int) -> list[list[str]]:
    """Users walk along item chains (i -> i+1) with random jumps."""
    rng = random.Random(seed)
    out = []
    for _ in range(users):
        pos = rng.randrange(items)
        seq = []
        for _ in range(rng.randint(5, 40)):
            seq.append(f"s{pos}")
            pos = (pos + 1) % items if rng.random() < 0.8 else rng.randrange(items)
        out.append(seq)
    return out


class RecSys(traincore.Task):
    name = "recsys"
    description = __doc__.splitlines()[0]
    defaults = dict(
        data=str(HERE / "data" / "histories.tsv"),
        steps=500,
        lr=1e-3,
        eval_every=100,
        ckpt_every=100,
        batch_size=64,
        dropout=0.2,
    )
    model_args = ("layers", "heads", "dim", "max_len")

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-len", type=int, default=50, help="history length (left-padded)")
        p.add_argument("--layers", type=int, default=2)
        p.add_argument("--heads", type=int, default=2)
        p.add_argument("--dim", type=int, default=64)

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        if args.synthetic:
            hist = synthetic_histories(5000, 1000, args.seed)
        else:
            hist = read_histories(args.data)
        val_hist = read_histories(args.val) if args.val else hist
        items = meta["items"] if meta else sorted({i for h in hist for i in h})
        index = {item: k + 1 for k, item in enumerate(items)}  # 0 is padding
        for h in val_hist:
            for it in h:
                if it not in index:
                    raise DataError(f"unknown item {it!r} in validation histories")
        self.n_items = len(items)
        seq = args.max_len

        def left_pad(ids: list[int]) -> list[int]:
            ids = ids[-seq:]
            return [PAD] * (seq - len(ids)) + ids

        # training: each history minus its held-out last item, shifted by one
        seqs = [[index[i] for i in h[:-1]][-(seq + 1) :] for h in hist]
        x = torch.tensor([left_pad(s[:-1]) for s in seqs])
        y = torch.tensor([left_pad(s[1:]) for s in seqs])
        self.train_set = traincore.TensorSet(x, y)
        vx = torch.tensor([left_pad([index[i] for i in h[:-1]]) for h in val_hist])
        vy = torch.tensor([index[h[-1]] for h in val_hist])
        self.val_set = traincore.TensorSet(vx, vy)
        self.tokens_per_sample = seq
        return {"items": items}

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        return SASRec(self.n_items, args)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        x, y = batch
        logits = model(x).float()
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=PAD)

    def evaluate(self, model: nn.Module, raw: nn.Module, batches: list, amp) -> dict:
        loss_sum, hits, ndcg, count = 0.0, 0.0, 0.0, 0
        for (x, y), n in batches:
            with amp():
                scores = model(x)[:n, -1].float()
            y = y[:n]  # noqa: PLW2901
            loss_sum += F.cross_entropy(scores, y, reduction="sum").item()
            scores[:, PAD] = -math.inf
            target = scores.gather(1, y[:, None])
            rank = (scores > target).sum(1)  # 0-based rank of the held-out item
            top = rank < TOPK
            hits += top.sum().item()
            ndcg += (top.float() / torch.log2(rank.float() + 2)).sum().item()
            count += n
        return {"val_loss": loss_sum / count, "hr10": hits / count, "ndcg10": ndcg / count}


if __name__ == "__main__":
    traincore.main(RecSys())
