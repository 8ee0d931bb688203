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
from textutil import PAD, DataError, read_pairs
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

    def last_scores(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, n_items + 1) next-item scores after the last position, in fp32 even
        under autocast (bf16 scores tie far more often; see ``rank_metrics``)."""
        h = self.stack(seq, causal=True)[:, -1]
        with torch.autocast(seq.device.type, enabled=False):
            return h.float() @ self.stack.tok.weight.float().t()


def rank_metrics(scores: torch.Tensor, target: torch.Tensor, k: int) -> tuple[float, float]:
    """Sums of HR@k and NDCG@k over the rows of ``scores`` (B, items) for ``target`` (B,).

    Ties count against the model (pessimistic): the target's rank is the number of other
    items scoring at least as high, so a constant model cannot score by tying everything."""
    t = scores.gather(1, target[:, None])
    rank = (scores >= t).sum(1) - 1  # 0-based; the target itself is not counted
    top = rank < k
    ndcg = (top.float() / torch.log2(rank.float() + 2)).sum().item()
    return float(top.sum().item()), ndcg


def read_histories(
    path: str | Path, fields: tuple[str, str] = ("user", "items"), header: str = "auto"
) -> list[list[str]]:
    """Item histories (``user<TAB>item item ...``, or CSV/JSONL with ``fields``) with at
    least 3 items; a header row is skipped like in the other tasks."""
    out = [items.split() for _, items in read_pairs(path, fields, header)]
    out = [h for h in out if len(h) >= 3]
    if not out:
        raise DataError(f"{path}: no histories with at least 3 items")
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
        p.add_argument("--user-field", default="user", help="JSONL key / CSV-TSV header name")
        p.add_argument("--items-field", default="items", help="JSONL key / CSV-TSV header name")

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        fields = (args.user_field, args.items_field)
        if args.synthetic:
            hist = synthetic_histories(5000, 1000, args.seed)
        else:
            hist = read_histories(args.data, fields, args.header)
        val_hist = read_histories(args.val, fields, args.header) if args.val else hist
        items = meta["items"] if meta else sorted({i for h in hist for i in h})
        self.items = items
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
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=PAD, reduction="sum")

    def loss_count(self, batch: tuple) -> torch.Tensor:
        return (batch[1] != PAD).sum()

    def add_predict_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--top-k", type=int, default=TOPK)
        p.add_argument("--include-seen", action="store_true", help="may recommend history items")

    def setup_predict(self, args: argparse.Namespace, meta: dict) -> None:
        self.items, self.n_items, self.max_len = meta["items"], len(meta["items"]), args.max_len

    def predict(self, model: nn.Module, lines: list[str], args, device) -> list[str]:
        """The top-k next items for each history line (``item item ...``, oldest first;
        items the model never saw are ignored)."""
        index = {item: k + 1 for k, item in enumerate(self.items)}
        seq = self.max_len
        hist = [[index[i] for i in line.split() if i in index][-seq:] for line in lines]
        x = torch.tensor([[PAD] * (seq - len(h)) + h for h in hist], device=device)
        scores = model(x)[:, -1].float()
        scores[:, PAD] = -math.inf
        if not args.include_seen:
            for row, h in enumerate(hist):
                scores[row, h] = -math.inf
        top = scores.topk(min(args.top_k, self.n_items), dim=-1).indices.tolist()
        return [" ".join(self.items[k - 1] for k in row if k != PAD) for row in top]

    def evaluate(self, model: nn.Module, raw: nn.Module, batches, amp) -> dict:
        loss_sum, hits, ndcg, count = 0.0, 0.0, 0.0, 0
        for (x, y), n, _ in batches:
            with amp():
                scores = raw.last_scores(x[:n])
            y = y[:n]  # noqa: PLW2901
            loss_sum += F.cross_entropy(scores, y, reduction="sum").item()
            scores[:, PAD] = -math.inf
            h, g = rank_metrics(scores, y, TOPK)
            hits, ndcg, count = hits + h, ndcg + g, count + n
        return {"loss": loss_sum, "hits": hits, "ndcg": ndcg, "count": count}

    def merge_eval(self, parts: list[dict]) -> dict:
        r = traincore.add_parts(parts)
        c = r["count"]
        return {"val_loss": r["loss"] / c, "hr10": r["hits"] / c, "ndcg10": r["ndcg"] / c}


if __name__ == "__main__":
    traincore.main(RecSys())
