"""Text helpers shared by the bundled scripts: tokenizers, data-file readers, corpus BLEU.

Pure Python (no torch), so it is cheap to import and easy to test.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

PAD, BOS, EOS, UNK = 0, 1, 2, 3
N_SPECIAL = 4


class DataError(Exception):
    """Bad input data: reported as one line on stderr, exit code 2."""


class ByteTokenizer:
    """UTF-8 bytes shifted past the special ids: works for any language, no vocab file."""

    kind = "byte"
    vocab_size = 256 + N_SPECIAL

    def encode(self, text: str) -> list[int]:
        return [b + N_SPECIAL for b in text.encode("utf-8")]

    def decode(self, ids: Iterable[int]) -> str:
        data = bytes(i - N_SPECIAL for i in ids if N_SPECIAL <= i < self.vocab_size)
        return data.decode("utf-8", errors="replace")

    def state(self) -> dict:
        return {"kind": "byte"}


class CharTokenizer:
    """One id per Unicode character seen in training text; unseen characters map to UNK."""

    kind = "char"

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        self.index = {c: i + N_SPECIAL for i, c in enumerate(self.chars)}
        self.vocab_size = len(self.chars) + N_SPECIAL

    @classmethod
    def fit(cls, texts: Iterable[str]) -> CharTokenizer:
        return cls(sorted({c for t in texts for c in t}))

    def encode(self, text: str) -> list[int]:
        return [self.index.get(c, UNK) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        out = []
        for i in ids:
            if i >= N_SPECIAL and i - N_SPECIAL < len(self.chars):
                out.append(self.chars[i - N_SPECIAL])
            elif i == UNK:
                out.append("\ufffd")
        return "".join(out)

    def state(self) -> dict:
        return {"kind": "char", "chars": self.chars}


def make_tokenizer(kind: str, texts: Iterable[str] = ()) -> ByteTokenizer | CharTokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(texts)
    raise ValueError(f"unknown tokenizer {kind!r}")


def tokenizer_from_state(state: dict) -> ByteTokenizer | CharTokenizer:
    if state["kind"] == "byte":
        return ByteTokenizer()
    return CharTokenizer(state["chars"])


def pad_to(ids: list[int], length: int, pad: int = PAD) -> list[int]:
    """Truncate or right-pad ``ids`` to exactly ``length`` (fixed shapes for torch.compile)."""
    return ids[:length] + [pad] * max(0, length - len(ids))


def read_lines(path: str | Path) -> list[str]:
    """A UTF-8 data file's lines; a missing or unreadable file is a :class:`DataError`."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    try:
        return p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {p}: {e}") from None


def read_pairs(path: str | Path, keys: tuple[str, str]) -> list[tuple[str, str]]:
    """Read two string columns from TSV (``a<TAB>b``) or JSONL (``{keys[0]:..., keys[1]:...}``).

    The format is chosen by extension (``.jsonl``/``.json`` is JSON lines, anything else TSV).
    Blank lines and lines starting with ``#`` are skipped. Raises DataError with the file and
    line number on the first malformed line.
    """
    p = Path(path)
    lines = read_lines(p)
    jsonl = p.suffix.lower() in (".jsonl", ".json")
    out: list[tuple[str, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        if jsonl:
            try:
                obj = json.loads(line)
                a, b = obj[keys[0]], obj[keys[1]]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise DataError(
                    f"{p}:{n}: expected a JSON object with {keys[0]!r} and {keys[1]!r}"
                ) from None
            if not isinstance(a, str) or not isinstance(b, str | int):
                raise DataError(f"{p}:{n}: {keys[0]!r} must be a string")
            out.append((a, str(b)))
        else:
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
                raise DataError(f"{p}:{n}: expected '{keys[0]}<TAB>{keys[1]}'")
            out.append((parts[0].strip(), parts[1].strip()))
    if not out:
        raise DataError(f"{p}: no examples")
    return out


# ---------------------------------------------------------------------------------------
# BLEU (Papineni et al. 2002), corpus level, matching sacrebleu's defaults: 13a tokenizer
# for non-CJK text, CJK characters split one per token (like sacrebleu's "zh"), n-grams up
# to 4, closest-reference brevity penalty, no smoothing.

_CJK = re.compile(r"([\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\u3000-\u303f])")


def tokenize_13a(line: str) -> list[str]:
    """mteval-v13a tokenisation, as used by sacrebleu's default ``13a`` tokenizer."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&")
        line = line.replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    line = re.sub(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])", r" \1 ", line)
    line = re.sub(r"([^0-9])([\.,])", r"\1 \2 ", line)
    line = re.sub(r"([\.,])([^0-9])", r" \1 \2", line)
    line = re.sub(r"([0-9])(-)", r"\1 \2 ", line)
    return line.split()


def tokenize_bleu(line: str) -> list[str]:
    """13a tokens, with each CJK character (and CJK punctuation) as its own token."""
    return tokenize_13a(_CJK.sub(r" \1 ", line))


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], max_n: int = 4) -> float:
    """Corpus BLEU in [0, 100]. ``refs`` is a list of reference *streams* (sacrebleu layout):
    ``refs[k][i]`` is the k-th reference for ``hyps[i]``."""
    for stream in refs:
        if len(stream) != len(hyps):
            raise ValueError("each reference stream must have one line per hypothesis")
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for i, hyp in enumerate(hyps):
        h = tokenize_bleu(hyp)
        rs = [tokenize_bleu(stream[i]) for stream in refs]
        hyp_len += len(h)
        # closest reference length, ties broken towards the shorter one
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in rs)[1]
        for n in range(1, max_n + 1):
            hc = _ngrams(h, n)
            max_ref: Counter = Counter()
            for r in rs:
                max_ref |= _ngrams(r, n)
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in hc.items())
            totals[n - 1] += max(0, len(h) - n + 1)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return 100.0 * bp * math.exp(log_p)


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Single-reference corpus BLEU; uses sacrebleu when installed, else ``corpus_bleu``."""
    try:
        import sacrebleu
    except ImportError:
        return corpus_bleu(hyps, [refs])
    cjk = any(_CJK.search(r) for r in refs)
    return float(
        sacrebleu.corpus_bleu(list(hyps), [list(refs)], tokenize="zh" if cjk else "13a").score
    )


def macro_f1(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Macro-averaged F1 over every class present in ``gold`` or ``pred``."""
    classes = set(gold) | set(pred)
    if not classes:
        return 0.0
    total = 0.0
    for c in classes:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold, pred, strict=True) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold, pred, strict=True) if g == c and p != c)
        total += 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return total / len(classes)


def split_holdout(items: list, frac: float, seed: int) -> tuple[list, list]:
    """Deterministically shuffle and split off ``frac`` (at least one item) for validation."""
    import random

    items = list(items)
    random.Random(seed).shuffle(items)
    n_val = max(1, round(len(items) * frac))
    if len(items) < 2:
        raise DataError("need at least 2 examples to split off a validation set")
    return items[n_val:], items[:n_val]
