from gpudesk.payload.train import metrics_schema as ms

COMMON = {
    "ts": 1.0,
    "step": 3,
    "epoch": 0.5,
    "world_size": 1,
    "precision": "bf16",
    "compiled": False,
    "task": "lm",
}


def test_valid_train_line():
    rec = {
        **COMMON,
        "event": "train",
        "loss": 2.0,
        "lr": 1e-3,
        "grad_norm": 0.5,
        "tokens_per_s": 10.0,
        "samples_per_s": 1.0,
        "step_time_s": 0.1,
        "mfu_pct": None,
        "mem_gib": None,
        "total_steps": 10,
    }
    assert ms.validate(rec) == []


def test_missing_and_wrong_fields_are_reported():
    rec = {**COMMON, "event": "train", "loss": "x", "bogus": 1}
    errs = ms.validate(rec)
    assert any("'lr'" in e for e in errs)
    assert any("'loss' has type str" in e for e in errs)
    assert any("unknown field 'bogus'" in e for e in errs)


def test_event_enum_and_task_metrics():
    assert ms.EVENTS == ("train", "eval", "ckpt", "done", "error")
    assert ms.validate({**COMMON, "event": "start"})
    assert any("perplexity" in e for e in ms.validate({**COMMON, "event": "eval", "val_loss": 1.0}))
    assert ms.validate({**COMMON, "event": "eval", "val_loss": 1.0, "perplexity": 2.7}) == []


def test_done_reason_and_bool_types():
    assert ms.validate({**COMMON, "event": "done", "reason": "sigterm"}) == []
    assert ms.validate({**COMMON, "event": "done", "reason": "bored"})
    assert ms.validate({**COMMON, "event": "done", "reason": "completed", "step": True})
    assert ms.validate({**COMMON, "event": "error", "message": "x", "compiled": 1})
    assert ms.validate([1, 2])
