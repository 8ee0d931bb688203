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
HF_LR = 3e-5  # default peak lr with --hf-model (BERT-style fine-tuning uses 2e-5..5e-5)


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


def default_lr(args: argparse.Namespace) -> float:
    """--lr if given; else 1e-3 from scratch, HF_LR when fine-tuning (a pretrained model
    wants a far smaller step)."""
    if args.lr is not None:
        return float(args.lr)
    return HF_LR if args.hf_model else 1e-3


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
        lr=None,  # 1e-3, or HF_LR with --hf-model (see setup)
        eval_every=100,
        ckpt_every=100,
        batch_size=32,
    )
    model_args = ("layers", "heads", "dim", "max_len", "tokenizer", "hf_model")

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--tokenizer", default="byte", help=textutil.TOKENIZER_HELP)
        p.add_argument("--max-len", type=int, default=96, help="tokens per text (padded)")
        p.add_argument("--layers", type=int, default=4)
        p.add_argument("--heads", type=int, default=4)
        p.add_argument("--dim", type=int, default=256)
        p.add_argument("--val-frac", type=float, default=0.15)
        p.add_argument("--hf-model", help="local Hugging Face checkpoint dir to fine-tune")
        p.add_argument("--text-field", default="text", help="JSONL key / CSV-TSV header name")
        p.add_argument("--label-field", default="label", help="JSONL key / CSV-TSV header name")

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        args.lr = default_lr(args)
        if args.hf_model:
            require_transformers()
            if not Path(args.hf_model).is_dir():
                raise DataError(f"--hf-model directory not found: {args.hf_model}")
        if args.synthetic:
            train, val = textutil.split_holdout(synthetic_examples(3000, args.seed), 0.1, 0)
        else:
            fields = (args.text_field, args.label_field)
            train = textutil.read_pairs(args.data, fields, args.header)
            textutil.check_labels(args.data, train)
            if args.val:
                val = textutil.read_pairs(args.val, fields, args.header)
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
        tok_state = self.setup_tokenizer(args, meta, (t for t, _ in train))
        for name, rows in (("train_set", train), ("val_set", val)):
            ids, attn = self.encode([t for t, _ in rows], note=True)
            y = torch.tensor([index[lab] for _, lab in rows])
            setattr(self, name, traincore.TensorSet(ids, attn, y))
        self.tokens_per_sample = args.max_len
        return {"labels": labels, "tokenizer": tok_state}

    def setup_tokenizer(self, args: argparse.Namespace, meta: dict | None, texts) -> dict:
        self.max_len, self.hf_tok, self.vocab = args.max_len, None, 0
        if args.hf_model:
            from transformers import AutoTokenizer

            self.hf_tok = AutoTokenizer.from_pretrained(args.hf_model, local_files_only=True)
            return {"kind": "hf-model"}
        self.tok = (
            textutil.tokenizer_from_state(meta["tokenizer"])
            if meta
            else textutil.make_tokenizer(args.tokenizer, texts)
        )
        self.vocab = self.tok.vocab_size
        return self.tok.state()

    def encode(self, texts: list[str], note: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, attention mask), both (len(texts), --max-len); BOS first, padded or cut."""
        seq = self.max_len
        if self.hf_tok is not None:
            enc = self.hf_tok(
                texts, padding="max_length", truncation=True, max_length=seq, return_tensors="pt"
            )
            return enc["input_ids"], enc["attention_mask"]
        ids = [[BOS, *self.tok.encode(t)] for t in texts]
        if note:
            self.note(textutil.truncation_note(map(len, ids), seq, "texts"))
        t = torch.tensor([textutil.pad_to(e, seq) for e in ids])
        return t, (t != PAD).long()

    def setup_predict(self, args: argparse.Namespace, meta: dict) -> None:
        self.labels = meta["labels"]
        self.setup_tokenizer(args, meta, ())

    def predict(self, model: nn.Module, lines: list[str], args, device) -> list[str]:
        """``label<TAB>probability`` per line of text."""
        ids, attn = self.encode(lines)
        probs = model(ids.to(device), attn.to(device)).float().softmax(-1)
        p, k = probs.max(-1)
        return [f"{self.labels[i]}\t{q:.4f}" for i, q in zip(k.tolist(), p.tolist(), strict=True)]

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        if args.hf_model:
            return HFClassifier(args.hf_model, len(self.labels))
        return Classifier(self.vocab, len(self.labels), args)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        ids, attn, y = batch
        return F.cross_entropy(model(ids, attn).float(), y, reduction="sum")

    def example_inputs(self, batch: tuple) -> tuple:
        return batch[0], batch[1]

    def evaluate(self, model: nn.Module, raw: nn.Module, batches, amp) -> dict:
        gold: list[int] = []
        pred: list[int] = []
        loss_sum = 0.0
        for (ids, attn, y), n, _ in batches:
            with amp():
                logits = model(ids, attn).float()[:n]
            loss_sum += F.cross_entropy(logits, y[:n], reduction="sum").item()
            gold += y[:n].tolist()
            pred += logits.argmax(-1).tolist()
        return {"loss": loss_sum, "gold": gold, "pred": pred}

    def merge_eval(self, parts: list[dict]) -> dict:
        r = traincore.add_parts(parts)
        gold, pred = r["gold"], r["pred"]
        acc = sum(g == p for g, p in zip(gold, pred, strict=True)) / len(gold)
        return {
            "val_loss": r["loss"] / len(gold),
            "accuracy": acc,
            "macro_f1": textutil.macro_f1(gold, pred),
        }


if __name__ == "__main__":
    traincore.main(TextCls())
