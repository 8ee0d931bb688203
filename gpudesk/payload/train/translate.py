"""Sentence translation with an encoder-decoder Transformer (greedy or beam decoding).

Input: TSV ``source<TAB>target`` or JSONL ``{"src": ..., "tgt": ...}``; byte-level or
character tokens shared by both sides, so Chinese and English work with no downloads.
Eval metrics: token-level val_loss and corpus BLEU (textutil's implementation of sacrebleu's
default corpus BLEU: 13a, or zh for Chinese references, exp smoothing; equal to 0.01).

    python translate.py --data data/translation.tsv --steps 1000 --decode beam
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import bleuscore
import layers
import textutil
import torch
import torch.nn.functional as F  # noqa: N812
import traincore
from textutil import BOS, EOS, PAD
from torch import nn

HERE = Path(__file__).resolve().parent


class Seq2Seq(nn.Module):
    def __init__(self, vocab: int, args: argparse.Namespace):
        super().__init__()
        a = args
        self.enc = layers.Stack(
            vocab, a.max_len, a.dim, a.heads, a.layers, dropout=a.dropout, padding_idx=PAD
        )
        self.dec = layers.Stack(
            vocab,
            a.max_len,
            a.dim,
            a.heads,
            a.layers,
            dropout=a.dropout,
            cross=True,
            padding_idx=PAD,
        )
        self.head = nn.Linear(a.dim, vocab, bias=False)
        layers.init_weights(self)
        self.head.weight = self.dec.tok.weight  # tied output embedding

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mask = layers.key_mask(src, PAD)
        return self.enc(src, mask=mask), mask

    def decode(self, tgt: torch.Tensor, mem: torch.Tensor, mem_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.dec(tgt, causal=True, mem=mem, mem_mask=mem_mask))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        mem, mask = self.encode(src)
        return self.decode(tgt_in, mem, mask)


def _cut(seq: list[int]) -> list[int]:
    return seq[: seq.index(EOS)] if EOS in seq else seq


@torch.no_grad()
def greedy(model: Seq2Seq, src: torch.Tensor, max_len: int) -> list[list[int]]:
    mem, mask = model.encode(src)
    ys = torch.full((src.shape[0], 1), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        nxt = model.decode(ys, mem, mask)[:, -1].float().argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        ys = torch.cat([ys, nxt[:, None]], 1)
        done |= nxt == EOS
        if bool(done.all()):
            break
    return [_cut(row[1:]) for row in ys.tolist()]


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, max_len: int, k: int) -> list[list[int]]:
    """Beam search per sentence; hypotheses scored by log-probability / length."""
    results = []
    for i in range(src.shape[0]):
        mem, mask = model.encode(src[i : i + 1])
        beams = [(0.0, [BOS])]
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_len - 1):
            ys = torch.tensor([b[1] for b in beams], device=src.device)
            logp = model.decode(ys, mem.expand(len(beams), -1, -1), mask)[:, -1]
            logp = F.log_softmax(logp.float(), -1)
            scores = torch.tensor([b[0] for b in beams], device=src.device)[:, None] + logp
            top, idx = scores.view(-1).topk(k)
            vocab = logp.shape[-1]
            beams = []
            for s, j in zip(top.tolist(), idx.tolist(), strict=True):
                b = j // vocab
                tok = j % vocab
                prev = ys[b].tolist()
                if tok == EOS:
                    finished.append((s / len(prev), prev[1:]))
                else:
                    beams.append((s, [*prev, tok]))
            if len(finished) >= k or not beams:
                break
        finished += [(s / len(seq), seq[1:]) for s, seq in beams]
        results.append(max(finished, key=lambda t: t[0])[1])
    return results


@torch.no_grad()
def greedy_fixed(model: nn.Module, src: torch.Tensor, max_len: int) -> list[list[int]]:
    """Greedy decoding through ``model(src, tgt_in)`` alone, at the fixed length ``max_len``
    (causal attention: position t only sees tokens up to t), so it also runs an exported
    program. Same result as ``greedy``, at the cost of re-encoding every step."""
    ys = torch.full((src.shape[0], max_len), PAD, dtype=torch.long, device=src.device)
    ys[:, 0] = BOS
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for t in range(max_len - 1):
        nxt = model(src, ys)[:, t].float().argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        ys[:, t + 1] = nxt
        done |= nxt == EOS
        if bool(done.all()):
            break
    return [_cut(row[1:]) for row in ys.tolist()]


def synthetic_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """Made-up words, translated word by word by a fixed dictionary, in reversed order."""
    rng = random.Random(0)
    words = ["".join(rng.choices("bcdfgklmnprstvz", k=2)) + rng.choice("aeiou") for _ in range(40)]
    zh = [chr(0x4E00 + 17 * i) for i in range(40)]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        idx = rng.choices(range(40), k=rng.randint(2, 6))
        out.append((" ".join(words[i] for i in idx), "".join(zh[i] for i in reversed(idx))))
    return out


class Translate(traincore.Task):
    name = "translate"
    description = __doc__.splitlines()[0]
    defaults = dict(
        data=str(HERE / "data" / "translation.tsv"),
        steps=1000,
        lr=1e-3,
        eval_every=250,
        ckpt_every=250,
        batch_size=32,
    )
    model_args = ("layers", "heads", "dim", "max_len", "tokenizer", "reverse")

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--tokenizer", default="byte", help=textutil.TOKENIZER_HELP)
        p.add_argument("--max-len", type=int, default=96, help="tokens per side (padded)")
        p.add_argument("--layers", type=int, default=3, help="encoder and decoder layers each")
        p.add_argument("--heads", type=int, default=4)
        p.add_argument("--dim", type=int, default=256)
        p.add_argument("--reverse", action="store_true", help="translate column 2 -> column 1")
        p.add_argument("--decode", choices=("greedy", "beam"), default="greedy")
        p.add_argument("--beam-size", type=int, default=4)
        p.add_argument("--bleu-samples", type=int, default=100, help="val pairs decoded")
        p.add_argument("--val-frac", type=float, default=0.1)
        p.add_argument("--src-field", default="src", help="JSONL key / CSV-TSV header name")
        p.add_argument("--tgt-field", default="tgt", help="JSONL key / CSV-TSV header name")

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        if args.synthetic:
            pairs = synthetic_pairs(4000, args.seed)
            train, val = textutil.split_holdout(pairs, 0.05, 0)
        else:
            fields = (args.src_field, args.tgt_field)
            train = textutil.read_pairs(args.data, fields, args.header)
            if args.val:
                val = textutil.read_pairs(args.val, fields, args.header)
            else:
                train, val = textutil.split_holdout(train, args.val_frac, args.seed)
        if args.reverse:
            train = [(b, a) for a, b in train]
            val = [(b, a) for a, b in val]
        tk = (
            textutil.tokenizer_from_state(meta["tokenizer"])
            if meta
            else textutil.make_tokenizer(args.tokenizer, (t for pair in train for t in pair))
        )
        self.tok, self.vocab, self.val_pairs = tk, tk.vocab_size, val
        seq = args.max_len

        def tensors(rows: list) -> traincore.TensorSet:
            src_ids = [tk.encode(s) for s, _ in rows]
            tgt_ids = [tk.encode(t) for _, t in rows]
            lens = (1 + max(len(a), len(b)) for a, b in zip(src_ids, tgt_ids, strict=True))
            self.note(textutil.truncation_note(lens, seq, "pairs"))
            src = [textutil.pad_to([*s[: seq - 1], EOS], seq) for s in src_ids]
            tgt = [t[: seq - 1] for t in tgt_ids]
            tgt_in = [textutil.pad_to([BOS, *t], seq) for t in tgt]
            tgt_out = [textutil.pad_to([*t, EOS], seq) for t in tgt]
            return traincore.TensorSet(*(torch.tensor(x) for x in (src, tgt_in, tgt_out)))

        self.train_set, self.val_set = tensors(train), tensors(val)
        self.tokens_per_sample = 2 * seq
        return {"tokenizer": tk.state()}

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        self.args = args
        return Seq2Seq(self.vocab, args)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        src, tgt_in, tgt_out = batch
        logits = model(src, tgt_in)
        return F.cross_entropy(
            logits.flatten(0, 1).float(), tgt_out.flatten(), ignore_index=PAD, reduction="sum"
        )

    def loss_count(self, batch: tuple) -> torch.Tensor:
        return (batch[2] != PAD).sum()

    def example_inputs(self, batch: tuple) -> tuple:
        return batch[0], batch[1]

    def add_predict_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--decode", choices=("greedy", "beam"), default="greedy")
        p.add_argument("--beam-size", type=int, default=4)

    def setup_predict(self, args: argparse.Namespace, meta: dict) -> None:
        self.tok = textutil.tokenizer_from_state(meta["tokenizer"])
        self.vocab, self.max_len = self.tok.vocab_size, args.max_len

    def predict(self, model: nn.Module, lines: list[str], args, device) -> list[str]:
        """The translation of each line (beam search needs the checkpoint, not --export)."""
        seq = self.max_len
        src = torch.tensor(
            [textutil.pad_to([*self.tok.encode(s)[: seq - 1], EOS], seq) for s in lines],
            device=device,
        )
        if args.decode == "beam":
            if not isinstance(model, Seq2Seq):
                raise traincore.UserError("--decode beam needs the checkpoint; drop --export")
            out = beam_search(model, src, seq, args.beam_size)
        else:
            out = greedy_fixed(model, src, seq)
        return [self.tok.decode(ids) for ids in out]

    def evaluate(self, model: nn.Module, raw: nn.Module, batches, amp) -> dict:
        """Loss over this rank's shard; BLEU hypotheses for its share of the first
        ``--bleu-samples`` validation pairs (merged and scored on rank 0)."""
        a = self.args
        loss_sum, count = 0.0, 0
        hyps: list[tuple[int, str]] = []
        for (src, tgt_in, tgt_out), n, idx in batches:
            with amp():
                logits = model(src, tgt_in)
            logits, gold = logits[:n].float(), tgt_out[:n]
            loss_sum += F.cross_entropy(
                logits.flatten(0, 1), gold.flatten(), ignore_index=PAD, reduction="sum"
            ).item()
            count += int((gold != PAD).sum())
            keep = [k for k, i in enumerate(idx) if i < a.bleu_samples]
            if keep:
                hyps += zip([idx[k] for k in keep], self.decode(raw, src[keep], amp), strict=True)
        return {"loss": loss_sum, "count": count, "hyps": hyps}

    def decode(self, raw: nn.Module, src: torch.Tensor, amp) -> list[str]:
        a = self.args
        with amp():
            if a.decode == "beam":
                out = beam_search(raw, src, a.max_len, a.beam_size)
            else:
                out = greedy(raw, src, a.max_len)
        return [self.tok.decode(ids) for ids in out]

    def merge_eval(self, parts: list[dict]) -> dict:
        r = traincore.add_parts(parts)
        hyps = sorted(r["hyps"])
        refs = [self.val_pairs[i][1] for i, _ in hyps]
        return {
            "val_loss": r["loss"] / max(1, r["count"]),
            "bleu": bleuscore.bleu([h for _, h in hyps], refs),
        }


if __name__ == "__main__":
    traincore.main(Translate())
