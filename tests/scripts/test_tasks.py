"""End-to-end tests of the bundled training scripts, run as subprocesses on CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from tests.scripts.util import (
    SCRIPTS,
    STEPS,
    env,
    losses,
    read_metrics,
    run_script,
    script_cmd,
)

torch = pytest.importorskip("torch")

TASK_METRICS = {
    "textcls": ("accuracy", "macro_f1"),
    "translate": ("bleu",),
    "lm": ("perplexity",),
    "recsys": ("hr10", "ndcg10"),
}


def first_last_mean(vals: list[float], k: int = 3) -> tuple[float, float]:
    return sum(vals[:k]) / k, sum(vals[-k:]) / k


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASK_METRICS))
def test_trains_evaluates_and_exports_on_sample_data(task, trained_and_exported):
    out, r = trained_and_exported(task)  # tests/scripts/conftest.py
    steps = STEPS[task]
    assert r.returncode == 0, r.stderr
    recs = read_metrics(out)
    train = [x["loss"] for x in recs if x["event"] == "train"]
    assert len(train) == steps
    first, last = first_last_mean(train)
    assert last < first * 0.95, (first, last)
    evals = [x for x in recs if x["event"] == "eval"]
    assert len(evals) == 1
    for key in ("val_loss", *TASK_METRICS[task]):
        assert key in evals[0]
    assert [x["event"] for x in recs[-2:]] == ["ckpt", "done"]
    assert recs[-1]["reason"] == "completed"
    assert (out / "model.pt2").is_file()
    assert "matches eager outputs" in r.stdout
    ckpts = sorted(p.name for p in (out / "ckpt").iterdir())
    assert ckpts == [f"step_{steps:08d}.pt"]  # no stray temp files


@pytest.mark.slow
def test_exported_program_reloads_and_matches(trained_and_exported):
    out, r = trained_and_exported("textcls")  # fp32 on CPU, tiny shapes (max-len 64)
    assert r.returncode == 0, r.stderr
    ep = torch.export.load(str(out / "model.pt2"))
    for batch in (1, 7, 32):  # the batch dimension is dynamic
        ids = torch.randint(4, 200, (batch, 64))
        attn = torch.ones_like(ids)
        assert ep.module()(ids, attn).shape == (batch, 8)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["textcls", "lm"])
def test_resume_reproduces_uninterrupted_losses(task, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    common = [
        "--steps",
        "12",
        "--log-every",
        "1",
        "--eval-every",
        "0",
        "--keep",
        "5",
        "--dropout",
        "0.1",
    ]
    r = run_script(task, a, *common, "--ckpt-every", "6")
    assert r.returncode == 0, r.stderr
    r = run_script(task, b, *common, "--resume", str(a / "ckpt" / "step_00000006.pt"))
    assert r.returncode == 0, r.stderr
    la, lb = losses(read_metrics(a)), losses(read_metrics(b))
    assert sorted(lb) == list(range(7, 13))
    for step in lb:
        assert lb[step] == pytest.approx(la[step], rel=1e-6, abs=1e-7), step
    # --resume with no value continues the latest checkpoint in --out
    r = run_script(task, a, *common[2:], "--steps", "14", "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout and "step_00000012.pt" in r.stdout


@pytest.mark.slow
def test_grad_accum_and_bf16_and_fp16_fallback(tmp_path):
    r = run_script(
        "lm",
        tmp_path / "a",
        "--steps",
        "4",
        "--grad-accum",
        "2",
        "--precision",
        "fp16",
        "--log-every",
        "2",
    )
    assert r.returncode == 0, r.stderr
    assert "falling back to fp32" in r.stdout
    recs = read_metrics(tmp_path / "a")
    assert {x["precision"] for x in recs} == {"fp32"}
    assert recs[0]["samples_per_s"] > 0 and recs[0]["total_steps"] == 4


@pytest.mark.slow
def test_sigterm_saves_checkpoint_and_stops(tmp_path):
    out = tmp_path / "run"
    cmd = script_cmd(
        "lm", out, "--steps", "100000", "--log-every", "1", "--eval-every", "0", "--ckpt-every", "0"
    )
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env()
    )
    try:
        for line in proc.stdout:  # wait for real training progress, then interrupt
            if line.startswith("step 2/"):
                break
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    recs = read_metrics(out)
    assert recs[-2]["event"] == "ckpt" and recs[-1]["event"] == "done"
    assert recs[-1]["reason"] == "sigterm"
    ck = torch.load(recs[-2]["path"], weights_only=True)
    assert ck["step"] == recs[-1]["step"] >= 2 and ck["task"] == "lm"


@pytest.mark.slow
def test_torchrun_two_processes_only_rank0_writes(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(SCRIPTS / "lm.py"),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--layers",
        "1",
        "--dim",
        "32",
        "--heads",
        "2",
        "--seq-len",
        "32",
        "--steps",
        "6",
        "--grad-accum",
        "2",
        "--log-every",
        "1",
        "--eval-every",
        "3",
        "--ckpt-every",
        "3",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = read_metrics(out)
    assert {x["world_size"] for x in recs} == {2}
    assert [x["step"] for x in recs if x["event"] == "train"] == list(range(1, 7))
    assert [x["event"] for x in recs].count("done") == 1
    assert [x["event"] for x in recs].count("eval") == 2
    assert sorted(p.name for p in out.iterdir()) == ["ckpt", "metrics.jsonl"]
    assert r.stdout.count("done (completed)") == 1  # only rank 0 logs
    resumed = subprocess.run(
        [*cmd[:-12], "--steps", "8", "--grad-accum", "2", "--log-every", "1", "--resume"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def _assert_one_line_error(r, out, pattern: str, code: int = 2) -> None:
    assert r.returncode == code, (r.stdout, r.stderr)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert pattern in lines[0]
    assert "Traceback" not in r.stderr
    recs = read_metrics(out)
    assert recs[-1]["event"] == "error" and pattern in recs[-1]["message"]


def test_missing_data_file(tmp_path):
    out = tmp_path / "run"
    r = run_script("textcls", out, "--data", str(tmp_path / "nope.tsv"))
    _assert_one_line_error(r, out, "data file not found")


def test_malformed_data_file(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tgreet\nthis line has no label\n", encoding="utf-8")
    out = tmp_path / "run"
    r = run_script("translate", out, "--data", str(bad))
    _assert_one_line_error(r, out, "bad.tsv:2")


def test_unknown_label_in_validation(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps({"text": f"t{i}", "label": "ab"[i % 2]}) + "\n" for i in range(6)),
        encoding="utf-8",
    )
    val = tmp_path / "val.tsv"
    val.write_text("t1\ta\nt2\tzzz\n", encoding="utf-8")
    out = tmp_path / "run"
    r = run_script("textcls", out, "--data", str(train), "--val", str(val))
    _assert_one_line_error(r, out, "unknown label 'zzz'")


def test_checkpoint_from_another_task(tmp_path):
    a = tmp_path / "a"
    r = run_script("recsys", a, "--steps", "1")
    assert r.returncode == 0, r.stderr
    out = tmp_path / "b"
    r = run_script("lm", out, "--resume", str(a / "ckpt"))
    _assert_one_line_error(r, out, "written by task 'recsys'")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "step_00000001.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "b"
    r = run_script("lm", out, "--resume", str(tmp_path / "ckpt" / "step_00000001.pt"))
    _assert_one_line_error(r, out, "cannot read checkpoint")


def test_hf_model_without_transformers(tmp_path):
    try:  # transformers is not a test dependency; skip if it happens to be installed
        import transformers  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("transformers installed")
    out = tmp_path / "run"
    r = run_script("textcls", out, "--hf-model", str(tmp_path))
    _assert_one_line_error(r, out, "needs the 'transformers' package")


@pytest.mark.slow
def test_synthetic_smoke_all_tasks_validate(tmp_path):
    for task in TASK_METRICS:
        out = tmp_path / task
        r = run_script(
            task,
            out,
            "--synthetic",
            "--steps",
            "2",
            "--log-every",
            "1",
            "--synthetic-tokens" if task == "lm" else "--seed",
            "20000" if task == "lm" else "3",
        )
        assert r.returncode == 0, (task, r.stderr)
        events = [x["event"] for x in read_metrics(out)]
        assert events == ["train", "train", "eval", "ckpt", "done"], (task, events)


@pytest.mark.slow
def test_compile_fixed_shapes_do_not_recompile_per_batch(tmp_path):
    out = tmp_path / "run"
    e = env()
    e["TORCH_LOGS"] = "recompiles"
    cmd = script_cmd(
        "lm",
        out,
        "--steps",
        "6",
        "--log-every",
        "2",
        "--eval-every",
        "3",
        "--compile",
        "--layers",
        "1",
        "--dim",
        "32",
        "--seq-len",
        "32",
    )
    r = subprocess.run(cmd, capture_output=True, text=True, env=e, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    recs = read_metrics(out)
    assert all(x["compiled"] for x in recs)
    # one graph for training plus one recompile for eval (no_grad); none per batch
    assert r.stderr.count("Recompiling function") <= 1, r.stderr[-3000:]


@pytest.mark.slow
def test_bench_tiny_smoke(tmp_path):
    bench = SCRIPTS.parents[2] / "bench" / "lm_speed.py"
    res = tmp_path / "res.json"
    r = subprocess.run(
        [
            sys.executable,
            str(bench),
            "--tiny",
            "--configs",
            "fp32-eager,bf16-eager",
            "--json",
            str(res),
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(res.read_text())
    assert data["fp32-eager"]["speedup_vs_fp32"] == 1.0
    assert data["bf16-eager"]["tokens_per_s"] > 0
    assert "vs fp32" in r.stdout
