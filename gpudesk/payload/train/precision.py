"""Which floating-point precision a run trains in, chosen per device.

``--precision auto`` (the default) picks what is fast on the device at hand:

* CUDA with native bf16 (Ampere and newer): bf16 autocast;
* CUDA without native bf16 (V100, T4): fp16 autocast with a GradScaler, since bf16 there is
  emulated and slower than fp16;
* CPU: fp32, since bf16 autocast on many CPUs (those without AVX512-BF16/AMX) is emulated and
  was measured 28x slower per step than fp32 for textcls.

An explicit choice is honoured where it can run, with a warning where it is a poor one.
Only the standard library is imported here; the caller passes what torch reports.
"""

from __future__ import annotations

from dataclasses import dataclass

AUTO = "auto"
CHOICES = (AUTO, "fp32", "bf16", "fp16")


class PrecisionError(ValueError):
    """The requested precision cannot run on this device."""


@dataclass(frozen=True)
class Choice:
    precision: str  # one of metrics_schema.PRECISIONS: what the run actually uses
    note: str | None  # a line for the log: why, or a warning; None when nothing to say


def choose(requested: str, device_type: str, bf16_native: bool, bf16_any: bool) -> Choice:
    """The precision to train in.

    ``bf16_native`` is ``torch.cuda.is_bf16_supported(including_emulation=False)``,
    ``bf16_any`` the same with emulation; both are ignored off CUDA.
    """
    cuda = device_type == "cuda"
    if requested == AUTO:
        if not cuda:
            return Choice("fp32", f"precision auto: fp32 on {device_type}")
        if bf16_native:
            return Choice("bf16", "precision auto: bf16 (native on this GPU)")
        return Choice("fp16", "precision auto: fp16 + GradScaler (this GPU has no native bf16)")
    if requested == "bf16":
        if cuda and not bf16_any:
            raise PrecisionError("this GPU does not support bf16; use --precision fp16 or auto")
        if cuda and not bf16_native:
            return Choice(
                "bf16",
                "warning: bf16 is emulated on this GPU and slower than fp16; "
                "--precision auto would pick fp16",
            )
        if not cuda:
            return Choice(
                "bf16",
                f"warning: bf16 autocast on {device_type} is often emulated and many times "
                "slower than fp32; --precision auto would pick fp32",
            )
        return Choice("bf16", None)
    if requested == "fp16" and not cuda:
        return Choice(
            "fp32", "note: fp16 autocast is not supported on CPU here; falling back to fp32"
        )
    if requested in ("fp32", "fp16"):
        return Choice(requested, None)
    raise PrecisionError(f"unknown precision {requested!r}; choose one of {', '.join(CHOICES)}")
