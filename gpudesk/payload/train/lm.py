"""GPT-style causal language model on raw text (nanoGPT-like); the speed workload.

Byte-level tokens (vocab 256) on a text file, or ``--synthetic`` token streams for
benchmarks. Attention is ``F.scaled_dot_product_attention(is_causal=True)`` (flash kernels
on GPU); the vocabulary is padded to a multiple of 64. ``--preset gpt2-small`` gives the
124M GPT-2 shape (12 layers, 12 heads, 768 dim, seq 1024, vocab 50304). Train lines carry
MFU (FLOPs/token = 6N + 12·L·H·Q·T, vs the GPU's dense bf16 peak).

    torchrun --nproc_per_node=8 lm.py --preset gpt2-small --synthetic --compile
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import layers
import textutil
import torch
import torch.nn.functional as F  # noqa: N812
import traincore
from torch import nn

HERE = Path(__file__).resolve().parent

PRESETS = {
    "gpt2-small": dict(layers=12, heads=12, dim=768, seq_len=1024, vocab_size=50304),
}
ARCH_DEFAULTS = dict(layers=6, heads=6, dim=384, seq_len=256, vocab_size=None)


class GPT(nn.Module):
    def __init__(self, vocab: int, args: argparse.Namespace):
        super().__init__()
        self.stack = layers.Stack(
            vocab, args.seq_len, args.dim, args.heads, args.layers, dropout=args.dropout
        )
        self.head = nn.Linear(args.dim, vocab, bias=False)
        layers.init_weights(self)
        self.head.weight = self.stack.tok.weight  # weight tying
        for name, p in self.named_parameters():  # GPT-2 scaled init of residual projections
            if name.endswith("proj.weight"):
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * args.layers))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.head(self.stack(idx, causal=True))
        if targets is None:
            return logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())


class Windows:
    """(x, y) windows of ``seq`` tokens from a 1-D token stream, starting every ``stride``."""

    def __init__(self, tokens: torch.Tensor, seq: int, stride: int):
        self.tokens, self.seq, self.stride = tokens, seq, stride
        self.n = max(0, (len(tokens) - seq - 1) // stride + 1)

    def __len__(self) -> int:
        return self.n

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.stack(  # int64 per window: the stream may be uint8/16/32 (or mmap)
            [self.tokens[i * self.stride : i * self.stride + self.seq + 1].long() for i in idx]
        )
        return rows[:, :-1], rows[:, 1:]


def synthetic_tokens(n: int, vocab: int, seed: int) -> torch.Tensor:
    """A stream of 1024 random 64-token 'phrases' in random order: learnable but not trivial."""
    g = torch.Generator().manual_seed(seed)
    phrases = torch.randint(vocab, (1024, 64), generator=g, dtype=torch.int32)
    order = torch.randint(1024, (n // 64 + 1,), generator=g)
    return phrases[order].flatten()[:n]


TOKEN_DTYPES = {"uint16": torch.uint16, "uint32": torch.uint32}


def memmap_tokens(path: Path, dtype: torch.dtype, args: argparse.Namespace) -> torch.Tensor:
    """A 1-D tensor over the file's bytes (mmap, copy-on-write: the file is never written)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    size = path.stat().st_size
    if size % itemsize:
        raise traincore.UserError(
            f"{path} is {size} bytes, not a whole number of {itemsize}-byte tokens; "
            "check --token-dtype"
        )
    if args.vocab_size == 256 and not args.vocab_size_given:
        raise traincore.UserError(
            f"{path} holds token ids: give the tokenizer's --vocab-size (50257 for GPT-2)"
        )
    return torch.from_file(str(path), shared=False, size=size // itemsize, dtype=dtype)


def sample(logits: torch.Tensor, temperature: float, top_k: int, gen: torch.Generator) -> int:
    """One token from ``logits`` (1-D): greedy at temperature 0, else top-k sampling."""
    if temperature <= 0:
        return int(logits.argmax())
    if 0 < top_k < logits.numel():
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = (logits / temperature).softmax(-1)
    return int(torch.multinomial(probs, 1, generator=gen))


class LM(traincore.Task):
    name = "lm"
    description = __doc__.splitlines()[0]
    defaults = dict(
        data=str(HERE / "data" / "corpus.txt"),
        steps=2000,
        lr=6e-4,
        batch_size=16,
        eval_every=500,
        ckpt_every=1000,
        weight_decay=0.1,
        dropout=0.0,
    )
    model_args = ("layers", "heads", "dim", "seq_len", "vocab_size")
    eval_batches = 20

    def add_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--preset", choices=sorted(PRESETS), help="model shape preset")
        p.add_argument("--layers", type=int, default=None, help="preset value, else 6")
        p.add_argument("--heads", type=int, default=None, help="preset value, else 6")
        p.add_argument("--dim", type=int, default=None, help="preset value, else 384")
        p.add_argument("--seq-len", type=int, default=None, help="preset value, else 256")
        p.add_argument(
            "--vocab-size",
            type=int,
            default=None,
            help="synthetic token range (default 256 bytes; padded to a multiple of 64)",
        )
        p.add_argument("--synthetic-tokens", type=int, default=4_000_000)
        p.add_argument(
            "--tokenizer",
            default="byte",
            help="for text --data: byte, or a local Hugging Face tokenizer dir/tokenizer.json",
        )
        p.add_argument(
            "--token-dtype",
            choices=sorted(TOKEN_DTYPES),
            default="uint16",
            help="element type of a .bin token file (nanoGPT's train.bin: uint16)",
        )
        p.add_argument("--val-frac", type=float, default=0.1)

    def setup(self, args: argparse.Namespace, meta: dict | None) -> dict:
        # explicit flags > preset > defaults
        preset = PRESETS.get(args.preset or "", {})
        for k, v in ARCH_DEFAULTS.items():
            if getattr(args, k) is None:
                setattr(args, k, preset.get(k, v))
        args.vocab_size_given = args.vocab_size is not None
        if args.vocab_size is None:
            args.vocab_size = 256
        self.tokenizer_state: dict = {"kind": "ids"}
        if args.synthetic:
            tokens = synthetic_tokens(args.synthetic_tokens, args.vocab_size, args.seed)
        else:
            tokens = self.read_tokens(args, meta)
        seq = args.seq_len
        if args.val and not args.synthetic:  # e.g. nanoGPT's val.bin next to train.bin
            val = self.read_tokens(args, meta, args.val)
        else:
            n_val = max(seq + 1, int(len(tokens) * args.val_frac))
            tokens, val = tokens[:-n_val], tokens[-n_val:]
        if len(tokens) < seq + 1 or len(val) < seq + 1:
            raise traincore.UserError(
                f"{len(tokens)} training / {len(val)} validation tokens are too few for "
                f"--seq-len {seq}; use a larger corpus"
            )
        self.train_set = Windows(tokens, seq, max(1, seq // 8))
        self.val_set = Windows(val, seq, seq)
        self.tokens_per_sample = seq
        return {"vocab_size": args.vocab_size, "tokenizer": self.tokenizer_state}

    def read_tokens(
        self, args: argparse.Namespace, meta: dict | None, name: str | None = None
    ) -> torch.Tensor:
        """The token stream of --data (or ``name``): a .bin file of token ids, memory-mapped
        (pages are read on demand, never the whole file), or text as bytes or subwords."""
        path = Path(name or args.data)
        if not path.is_file():
            raise traincore.UserError(f"data file not found: {path}")
        if path.suffix == ".bin":
            return memmap_tokens(path, TOKEN_DTYPES[args.token_dtype], args)
        if args.tokenizer == "byte":
            if args.vocab_size < 256:
                raise traincore.UserError("--vocab-size must be >= 256 for byte-level text")
            self.tokenizer_state = {"kind": "byte"}
            return torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
        tk = textutil.make_tokenizer(args.tokenizer)
        assert isinstance(tk, textutil.HFTokenizer)
        self.tokenizer_state = tk.state()
        args.vocab_size = max(args.vocab_size, tk.vocab_size - textutil.N_SPECIAL)
        text = textutil.read_lines(path)
        return torch.tensor(tk.raw_ids("\n".join(text)), dtype=torch.int32)

    def build_model(self, args: argparse.Namespace) -> nn.Module:
        self.args = args
        vocab = (args.vocab_size + 63) // 64 * 64
        return GPT(vocab, args)

    def loss(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum")

    def loss_count(self, batch: tuple) -> torch.Tensor:
        return torch.tensor(batch[1].numel(), device=batch[1].device)

    def evaluate(self, model: nn.Module, raw: nn.Module, batches, amp) -> dict:
        total, count = 0.0, 0
        for (x, y), n, _ in batches:
            with amp():
                logits = model(x)[:n].float()
            total += F.cross_entropy(logits.flatten(0, 1), y[:n].flatten(), reduction="sum").item()
            count += y[:n].numel()
        return {"loss": total, "count": count}

    def merge_eval(self, parts: list[dict]) -> dict:
        r = traincore.add_parts(parts)
        val_loss = r["loss"] / r["count"]
        return {"val_loss": val_loss, "perplexity": math.exp(min(val_loss, 80.0))}

    def add_predict_args(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--max-new-tokens", type=int, default=100)
        p.add_argument("--temperature", type=float, default=0.8)
        p.add_argument("--top-k", type=int, default=50, help="0: sample from all tokens")
        p.add_argument("--seed", type=int, default=0)

    def setup_predict(self, args: argparse.Namespace, meta: dict) -> None:
        self.args = args
        self.predict_tok = meta.get("tokenizer", {"kind": "byte"})

    def _to_ids(self, text: str) -> list[int]:
        kind = self.predict_tok["kind"]
        if kind == "byte":
            return list(text.encode("utf-8"))
        if kind == "hf":
            return textutil.HFTokenizer(self.predict_tok["json"]).raw_ids(text)
        try:
            return [int(t) for t in text.split()]
        except ValueError:
            raise traincore.UserError(
                "this model was trained on token ids: give prompts as space-separated ids"
            ) from None

    def _from_ids(self, ids: list[int]) -> str:
        kind = self.predict_tok["kind"]
        if kind == "byte":
            return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")
        if kind == "hf":
            return str(textutil.HFTokenizer(self.predict_tok["json"]).tk.decode(ids))
        return " ".join(map(str, ids))

    def predict(self, model: nn.Module, lines: list[str], args, device) -> list[str]:
        """A sampled continuation of each prompt, as a JSON string (one line each)."""
        seq = self.args.seq_len
        gen = torch.Generator(device=device).manual_seed(args.seed)
        outs = []
        for line in lines:
            ids = self._to_ids(line)[-seq:] or [0]
            new: list[int] = []
            for _ in range(args.max_new_tokens):
                ctx = (ids + new)[-seq:]
                x = torch.tensor([ctx + [0] * (seq - len(ctx))], device=device)
                logits = model(x)[0, len(ctx) - 1, : self.args.vocab_size].float()
                new.append(sample(logits, args.temperature, args.top_k, gen))
            outs.append(json.dumps(self._from_ids(new), ensure_ascii=False))
        return outs

    def flops_per_token(self, raw: nn.Module) -> float | None:
        a = self.args
        n = sum(p.numel() for p in raw.parameters()) - raw.stack.pos.weight.numel()
        return traincore.gpt_flops_per_token(n, a.layers, a.heads, a.dim // a.heads, a.seq_len)


if __name__ == "__main__":
    traincore.main(LM())
