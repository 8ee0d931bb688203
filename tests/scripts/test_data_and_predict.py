"""A user's own data (headers, CSV, field names, subword tokenizers, token files) and the
predict entries, checked against independent references (the tokenizers library, the
stdlib's array module, the data as the test wrote it)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from array import array

import pytest

from tests.scripts.util import SCRIPTS, TINY, env, read_metrics, run_script

torch = pytest.importorskip("torch")
sys.path.insert(0, str(SCRIPTS))
import lm  # noqa: E402
import textcls  # noqa: E402
import translate  # noqa: E402


def sample_rows(name: str) -> list[tuple[str, str]]:
    lines = (SCRIPTS / "data" / name).read_text(encoding="utf-8").splitlines()
    return [tuple(x.split("\t")) for x in lines if x.strip() and not x.startswith("#")]


def _ckpt(out):
    return torch.load(sorted((out / "ckpt").glob("step_*.pt"))[-1], weights_only=True)


def test_tsv_header_is_not_a_class(tmp_path):
    rows = sample_rows("intents.tsv")
    data = tmp_path / "with_header.tsv"
    data.write_text("text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows), "utf-8")
    out = tmp_path / "run"
    r = run_script("textcls", out, "--data", str(data), "--steps", "1", "--eval-every", "0")
    assert r.returncode == 0, r.stderr
    assert _ckpt(out)["meta"]["labels"] == sorted({lab for _, lab in rows})


def test_swapped_columns_are_refused_in_one_line(tmp_path):
    rows = sample_rows("intents.tsv")
    data = tmp_path / "swapped.csv"
    data.write_text("".join(f"{lab},{t.replace(',', ' ')}\n" for t, lab in rows), "utf-8")
    r = run_script("textcls", tmp_path / "run", "--data", str(data), "--steps", "1")
    assert r.returncode == 2, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "looks like text, not labels" in lines[0]


def test_hf_model_learning_rate_default():
    ns = argparse.Namespace
    assert textcls.default_lr(ns(lr=None, hf_model="/m")) == pytest.approx(3e-5)
    assert textcls.default_lr(ns(lr=None, hf_model=None)) == pytest.approx(1e-3)
    assert textcls.default_lr(ns(lr=1e-4, hf_model="/m")) == pytest.approx(1e-4)


@pytest.mark.parametrize(("dtype", "code"), [(torch.uint16, "H"), (torch.uint32, "I")])
def test_lm_token_file_is_memory_mapped_and_read_exactly(tmp_path, dtype, code):
    ref = array(code, [(i * 7919) % 60000 for i in range(5000)])
    path = tmp_path / "train.bin"
    path.write_bytes(ref.tobytes())
    tokens = lm.memmap_tokens(path, dtype, argparse.Namespace(vocab_size=60000))
    windows = lm.Windows(tokens, 16, 4)
    x, y = windows.__getitems__([0, 3, len(windows) - 1])
    for row, i in enumerate([0, 3, len(windows) - 1]):
        assert x[row].tolist() == list(ref[i * 4 : i * 4 + 16])
        assert y[row].tolist() == list(ref[i * 4 + 1 : i * 4 + 17])
    path.write_bytes(ref.tobytes()[:-1])
    with pytest.raises(Exception, match="not a whole number"):
        lm.memmap_tokens(path, dtype, argparse.Namespace(vocab_size=60000))


def test_greedy_through_forward_equals_incremental_greedy():
    torch.manual_seed(0)
    args = argparse.Namespace(layers=1, heads=2, dim=32, max_len=16, dropout=0.0)
    model = translate.Seq2Seq(40, args).eval()
    src = torch.randint(4, 40, (3, 16))
    assert translate.greedy_fixed(model, src, 16) == translate.greedy(model, src, 16)


@pytest.mark.slow
def test_subword_tokenizer_counts_max_len_in_its_tokens(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import models, pre_tokenizers, trainers

    pairs = sample_rows("translation.tsv")
    tk = tokenizers.Tokenizer(models.BPE(unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.train_from_iterator(
        [f"{a} {b}" for a, b in pairs],
        trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]"]),
    )
    (tmp_path / "tok").mkdir()
    tk.save(str(tmp_path / "tok" / "tokenizer.json"))
    out = tmp_path / "run"
    tiny = [a for a in TINY["translate"]]
    tiny[tiny.index("--max-len") + 1] = "6"
    r = run_script(
        "translate", out, *tiny, "--tokenizer", str(tmp_path / "tok"), "--steps", "1",
        "--val-frac", "0.1", "--eval-every", "0", tiny=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    ck = _ckpt(out)
    assert ck["meta"]["tokenizer"]["kind"] == "hf"
    assert ck["model"]["dec.tok.weight"].shape[0] == tk.get_vocab_size() + 4
    # the truncation note counts the library's tokens (+1 for BOS/EOS), over all pairs
    n_long = sum(1 for a, b in pairs if 1 + max(len(tk.encode(a).ids), len(tk.encode(b).ids)) > 6)
    assert n_long and "longer than --max-len 6" in r.stdout
    counted = [
        int(x.split(" of ")[0].split()[-1])
        for x in r.stdout.splitlines()
        if "of" in x and "--max-len" in x
    ]
    assert sum(counted) == n_long


def predict(task: str, *args: str, stdin: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / f"{task}.py"), "predict", *args],
        input=stdin, capture_output=True, text=True, env=env(), timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("task", ["textcls", "translate", "recsys", "lm"])
def test_predict_from_checkpoint_and_export_agree(task, trained_and_exported):
    out, r = trained_and_exported(task)  # tests/scripts/conftest.py: fp32 on CPU
    assert r.returncode == 0, r.stderr
    inputs = {
        "textcls": "我想订一张机票\nplay some music\nwhat's the weather\n",
        "translate": "good morning\nthank you\nsee you tomorrow\n",
        "recsys": "i001 i002 i003\ni010 i011\ni020\n",
        "lm": "The \nOnce upon\nHello\n",
    }[task]
    extra = ["--temperature", "0", "--max-new-tokens", "8"] if task == "lm" else []
    a = predict(task, str(out), "--batch-size", "2", *extra, stdin=inputs)
    b = predict(task, str(out), "--batch-size", "2", "--export", *extra, stdin=inputs)
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    assert len(a.stdout.splitlines()) == 3
    if task == "textcls":  # probabilities may differ in the last digit
        assert [x.split("\t")[0] for x in a.stdout.splitlines()] == [
            x.split("\t")[0] for x in b.stdout.splitlines()
        ]
    else:
        assert a.stdout == b.stdout
    assert read_metrics(out)[-1]["event"] == "done"


def test_predict_without_a_checkpoint_is_one_error_line(tmp_path):
    bad = predict("textcls", str(tmp_path / "nope"), stdin="")
    assert (
        bad.returncode == 2 and bad.stderr == f"error: checkpoint not found: {tmp_path / 'nope'}\n"
    )
