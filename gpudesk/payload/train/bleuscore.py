"""Corpus BLEU exactly as sacrebleu's default ``corpus_bleu`` computes it, in pure Python.

The scripts never depend on sacrebleu being installed; tests/scripts/test_textutil.py checks
this module against sacrebleu on random corpora.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

# ---------------------------------------------------------------------------------------
# BLEU (Papineni et al. 2002), corpus level, exactly sacrebleu's default ``corpus_bleu``:
# tokenizer 13a (or zh for Chinese references), n-grams up to 4, closest-reference brevity
# penalty, "exp" smoothing (an order with no match counts 1/2^k of a match, k = how many
# orders so far had none). tests/scripts/test_textutil.py checks it against sacrebleu.

# sacrebleu's TokenizerZh ranges, copied verbatim including its two 5-hex-digit entries:
# in Python "\u20000" is U+2000 followed by "0", so (string comparison) those entries
# cover U+2001..U+2A6D (general punctuation, currency, arrows, ...). Kept for exact scores.
_ZH_RANGES = (
    ("\u3400", "\u4db5"),
    ("\u4e00", "\u9fa5"),
    ("\u9fa6", "\u9fbb"),
    ("\uf900", "\ufa2d"),
    ("\ufa30", "\ufa6a"),
    ("\ufa70", "\ufad9"),
    ("\u20000", "\u2a6d6"),
    ("\u2f800", "\u2fa1d"),
    ("\uff00", "\uffef"),
    ("\u2e80", "\u2eff"),
    ("\u3000", "\u303f"),
    ("\u31c0", "\u31ef"),
    ("\u2f00", "\u2fdf"),
    ("\u2ff0", "\u2fff"),
    ("\u3100", "\u312f"),
    ("\u31a0", "\u31bf"),
    ("\ufe10", "\ufe1f"),
    ("\ufe30", "\ufe4f"),
    ("\u2600", "\u26ff"),
    ("\u2700", "\u27bf"),
    ("\u3200", "\u32ff"),
    ("\u3300", "\u33ff"),
)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_POST = (
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
)


def _post_tokenize(line: str) -> list[str]:
    for pattern, repl in _POST:
        line = pattern.sub(repl, line)
    return line.split()


def tokenize_13a(line: str) -> list[str]:
    """mteval-v13a tokenisation, as sacrebleu's default ``13a`` tokenizer."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&")
        line = line.replace("&lt;", "<").replace("&gt;", ">")
    return _post_tokenize(f" {line} ")


def _is_zh_char(ch: str) -> bool:
    return any(lo <= ch <= hi for lo, hi in _ZH_RANGES)


def tokenize_zh(line: str) -> list[str]:
    """sacrebleu's ``zh`` tokenizer: each Chinese character (by its ranges) is a token, the
    rest is 13a-tokenised without entity decoding. Kana and Hangul are not split."""
    spaced = "".join(f" {c} " if _is_zh_char(c) else c for c in line.strip())
    return _post_tokenize(spaced)


def bleu_tokenizer(refs: Iterable[str]) -> str:
    """``zh`` when any reference contains a Han character, else ``13a``."""
    return "zh" if any(_HAN.search(r) for r in refs) else "13a"


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _bleu_from_stats(matches: list[int], totals: list[int], hyp_len: int, ref_len: int) -> float:
    if not any(matches):
        return 0.0
    bp = 1.0
    if hyp_len < ref_len:
        bp = math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0
    log_sum, smooth = 0.0, 1.0
    for m, t in zip(matches, totals, strict=True):
        if t == 0:  # sacrebleu stops here: the remaining orders count as precision 0
            return 0.0
        if m == 0:
            smooth *= 2
            p = 1.0 / (smooth * t)
        else:
            p = m / t
        log_sum += math.log(100.0 * p)
    return bp * math.exp(log_sum / len(matches))


def corpus_bleu(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], max_n: int = 4, tokenize: str = "13a"
) -> float:
    """Corpus BLEU in [0, 100]. ``refs`` is a list of reference *streams* (sacrebleu layout):
    ``refs[k][i]`` is the k-th reference for ``hyps[i]``. ``tokenize`` is 13a or zh."""
    for stream in refs:
        if len(stream) != len(hyps):
            raise ValueError("each reference stream must have one line per hypothesis")
    tok = {"13a": tokenize_13a, "zh": tokenize_zh}[tokenize]
    matches = [0] * max_n
    totals = [0] * max_n
    hyp_len = ref_len = 0
    for i, hyp in enumerate(hyps):
        h = tok(hyp.rstrip())
        rs = [tok(stream[i].rstrip()) for stream in refs]
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
    return _bleu_from_stats(matches, totals, hyp_len, ref_len)


def bleu(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Single-reference corpus BLEU as sacrebleu's default scores it (13a, or zh when the
    references contain Chinese). Never depends on whether sacrebleu is installed."""
    return corpus_bleu(hyps, [refs], tokenize=bleu_tokenizer(refs))
