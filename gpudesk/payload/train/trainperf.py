"""Throughput and MFU bookkeeping of the training core."""

from __future__ import annotations

import time

import torch

WARMUP_ITERS = 3  # steps excluded from throughput/MFU averages (compile, allocator warm-up)

# Dense (no sparsity) tensor-core peak FLOP/s per GPU for bf16 with fp32 accumulation
# (fp16 on V100/T4, which have no bf16 tensor cores), from NVIDIA's datasheets. Keys are
# ``torch.cuda.get_device_name()`` with the "NVIDIA "/"Tesla " prefix removed, matched
# exactly (case-insensitive, runs of spaces/dashes as one space): "H100 PCIe" is not the
# SXM part and "L40" is not "L4". A GPU not listed reports no MFU rather than a guess.
PEAK_FLOPS = {
    # Hopper / Blackwell
    "h100 80gb hbm3": 989e12,  # H100 SXM5
    "h100 sxm5 80gb": 989e12,
    "h100 sxm5 64gb": 989e12,
    "h100 80gb hbm3e": 989e12,
    "h100 pcie": 756e12,
    "h100 nvl": 835e12,
    "h800": 989e12,
    "h800 pcie": 756e12,
    "h200": 989e12,
    "h200 nvl": 835e12,
    "gh200 480gb": 989e12,
    "gh200 144g hbm3e": 989e12,
    "b200": 2250e12,
    # Ampere
    "a100 sxm4 40gb": 312e12,
    "a100 sxm4 80gb": 312e12,
    "a100 pcie 40gb": 312e12,
    "a100 80gb pcie": 312e12,
    "a100 sxm 80gb": 312e12,
    "a800 80gb pcie": 312e12,
    "a30": 165e12,
    "a40": 149.7e12,
    "a10": 125e12,
    "a10g": 70e12,
    "rtx a6000": 154.8e12,
    "rtx a5000": 111.1e12,
    "geforce rtx 3090": 71e12,
    # Ada Lovelace
    "l4": 121e12,
    "l40": 181e12,
    "l40s": 362e12,
    "rtx 6000 ada generation": 364.2e12,
    "geforce rtx 4090": 165.2e12,
    # Volta / Turing (fp16 tensor cores)
    "v100 sxm2 16gb": 125e12,
    "v100 sxm2 32gb": 125e12,
    "v100 pcie 16gb": 112e12,
    "v100 pcie 32gb": 112e12,
    "t4": 65e12,
}


def normalise_gpu_name(name: str) -> str:
    n = name.strip().lower()
    for prefix in ("nvidia ", "tesla "):
        n = n.removeprefix(prefix)
    return " ".join(n.replace("-", " ").split())


def peak_for_name(name: str) -> float | None:
    """Dense peak FLOP/s of the GPU called ``name`` (as CUDA reports it), or None."""
    return PEAK_FLOPS.get(normalise_gpu_name(name))


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


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
