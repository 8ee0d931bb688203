import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpudesk.payload.train import bleuscore as bs
from gpudesk.payload.train import textutil as tu


def test_bleu_matches_sacrebleu_documented_example():
    # sacrebleu README: BLEU = 48.53 82.4/50.0/45.5/37.5 (BP = 0.943 ratio = 0.944)
    refs = [
        ["The dog bit the man.", "It was not unexpected.", "The man bit him first."],
        ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."],
    ]
    hyps = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
    assert bs.corpus_bleu(hyps, refs) == pytest.approx(48.53, abs=0.005)


def test_bleu_hand_computed():
    # hyp "the cat sat on the mat" vs ref "the cat sat on a mat":
    # p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3, equal lengths so BP = 1.
    expected = 100 * math.exp(
        (math.log(5 / 6) + math.log(3 / 5) + math.log(2 / 4) + math.log(1 / 3)) / 4
    )
    assert bs.corpus_bleu(["the cat sat on the mat"], [["the cat sat on a mat"]]) == pytest.approx(
        expected
    )


def test_bleu_splits_chinese_characters():
    assert bs.tokenize_zh("我喜欢茶。") == ["我", "喜", "欢", "茶", "。"]
    assert bs.bleu(["我喜欢苹果和茶。"], ["我喜欢苹果和茶。"]) == pytest.approx(100.0)


# Vocabulary for the property test: English with punctuation and entities, Chinese, Korean,
# Japanese kana, full-width forms and the punctuation sacrebleu's zh ranges cover by accident.
VOCAB = [
    *[
        "a",
        "b",
        "cat",
        "dog",
        "run",
        "the",
        ".",
        ",",
        "!",
        "?",
        "'s",
        "1,000",
        "3.5",
        "-",
        "(",
        ")",
        "&amp;",
        "&quot;",
        "A&amp;B",
        "--",
        "x-y",
    ],
    *["我", "喜欢", "苹果", "和", "茶", "。", "，", "的", "中国", "你好"],  # noqa: RUF001
    *["한국어", "사랑", "합니다", "밥", "먹어요"],
    *["ひらがな", "カタカナ", "です", "ね", "ー"],
    "\uff21\uff22",  # full-width AB
    "\u201cquoted\u201d",
    "\u2014",
    "100\u20ac",
]
sentence = st.lists(st.sampled_from(VOCAB), min_size=0, max_size=14).map(
    lambda ws: "".join(w + (" " if i % 3 else "") for i, w in enumerate(ws))
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(sentence, sentence), min_size=1, max_size=6), st.booleans())
def test_bleu_matches_sacrebleu_on_random_corpora(pairs, zh):
    sacrebleu = pytest.importorskip("sacrebleu")
    hyps, refs = [h for h, _ in pairs], [r for _, r in pairs]
    tokenize = "zh" if zh else "13a"
    want = sacrebleu.corpus_bleu(hyps, [refs], tokenize=tokenize).score
    assert bs.corpus_bleu(hyps, [refs], tokenize=tokenize) == pytest.approx(want, abs=0.01)


@pytest.mark.parametrize(
    ("hyp", "ref", "tokenize"),
    [
        # no 4-gram matches: sacrebleu's exp smoothing gives a score, not 0
        ("the cat sat on a mat today", "the cat is on the mat today", "13a"),
        ("我喜欢喝红茶和绿茶", "我爱喝红茶和咖啡", "zh"),
        # Hangul and kana are not split per character by the zh tokenizer
        ("저는 학생 입니다 오늘", "저는 학생 입니다 내일", "13a"),
        ("我 は がくせい です 今日", "我 は がくせい です 明日", "zh"),
        ("A &amp; B 和 C", "A &amp; B 和 D", "zh"),
    ],
)
def test_bleu_regressions_match_sacrebleu(hyp, ref, tokenize):
    sacrebleu = pytest.importorskip("sacrebleu")
    assert bs.bleu_tokenizer([ref]) == tokenize
    want = sacrebleu.corpus_bleu([hyp], [[ref]], tokenize=tokenize).score
    assert want > 0
    assert bs.bleu([hyp], [ref]) == pytest.approx(want, abs=0.01)


words = st.lists(
    st.sampled_from(["a", "b", "cat", "dog", "的", "。", "run", "."]), min_size=4, max_size=12
)


@given(st.lists(words, min_size=1, max_size=4))
def test_bleu_identity_is_100(sents):
    lines = [" ".join(w) for w in sents]
    assert bs.corpus_bleu(lines, [lines]) == pytest.approx(100.0)


@given(st.lists(st.tuples(words, words), min_size=1, max_size=4))
def test_bleu_is_bounded(pairs):
    hyps = [" ".join(h) for h, _ in pairs]
    refs = [" ".join(r) for _, r in pairs]
    assert 0.0 <= bs.corpus_bleu(hyps, [refs]) <= 100.0 + 1e-9


