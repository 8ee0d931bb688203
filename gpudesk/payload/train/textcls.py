"""Text / intent classification with a small Transformer encoder.

Byte-level (default) or character tokenization, so Chinese and English work with no
downloads. Input: TSV ``text<TAB>label`` or JSONL ``{"text": ..., "label": ...}``.
Eval metrics: accuracy and macro-F1. ``--hf-model PATH`` fine-tunes a local Hugging Face
checkpoint instead (needs ``transformers``; never touches the hub).

    python textcls.py --data data/intents.tsv --steps 300 --out runs/cls
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import layers
import textutil
import torch
import torch.nn.functional as F  # noqa: N812
import traincore
from textutil import BOS, PAD, DataError
from torch import nn

HERE = Path(__file__).resolve().parent


class Classifier(nn.Module):
    def __init__(self, vocab: int, n_labels: int, args: argparse.Namespace):
        super().__init__()
        self.enc = layers.Stack(
            vocab,
            args.max_len,
            args.dim,
            args.heads,
            args.layers,
            dropout=args.dropout,
            padding_idx=PAD,
        )
        self.head = nn.Linear(args.dim, n_labels)
        layers.init_weights(self)

    def forward(self, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        keep = attn.bool()
        h = self.enc(ids, mask=keep[:, None, None, :])
        w = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * w).sum(1) / w.sum(1).clamp(min=1.0)
        return self.head(pooled)


class HFClassifier(nn.Module):
    """Adapter giving a transformers sequence classifier the (ids, attn) -> logits API."""

    def __init__(self, path: str, n_labels: int):
        super().__init__()
        from transformers import AutoModelForSequenceClassification

        self.hf = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=n_labels, local_files_only=True, ignore_mismatched_sizes=True
        )

    def forward(self, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=ids, attention_mask=attn).logits


def synthetic_examples(n: int, seed: int) -> list[tuple[str, str]]:
    """Each class has its own keywords hidden among shared filler words."""
    rng = random.Random(seed)
    filler = ["the", "a", "please", "now", "today", "我", "想", "一下", "吧", "you"]
    keys = [
        [f"k{c}{j}" for j in range(3)] + [chr(0x4E00 + 40 * c + j) for j in range(3)]
        for c in range(6)
    ]
    out = []
    for _ in range(n):
        c = rng.randrange(len(keys))
        words = [*rng.choices(filler, k=rng.randint(2, 6)), rng.choice(keys[c])]
        rng.shuffle(words)
        out.append((" ".join(words), f"class{c}"))
    return out


def require_transformers() -> None:
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise traincore.UserError(
            "--hf-model needs the 'transformers' package, which is not installed here "
            "(pip install transformers), or drop --hf-model to use the built-in encoder"
        ) from None


class TextCls(traincore.Task):
    name = "textcls"
    description = __doc__.splitlines()[0]
    defaults = dict(
        data=str(HERE / "data" / "intents.tsv"),
        steps=300,
        lr=1e-3,
        eval_every=100,
        ckpt_every=100,
        batch_size=32,
    )
    model_args = ("layers", "heads", "dim", "max_len", "tokenizer", "hf_model")

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--tokenizer", choices=("byte", "char"), default="byte")
        p.add_argument("--max-len", type=int, default=96, help="tokens per text (padded)")
        p.add_argument("--layers", type=int, default=4)
        p.add_argument("--heads", type=int, default=4)
        p.add_argument("--dim", type=int, default=256)
        p.add_argument("--val-frac", type=float, default=0.15)
        p.add_argument("--hf-model", help="local Hugging Face checkpoint dir to fine-tune")

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        if args.hf_model:
            require_transformers()
            if not Path(args.hf_model).is_dir():
                raise DataError(f"--hf-model directory not found: {args.hf_model}")
        if args.synthetic:
            train, val = textutil.split_holdout(synthetic_examples(3000, args.seed), 0.1, 0)
        else:
            train = textutil.read_pairs(args.data, ("text", "label"))
            if args.val:
                val = textutil.read_pairs(args.val, ("text", "label"))
            else:
                train, val = textutil.split_holdout(train, args.val_frac, args.seed)
        labels = meta["labels"] if meta else sorted({lab for _, lab in train})
        index = {lab: i for i, lab in enumerate(labels)}
        for split, rows in (("training", train), ("validation", val)):
            for _, lab in rows:
                if lab not in index:
                    raise DataError(
                        f"unknown label {lab!r} in {split} data; known labels: " + ", ".join(labels)
                    )
        self.labels = labels
        seq = args.max_len
        if args.hf_model:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(args.hf_model, local_files_only=True)

            def encode(rows: list) -> tuple[torch.Tensor, torch.Tensor]:
                enc = tok(
                    [t for t, _ in rows],
                    padding="max_length",
                    truncation=True,
                    max_length=seq,
                    return_tensors="pt",
                )
                return enc["input_ids"], enc["attention_mask"]

            tok_state: dict = {"kind": "hf"}
            self.vocab = 0
        else:
            tk = (
                textutil.tokenizer_from_state(meta["tokenizer"])
                if meta
                else textutil.make_tokenizer(args.tokenizer, (t for t, _ in train))
            )

            def encode(rows: list) -> tuple[torch.Tensor, torch.Tensor]:
                ids = torch.tensor([textutil.pad_to([BOS, *tk.encode(t)], seq) for t, _ in rows])
                return ids, (ids != PAD).long()

            tok_state = tk.state()
            self.vocab = tk.vocab_size
        for name, rows in (("train_set", train), ("val_set", val)):
            ids, attn = encode(rows)
            y = torch.tensor([index[lab] for _, lab in rows])
            setattr(self, name, traincore.TensorSet(ids, attn, y))
        self.tokens_per_sample = seq
        return {"labels": labels, "tokenizer": tok_state}

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        if args.hf_model:
            return HFClassifier(args.hf_model, len(self.labels))
        return Classifier(self.vocab, len(self.labels), args)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        ids, attn, y = batch
        return F.cross_entropy(model(ids, attn).float(), y)

    def example_inputs(self, batch: tuple) -> tuple:
        return batch[0], batch[1]

    def evaluate(self, model: nn.Module, raw: nn.Module, batches: list, amp) -> dict:
        gold: list[int] = []
        pred: list[int] = []
        loss_sum = 0.0
        for (ids, attn, y), n in batches:
            with amp():
                logits = model(ids, attn).float()[:n]
            loss_sum += F.cross_entropy(logits, y[:n], reduction="sum").item()
            gold += y[:n].tolist()
            pred += logits.argmax(-1).tolist()
        acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
        return {
            "val_loss": loss_sum / len(gold),
            "accuracy": acc,
            "macro_f1": textutil.macro_f1(gold, pred),
        }


if __name__ == "__main__":
    traincore.main(TextCls())
