"""--precision auto: bf16 on GPUs with native bf16, fp16 on older GPUs, fp32 on CPU."""

from __future__ import annotations

import pytest

from gpudesk.payload.train import precision as p
from tests.scripts.util import read_metrics, run_script

# The table, written out independently of precision.py:
# (device, native bf16, any bf16) -> what auto must pick.
AUTO_TABLE = [
    ("cpu", False, False, "fp32"),
    ("cpu", True, True, "fp32"),  # bf16 flags are about CUDA and mean nothing on a CPU
    ("cuda", True, True, "bf16"),  # A100, H100, L4 ...
    ("cuda", False, True, "fp16"),  # V100, T4: bf16 only emulated
    ("cuda", False, False, "fp16"),
]


@pytest.mark.parametrize(("device", "native", "any_", "expected"), AUTO_TABLE)
def test_auto_picks_per_device(device: str, native: bool, any_: bool, expected: str) -> None:
    choice = p.choose("auto", device, bf16_native=native, bf16_any=any_)
    assert choice.precision == expected
    assert choice.note and expected in choice.note


def test_explicit_bf16_on_cpu_runs_with_a_warning_and_the_reason() -> None:
    choice = p.choose("bf16", "cpu", bf16_native=False, bf16_any=False)
    assert choice.precision == "bf16"
    assert choice.note and choice.note.startswith("warning:") and "fp32" in choice.note


def test_explicit_bf16_on_an_emulating_gpu_warns_and_on_a_gpu_without_it_refuses() -> None:
    emulated = p.choose("bf16", "cuda", bf16_native=False, bf16_any=True)
    assert emulated.precision == "bf16" and emulated.note and "emulated" in emulated.note
    with pytest.raises(p.PrecisionError, match="fp16"):
        p.choose("bf16", "cuda", bf16_native=False, bf16_any=False)


def test_explicit_choices_that_fit_are_kept_silently() -> None:
    assert p.choose("bf16", "cuda", bf16_native=True, bf16_any=True) == p.Choice("bf16", None)
    assert p.choose("fp32", "cuda", bf16_native=True, bf16_any=True) == p.Choice("fp32", None)
    assert p.choose("fp16", "cuda", bf16_native=True, bf16_any=True) == p.Choice("fp16", None)
    assert p.choose("fp16", "cpu", bf16_native=False, bf16_any=False).precision == "fp32"


def test_a_default_cpu_run_trains_in_fp32_and_records_it(tmp_path) -> None:
    out = tmp_path / "run"
    r = run_script("textcls", out, "--steps", "2", "--log-every", "1", "--eval-every", "0")
    assert r.returncode == 0, r.stderr
    assert "precision auto: fp32 on cpu" in r.stdout
    recs = read_metrics(out)
    assert recs and {x["precision"] for x in recs} == {"fp32"}


def test_explicit_bf16_on_cpu_is_honoured_and_warned_about(tmp_path) -> None:
    out = tmp_path / "run"
    r = run_script(
        "textcls", out, "--steps", "1", "--log-every", "1", "--eval-every", "0",
        "--precision", "bf16",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "warning: bf16 autocast on cpu" in r.stdout
    assert {x["precision"] for x in read_metrics(out)} == {"bf16"}


def test_every_concrete_choice_is_a_recorded_precision() -> None:
    from gpudesk.payload.train import metrics_schema

    assert set(p.CHOICES) - {p.AUTO} == set(metrics_schema.PRECISIONS)
