"""Text helpers shared by the bundled scripts: tokenizers, data-file readers, corpus BLEU.

Pure Python (no torch), so it is cheap to import and easy to test.
"""

from __future__ import annotations

import csv
import json
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


class HFTokenizer:
    """A Hugging Face ``tokenizers`` tokenizer (a local ``tokenizer.json``, e.g. from a model
    directory), ids shifted past the special ids like the byte tokenizer. Its JSON is kept in
    the checkpoint, so resuming and predicting do not need the original file."""

    kind = "hf"

    def __init__(self, spec: str):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise DataError(
                "a Hugging Face tokenizer needs the 'tokenizers' package, which is not "
                "installed here (pip install tokenizers), or use --tokenizer byte"
            ) from None
        try:
            self.tk = Tokenizer.from_str(spec)
        except Exception as e:  # the library raises its own exception types
            raise DataError(f"cannot load the tokenizer: {str(e).splitlines()[0]}") from None
        self.spec = spec
        self.vocab_size = self.tk.get_vocab_size() + N_SPECIAL

    @classmethod
    def load(cls, path: str | Path) -> HFTokenizer:
        p = Path(path)
        f = p / "tokenizer.json" if p.is_dir() else p
        if not f.is_file():
            raise DataError(
                f"--tokenizer {path}: expected byte, char, or a Hugging Face tokenizer "
                "directory or tokenizer.json file"
            )
        return cls(f.read_text(encoding="utf-8"))

    def raw_ids(self, text: str) -> list[int]:
        """The tokenizer's own ids (no shift), as a language model's token stream."""
        return list(self.tk.encode(text, add_special_tokens=False).ids)

    def encode(self, text: str) -> list[int]:
        return [i + N_SPECIAL for i in self.raw_ids(text)]

    def decode(self, ids: Iterable[int]) -> str:
        raw = [i - N_SPECIAL for i in ids if N_SPECIAL <= i < self.vocab_size]
        return str(self.tk.decode(raw))

    def state(self) -> dict:
        return {"kind": "hf", "json": self.spec}


Tokenizer = ByteTokenizer | CharTokenizer | HFTokenizer
TOKENIZER_HELP = (
    "byte (default, no vocab), char (fit on the training text), or the path of a local "
    "Hugging Face tokenizer directory / tokenizer.json (needs the tokenizers package)"
)


def make_tokenizer(kind: str, texts: Iterable[str] = ()) -> Tokenizer:
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(texts)
    return HFTokenizer.load(kind)


def tokenizer_from_state(state: dict) -> Tokenizer:
    if state["kind"] == "byte":
        return ByteTokenizer()
    if state["kind"] == "hf":
        return HFTokenizer(state["json"])
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


# Names that mark a first row as a header when --header is auto: common column names and
# language codes (a translation file's "en<TAB>zh"). Compared lower-cased.
HEADER_NAMES = frozenset(
    [
        "text",
        "sentence",
        "sentence1",
        "content",
        "document",
        "review",
        "input",
        "source",
        "src",
        "label",
        "labels",
        "class",
        "category",
        "intent",
        "target",
        "tgt",
        "output",
        "translation",
        "user",
        "user_id",
        "items",
        "item",
        "history",
        "en",
        "zh",
        "de",
        "fr",
        "es",
        "ja",
        "ko",
        "ru",
        "pt",
        "it",
        "nl",
        "ar",
        "hi",
        "vi",
        "th",
        "id",
        "tr",
        "pl",
        "uk",
        "cs",
        "sv",
    ]
)


def _unquote(field: str) -> str:
    """A TSV field unquoted as pandas quotes it (a field holding a quote is wrapped in
    quotes with inner quotes doubled)."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _rows(p: Path, lines: list[str]) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a CSV or TSV file, skipping blank and ``#`` lines."""
    numbered = [(n, ln) for n, ln in enumerate(lines, 1) if ln.strip() and not ln.startswith("#")]
    if p.suffix.lower() == ".csv":
        reader = csv.reader([ln for _, ln in numbered])
        try:
            return [(n, row) for (n, _), row in zip(numbered, reader, strict=True)]
        except (csv.Error, ValueError) as e:  # a quoted field spanning lines
            raise DataError(f"{p}: not a CSV file with one record per line ({e})") from None
    return [(n, [_unquote(f) for f in ln.split("\t")]) for n, ln in numbered]


