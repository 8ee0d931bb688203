"""How long a bundled script takes to write one checkpoint, to size ``stop-run --grace``.

Builds lm.py's model at a preset shape (default GPT-2 small, 124M parameters), gives AdamW
its state (one step on zero gradients: no forward pass needed), and times the trainer's own
checkpoint write (``trainio.atomic_save`` of model + optimizer state: temporary file, fsync,
rename) into --dir, three times. Prints the size, the median time and, as a reference, the
time of a plain ``torch.save`` of the same object without fsync.

    python bench/ckpt_time.py --dir /workspace/runs   # measure where runs write
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

SCRIPTS = Path(__file__).resolve().parents[1] / "gpudesk" / "payload" / "train"
sys.path.insert(0, str(SCRIPTS))
import lm  # noqa: E402
import trainio  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="gpt2-small", choices=sorted(lm.PRESETS))
    p.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    shape = argparse.Namespace(**lm.PRESETS[a.preset], dropout=0.0)
    model = lm.GPT((shape.vocab_size + 63) // 64 * 64, shape)
    opt = torch.optim.AdamW(model.parameters())
    for param in model.parameters():
        param.grad = torch.zeros_like(param)
    opt.step()
    ck = {"model": model.state_dict(), "optim": opt.state_dict()}
    n = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        path = Path(d) / "step_00000001.pt"
        times, plain = [], []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            trainio.atomic_save(ck, path)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            torch.save(ck, Path(d) / "plain.pt")
            plain.append(time.perf_counter() - t0)
        size = path.stat().st_size / 2**30
    med, ref = statistics.median(times), statistics.median(plain)
    print(f"{a.preset}: {n / 1e6:.1f}M params, checkpoint {size:.2f} GiB")
    print(f"atomic_save (fsync + rename): {med:.2f} s median of {a.repeat}")
    print(f"reference torch.save without fsync: {ref:.2f} s (ratio {med / ref:.2f})")
    print(f"suggested stop-run grace: {max(10, round(3 * med + 5))} s (3 x write + 5 s)")


if __name__ == "__main__":
    main()
