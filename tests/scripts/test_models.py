"""In-process unit tests of the script modules (imported by plain name, as in containers)."""

from __future__ import annotations

import argparse
import math
import sys

import pytest

from tests.scripts.util import SCRIPTS

torch = pytest.importorskip("torch")
sys.path.insert(0, str(SCRIPTS))
import lm  # noqa: E402
import recsys  # noqa: E402
import traincore  # noqa: E402
import trainperf  # noqa: E402
import translate  # noqa: E402


def tiny_args(**kw) -> argparse.Namespace:
    base = dict(layers=1, heads=2, dim=32, max_len=16, seq_len=16, dropout=0.0)
    return argparse.Namespace(**(base | kw))


def test_gpt_is_causal_and_vocab_padded():
    torch.manual_seed(0)
    model = lm.LM().build_model(tiny_args(vocab_size=100)).eval()
    assert model.head.weight.shape[0] == 128  # padded to a multiple of 64
    x = torch.randint(100, (2, 16))
    y = x.clone()
    y[:, 10:] = torch.randint(100, (2, 6))
    with torch.no_grad():
        a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_mfu_flops_formula():
    # 6N + 12 * L * H * Q * T
    assert traincore.gpt_flops_per_token(1000, 2, 3, 4, 5) == 6 * 1000 + 12 * 2 * 3 * 4 * 5


@pytest.mark.parametrize(
    ("name", "tflops"),
    [  # names as torch.cuda.get_device_name() reports them; NVIDIA datasheet dense bf16
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA H100 NVL", 835),
        ("NVIDIA H200", 989),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA A100 80GB PCIe", 312),
        ("NVIDIA L40", 181),
        ("NVIDIA L40S", 362),
        ("NVIDIA L4", 121),
        ("NVIDIA RTX 6000 Ada Generation", 364.2),
        ("Tesla T4", 65),
        ("NVIDIA GeForce GTX 1080", None),
        ("NVIDIA H100 something new", None),
    ],
)
def test_peak_flops_matches_exact_product_names(name, tflops):
    got = trainperf.peak_for_name(name)
    assert (got / 1e12 if got else None) == (pytest.approx(tflops) if tflops else None)


def test_beam_size_one_equals_greedy():
    torch.manual_seed(0)
    model = translate.Seq2Seq(40, tiny_args()).eval()
    src = torch.randint(4, 40, (3, 16))
    src[:, 12:] = 0
    assert translate.beam_search(model, src, 16, 1) == translate.greedy(model, src, 16)
    assert all(len(h) <= 15 for h in translate.beam_search(model, src, 16, 3))


def test_step_sampler_is_deterministic_and_sharded():
    full = traincore.StepSampler(10, 2, 0, 1, seed=5, start=0)
    r0 = traincore.StepSampler(10, 1, 0, 2, seed=5, start=0)
    r1 = traincore.StepSampler(10, 1, 1, 2, seed=5, start=0)
    for m in range(12):
        both = full.indices(m)
        assert sorted(r0.indices(m) + r1.indices(m)) == sorted(both)
    epoch = [i for m in range(5) for i in full.indices(m)]
    assert sorted(epoch) == list(range(10))  # one epoch is a permutation
    resumed = iter(traincore.StepSampler(10, 2, 0, 1, seed=5, start=7))
    assert next(resumed) == full.indices(7)


def test_lr_schedule_warmup_and_decay():
    a = argparse.Namespace(lr=1.0, warmup=10, steps=110, min_lr_ratio=0.1)
    assert traincore.lr_at(0, a) == pytest.approx(0.1)
    assert traincore.lr_at(9, a) == pytest.approx(1.0)
    assert traincore.lr_at(110, a) == pytest.approx(0.1)
    values = [traincore.lr_at(s, a) for s in range(10, 110)]
    assert values == sorted(values, reverse=True)


def test_atomic_save_leaves_no_partial_file(tmp_path):
    d = tmp_path / "ckpt"
    d.mkdir()
    target = d / "step_00000001.pt"

    def failing_saver(obj, path):
        path.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        traincore.atomic_save({"x": 1}, target, saver=failing_saver)
    assert list(d.iterdir()) == []
    traincore.atomic_save({"x": 1}, target)
    assert torch.load(target, weights_only=True) == {"x": 1}
    assert [p.name for p in d.iterdir()] == [target.name]


class _OOMTask(traincore.Task):
    name = "oomtest"

    def setup(self, args, meta):
        self.train_set = traincore.TensorSet(torch.zeros(8, 2))
        self.val_set = traincore.TensorSet(torch.zeros(2, 2))
        return {}

    def build_model(self, args):
        return torch.nn.Linear(2, 1)

    def loss(self, model, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_out_of_memory_is_one_line_with_advice(tmp_path, capsys):
    import json
    import signal

    old = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(SystemExit) as exc:
            traincore.main(
                _OOMTask(), ["--out", str(tmp_path), "--device", "cpu", "--batch-size", "4"]
            )
    finally:
        signal.signal(signal.SIGTERM, old)
    assert exc.value.code == traincore.EXIT_OOM
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "smaller --batch-size" in err[0] and "Traceback" not in err[0]
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["event"] == "error" and "--batch-size 4" in last["message"]


def _reference_hr_ndcg(scores: list[list[float]], targets: list[int], k: int):
    """Sort each row (argsort), ties placed in front of the target (pessimistic)."""
    hits = ndcg = 0.0
    for row, t in zip(scores, targets, strict=True):
        order = sorted(range(len(row)), key=lambda j: (-row[j], j == t))
        rank = order.index(t)
        if rank < k:
            hits += 1
            ndcg += 1 / math.log2(rank + 2)
    return hits, ndcg


@pytest.mark.parametrize("levels", [3, 1000])  # heavily tied and mostly distinct scores
def test_recsys_hr_ndcg_match_argsort_reference_with_pessimistic_ties(levels):
    g = torch.Generator().manual_seed(levels)
    scores = torch.randint(levels, (64, 50), generator=g).float()
    scores[:, 0] = -math.inf  # padding column, as in evaluate
    targets = torch.randint(1, 50, (64,), generator=g)
    hits, ndcg = recsys.rank_metrics(scores, targets, 10)
    want_hits, want_ndcg = _reference_hr_ndcg(scores.tolist(), targets.tolist(), 10)
    assert hits == want_hits
    assert ndcg == pytest.approx(want_ndcg, rel=1e-6)


def test_recsys_constant_model_scores_nothing():
    scores = torch.zeros(8, 100)
    assert recsys.rank_metrics(scores, torch.arange(8) + 1, 10) == (0.0, 0.0)


def test_recsys_scores_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = recsys.SASRec(30, tiny_args()).eval()
    x = torch.randint(1, 31, (4, 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        s = model.last_scores(x)
    assert s.dtype == torch.float32 and s.shape == (4, 31)