def _is_header(row: list[str], fields: tuple[str, str], mode: str) -> bool:
    if mode != "auto":
        return mode == "yes"
    names = [f.strip().lower() for f in row]
    if all(f.lower() in names for f in fields):
        return True
    named = [x for x in names if x]  # pandas writes an empty name over its index column
    return bool(named) and all(x in HEADER_NAMES for x in named)


def _columns(p: Path, header: list[str] | None, width: int, fields: tuple[str, str]) -> list[int]:
    """Indices of the two wanted columns: by name when the header has them, else the last
    two of a three-column pandas file with an index column, else the first two."""
    if header is not None:
        names = [h.strip().lower() for h in header]
        if all(f.lower() in names for f in fields):
            return [names.index(f.lower()) for f in fields]
        if width == 3 and names[0] == "":
            return [1, 2]
        if width != 2:
            raise DataError(
                f"{p}: the header has columns {', '.join(header)} but not "
                f"{fields[0]!r} and {fields[1]!r}; name them with the field options"
            )
    return [0, 1]


def read_pairs(
    path: str | Path, keys: tuple[str, str], header: str = "auto"
) -> list[tuple[str, str]]:
    """Read two string columns from TSV, CSV or JSONL.

    The format is chosen by extension: ``.jsonl``/``.json`` is JSON lines with the fields
    ``keys``; ``.csv`` is CSV; anything else is TSV (fields split on tabs, pandas-style
    quotes removed). A first CSV/TSV row naming the columns is a header (``header="auto"``:
    it names ``keys`` or only common column names; ``"yes"``/``"no"`` force it); with a header
    the columns are picked by name. Blank lines and lines starting with ``#`` are skipped.
    Raises DataError with the file and line number on the first malformed line.
    """
    p = Path(path)
    lines = read_lines(p)
    if p.suffix.lower() in (".jsonl", ".json"):
        return _read_jsonl_pairs(p, lines, keys)
    rows = _rows(p, lines)
    head = rows[0][1] if rows and _is_header(rows[0][1], keys, header) else None
    if head is not None:
        rows = rows[1:]
    cols = _columns(p, head, len(head) if head else 2, keys)
    width = len(head) if head else 2
    out: list[tuple[str, str]] = []
    for n, row in rows:
        if len(row) != width or not row[cols[0]].strip() or not row[cols[1]].strip():
            sep = "," if p.suffix.lower() == ".csv" else "<TAB>"
            raise DataError(f"{p}:{n}: expected '{keys[0]}{sep}{keys[1]}'")
        out.append((row[cols[0]].strip(), row[cols[1]].strip()))
    if not out:
        raise DataError(f"{p}: no examples")
    return out


def _read_jsonl_pairs(p: Path, lines: list[str], keys: tuple[str, str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
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
    if not out:
        raise DataError(f"{p}: no examples")
    return out


def check_labels(path: str | Path, rows: Sequence[tuple[str, str]]) -> None:
    """Refuse a label column that looks like text (a swapped column order, a wrong field)."""
    labels = {lab for _, lab in rows}
    if len(rows) >= 20 and len(labels) > max(20, len(rows) // 2):
        raise DataError(
            f"{path}: {len(labels)} distinct labels in {len(rows)} rows looks like text, not "
            "labels; check the column order (text, then label) or pick the columns with "
            "--text-field/--label-field"
        )


def truncation_note(lengths: Iterable[int], max_len: int, what: str) -> str | None:
    """A one-line note when some examples are longer than ``max_len`` tokens (cut)."""
    lens = list(lengths)
    cut = sum(1 for n in lens if n > max_len)
    if not cut:
        return None
    return (
        f"note: {cut} of {len(lens)} {what} are longer than --max-len {max_len} tokens and were "
        f"truncated (longest {max(lens)}); raise --max-len or use a subword --tokenizer"
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
