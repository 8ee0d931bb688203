"""Throughput and MFU bookkeeping of the training core."""

from __future__ import annotations

import time

import torch

WARMUP_ITERS = 3  # steps excluded from throughput/MFU averages (compile, allocator warm-up)

# Dense bf16 tensor-core peak FLOP/s per GPU, matched by substring of the device name.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "L4": 121e12,
}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in name:
            return flops
    return None


def gpt_flops_per_token(n_params: int, layers: int, heads: int, head_dim: int, seq: int) -> float:
    """PaLM appendix B / nanoGPT: 6N + 12·L·H·Q·T FLOPs per token (forward + backward)."""
    return 6 * n_params + 12 * layers * heads * head_dim * seq


class Throughput:
    """Mean step time over a window of steps, skipping the run's first warm-up steps and
    any step that also evaluated or checkpointed."""

    def __init__(self, device: torch.device, first_step: int):
        self.device, self.first_step = device, first_step
        self.win_t, self.win_step = time.perf_counter(), first_step
        self.t_step = self.win_t

    def step_started(self) -> None:
        self.t_step = time.perf_counter()

    def step_done(self, step: int, logging: bool) -> None:
        """After the optimizer step: restart the window once the warm-up steps are over."""
        if step - self.first_step == WARMUP_ITERS and not logging:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.restart(step)

    def restart(self, step: int) -> None:
        self.win_t, self.win_step = time.perf_counter(), step

    def step_time(self, step: int) -> float:
        """Mean seconds per step since the window started (call after a device sync)."""
        now = time.perf_counter()
        n, elapsed = step - self.win_step, now - self.win_t
        if step - self.first_step <= WARMUP_ITERS or n <= 0:
            n, elapsed = 1, now - self.t_step
        return elapsed / n
