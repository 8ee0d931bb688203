"""Stopping (SIGTERM to the process group, as ``gpudesk stop-run`` sends it) with DataLoader
workers and under torchrun, and exact equivalence of DDP and gradient accumulation with
one big batch. Everything runs on CPU (gloo) in fp32."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.scripts.util import SCRIPTS, TINY, env, losses, read_metrics, run_script

torch = pytest.importorskip("torch")

LM_TINY = ["--layers", "1", "--dim", "32", "--heads", "2", "--seq-len", "32"]
COMMON = ["--precision", "fp32", "--dropout", "0", "--log-every", "1", "--eval-every", "0"]


def ddp_cmd(task: str, out, *args: str, tiny: list[str] | None = None) -> list[str]:
    return [
        sys.executable,
        str(SCRIPTS / "ddp_launch.py"),
        "--standalone",
        "--nproc_per_node=2",
        str(SCRIPTS / f"{task}.py"),
        "--out",
        str(out),
        "--device",
        "cpu",
        *(TINY[task] if tiny is None else tiny),
        *args,
    ]


def stop_at_step(cmd: list[str], step: int, total: int) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group and SIGTERM the whole group (what stop-run does)
    once the run reports ``step``."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(),
        start_new_session=True,
    )  # fmt: skip
    seen = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if line.startswith(f"step {step}/{total} "):
                os.killpg(proc.pid, signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(seen) + out, err)


def assert_stopped_at(out, step: int) -> int:
    recs = read_metrics(out)
    assert [r["event"] for r in recs[-2:]] == ["ckpt", "done"]
    assert recs[-1]["reason"] == "sigterm"
    ck = torch.load(recs[-2]["path"], weights_only=True)
    # the step it was at: the signal lands while step `step` or the next one runs
    assert ck["step"] == recs[-1]["step"] in (step, step + 1)
    return ck["step"]


@pytest.mark.slow
def test_stop_with_dataloader_workers_checkpoints_and_resumes_exactly(tmp_path):
    args = [*LM_TINY, *COMMON, "--steps", "12", "--ckpt-every", "0", "--workers", "2"]
    ref = run_script("lm", tmp_path / "ref", *args, tiny=False)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPTS / "lm.py"), "--out", str(out), "--device", "cpu", *args]
    r = stop_at_step(cmd, 3, 12)
    assert r.returncode == 0, r.stderr
    assert "killed by signal" not in r.stderr
    stopped = assert_stopped_at(out, 3)
    r = run_script("lm", out, *args, "--resume", tiny=False)
    assert r.returncode == 0, r.stderr
    want, got = losses(read_metrics(tmp_path / "ref")), losses(read_metrics(out))
    assert sorted(got) == list(range(1, 13))
    for step in range(stopped + 1, 13):
        assert got[step] == pytest.approx(want[step], rel=1e-6), step


@pytest.mark.slow
def test_torchrun_stop_exits_0_at_the_current_step_and_resumes_exactly(tmp_path):
    # reference: one process with the global batch (2 ranks x 2) in one micro-batch
    args = [*COMMON, "--steps", "12", "--ckpt-every", "0"]
    ref = run_script("lm", tmp_path / "ref", *LM_TINY, *args, "--batch-size", "4", tiny=False)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "run"
    r = stop_at_step(ddp_cmd("lm", out, *args, "--batch-size", "2", tiny=LM_TINY), 3, 12)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "SignalException" not in r.stderr
    stopped = assert_stopped_at(out, 3)
    resumed = subprocess.run(
        ddp_cmd("lm", out, *args, "--batch-size", "2", "--resume", tiny=LM_TINY),
        capture_output=True, text=True, env=env(), timeout=300, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want, got = losses(read_metrics(tmp_path / "ref")), losses(read_metrics(out))
    assert sorted(got) == list(range(1, 13)) and stopped < 12
    for step in got:
        assert got[step] == pytest.approx(want[step], rel=1e-5), step


@pytest.mark.slow
@pytest.mark.parametrize("task", ["translate", "recsys"])
def test_ddp_and_accumulation_train_like_one_big_batch(task, tmp_path):
    """Padding makes per-batch token counts differ: the loss must be normalised by the
    global count, or 2 ranks x b / 2 micro-batches x b drift from one batch of 2b."""
    args = [*COMMON, "--steps", "3", "--eval-every", "3", "--ckpt-every", "3"]
    big = run_script(task, tmp_path / "big", *args, "--batch-size", "8")
    acc = run_script(task, tmp_path / "acc", *args, "--batch-size", "4", "--grad-accum", "2")
    ddp = subprocess.run(
        ddp_cmd(task, tmp_path / "ddp", *args, "--batch-size", "4"),
        capture_output=True, text=True, env=env(), timeout=300, check=False,
    )  # fmt: skip
    for r in (big, acc, ddp):
        assert r.returncode == 0, r.stderr[-3000:]
    runs = {k: read_metrics(tmp_path / k) for k in ("big", "acc", "ddp")}
    ref = losses(runs["big"])
    for name in ("acc", "ddp"):
        got = losses(runs[name])
        assert sorted(got) == [1, 2, 3]
        gap = max(abs(got[s] - ref[s]) for s in ref)
        assert gap < 1e-5, (name, gap)
    # sharded evaluation over 2 ranks gives the single-process metrics
    ev = {k: next(r for r in v if r["event"] == "eval") for k, v in runs.items()}
    assert ev["ddp"]["val_loss"] == pytest.approx(ev["big"]["val_loss"], rel=1e-5)
    for key in ("bleu", "hr10", "ndcg10"):
        if key in ev["big"]:
            assert ev["ddp"][key] == pytest.approx(ev["big"][key], abs=0.02), key