@given(st.text())
def test_byte_tokenizer_round_trip(text):
    tok = tu.ByteTokenizer()
    ids = tok.encode(text)
    assert all(tu.N_SPECIAL <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@given(st.text(min_size=1))
def test_char_tokenizer_round_trip(text):
    tok = tu.CharTokenizer.fit([text])
    assert tok.decode(tok.encode(text)) == text
    assert tu.tokenizer_from_state(tok.state()).encode(text) == tok.encode(text)


def test_char_tokenizer_unknown_and_padding():
    tok = tu.CharTokenizer.fit(["ab"])
    assert tok.encode("abz") == [4, 5, tu.UNK]
    assert tu.pad_to([1, 2, 3], 5) == [1, 2, 3, 0, 0]
    assert tu.pad_to([1, 2, 3], 2) == [1, 2]


def test_macro_f1():
    assert tu.macro_f1([0, 0, 1, 1], [0, 0, 1, 1]) == 1.0
    # class 0: tp 1 fp 0 fn 1 -> 2/3; class 1: tp 2 fp 1 fn 0 -> 4/5
    assert tu.macro_f1([0, 0, 1, 1], [0, 1, 1, 1]) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_read_pairs_tsv_jsonl_and_errors(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("# comment\nhello\tgreet\n你好\tgreet\n\n", encoding="utf-8")
    assert tu.read_pairs(tsv, ("text", "label")) == [("hello", "greet"), ("你好", "greet")]
    js = tmp_path / "d.jsonl"
    js.write_text('{"text": "hi", "label": "greet"}\n', encoding="utf-8")
    assert tu.read_pairs(js, ("text", "label")) == [("hi", "greet")]
    bad = tmp_path / "bad.tsv"
    bad.write_text("ok\tx\nno tab here\n", encoding="utf-8")
    with pytest.raises(tu.DataError, match=r"bad.tsv:2"):
        tu.read_pairs(bad, ("text", "label"))
    with pytest.raises(tu.DataError, match="not found"):
        tu.read_pairs(tmp_path / "missing.tsv", ("text", "label"))


def test_sample_data_is_bilingual():
    data = tu.read_pairs(
        __import__("pathlib").Path(tu.__file__).parent / "data" / "intents.tsv", ("text", "label")
    )
    assert len(data) >= 200
    assert bs.bleu_tokenizer(t for t, _ in data) == "zh"
    assert any(t.isascii() for t, _ in data)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_header_is_skipped_and_columns_found_by_name(tmp_path):
    rows = [("hello there", "greet"), ("bye now", "leave")]
    plain = _write(
        tmp_path / "a.tsv", "text\tlabel\n" + "".join(f"{t}\t{lab}\n" for t, lab in rows)
    )
    assert tu.read_pairs(plain, ("text", "label")) == rows
    # pandas to_csv(sep="\t") with its index column: an unnamed first column
    indexed = "\ttext\tlabel\n" + "".join(f"{i}\t{t}\t{lab}\n" for i, (t, lab) in enumerate(rows))
    assert tu.read_pairs(_write(tmp_path / "b.tsv", indexed), ("text", "label")) == rows
    swapped = "label\ttext\n" + "".join(f"{lab}\t{t}\n" for t, lab in rows)
    assert tu.read_pairs(_write(tmp_path / "c.tsv", swapped), ("text", "label")) == rows
    # translation files often name the languages
    pairs = tu.read_pairs(_write(tmp_path / "d.tsv", "en\tzh\nhi\t你好\n"), ("src", "tgt"))
    assert pairs == [("hi", "你好")]
    # forced off: the first row is data
    assert tu.read_pairs(plain, ("text", "label"), header="no")[0] == ("text", "label")


def test_csv_with_quotes_and_custom_field_names(tmp_path):
    import csv

    rows = [('say "hi", please', "greet"), ("a, b and c", "list")]
    path = tmp_path / "x.csv"
    with path.open("w", newline="", encoding="utf-8") as f:  # the csv module as reference
        w = csv.writer(f)
        w.writerow(["id", "sentence", "intent"])
        w.writerows([i, t, lab] for i, (t, lab) in enumerate(rows))
    assert tu.read_pairs(path, ("sentence", "intent")) == rows
    with pytest.raises(tu.DataError, match="not 'text' and 'label'"):
        tu.read_pairs(path, ("text", "label"), header="yes")


def test_jsonl_custom_keys(tmp_path):
    path = _write(tmp_path / "x.jsonl", '{"q": "hello", "y": 3}\n')
    assert tu.read_pairs(path, ("q", "y")) == [("hello", "3")]


def test_label_column_that_looks_like_text_is_refused(tmp_path):
    rows = [(f"label{i % 3}", f"a long sentence number {i}") for i in range(40)]
    with pytest.raises(tu.DataError, match="40 distinct labels in 40 rows"):
        tu.check_labels("x.tsv", rows)
    tu.check_labels("x.tsv", [(t, lab) for lab, t in rows])  # right order is fine


def test_truncation_note_counts_tokens_not_characters():
    tok = tu.ByteTokenizer()
    text = "中" * 40  # 40 characters, 120 byte tokens
    note = tu.truncation_note([len(tok.encode(text))], 96, "texts")
    assert note and "1 of 1 texts" in note and "longest 120" in note
    assert tu.truncation_note([10, 96], 96, "texts") is None


@settings(deadline=None)  # the first call imports scikit-learn
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=40))
def test_macro_f1_matches_scikit_learn(pairs):
    metrics = pytest.importorskip("sklearn.metrics")
    gold, pred = [g for g, _ in pairs], [p for _, p in pairs]
    labels = sorted(set(gold) | set(pred))
    want = metrics.f1_score(gold, pred, labels=labels, average="macro", zero_division=0)
    assert tu.macro_f1(gold, pred) == pytest.approx(want)
