"""Benchmark the bundled ``lm`` script: GPT-2 small (124M params, seq 1024) on one GPU.

Runs lm.py three times on synthetic tokens - fp32 eager (TF32 matmuls), bf16 eager,
bf16 + torch.compile - and prints tokens/s, MFU and ratios vs fp32 eager, from the
``train`` lines of each run's metrics.jsonl (warm-up steps excluded).

    python bench/lm_speed.py                 # CUDA, GPT-2 small
    python bench/lm_speed.py --tiny          # CPU smoke check of the same code path
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LM = Path(__file__).resolve().parents[1] / "gpudesk" / "payload" / "train" / "lm.py"
CONFIGS = {
    "fp32-eager": ["--precision", "fp32"],
    "bf16-eager": ["--precision", "bf16"],
    "bf16-compile": ["--precision", "bf16", "--compile"],
}
TINY = [
    "--layers",
    "2",
    "--heads",
    "2",
    "--dim",
    "64",
    "--seq-len",
    "64",
    "--vocab-size",
    "512",
    "--synthetic-tokens",
    "200000",
    "--device",
    "cpu",
]


def run_config(name: str, extra: list[str], args: argparse.Namespace, root: Path) -> dict:
    out = root / name
    shape = TINY if args.tiny else ["--preset", "gpt2-small"]
    cmd = [
        sys.executable,
        str(LM),
        "--synthetic",
        *shape,
        *extra,
        "--out",
        str(out),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--log-every",
        "1",
        "--eval-every",
        "0",
        "--eval-batches",
        "1",
        "--ckpt-every",
        "0",
        "--keep",
        "1",
    ]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    env = dict(os.environ)
    env.pop("GPUDESK_RUN", None)
    r = subprocess.run(cmd, env=env, check=False, capture_output=not args.verbose, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} failed (exit {r.returncode}):\n{(r.stderr or '')[-2000:]}")
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in recs if x["event"] == "train"][args.skip :]
    if not train:
        sys.exit(f"{name}: no train lines after skipping {args.skip} warm-up steps")
    mfus = [x["mfu_pct"] for x in train if x["mfu_pct"] is not None]
    return {
        "tokens_per_s": statistics.median(x["tokens_per_s"] for x in train),
        "mfu_pct": statistics.median(mfus) if mfus else None,
        "step_time_s": statistics.median(x["step_time_s"] for x in train),
        "mem_gib": max((x["mem_gib"] or 0.0) for x in train) or None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke check)")
    p.add_argument("--steps", type=int, default=None, help="steps per config (30; tiny 8)")
    p.add_argument("--batch-size", type=int, default=None, help="micro-batch (8; tiny 4)")
    p.add_argument("--skip", type=int, default=5, help="warm-up steps left out of the median")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--out", help="keep run dirs here (default: a temporary dir)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--verbose", action="store_true", help="show the runs' output")
    args = p.parse_args()
    args.steps = args.steps or (8 if args.tiny else 30)
    args.batch_size = args.batch_size or (4 if args.tiny else 8)
    args.skip = min(args.skip, args.steps - 1)
    names = [c for c in args.configs.split(",") if c]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        sys.exit(f"unknown configs: {', '.join(sorted(unknown))}; choose from {', '.join(CONFIGS)}")
    with tempfile.TemporaryDirectory(prefix="lm_speed-") as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        results = {name: run_config(name, CONFIGS[name], args, root) for name in names}
    base = results.get("fp32-eager", {}).get("tokens_per_s")
    shape = "tiny (CPU smoke check)" if args.tiny else "GPT-2 small 124M, seq 1024"
    print(
        f"\nlm speed: {shape}, batch {args.batch_size}, {args.steps} steps, "
        f"median after {args.skip} warm-up steps"
    )
    print(f"{'config':<14}{'tokens/s':>14}{'ms/step':>10}{'MFU %':>8}{'mem GiB':>9}{'vs fp32':>9}")
    for name, r in results.items():
        mfu = f"{r['mfu_pct']:.1f}" if r["mfu_pct"] is not None else "n/a"
        mem = f"{r['mem_gib']:.1f}" if r["mem_gib"] else "n/a"
        ratio = f"{r['tokens_per_s'] / base:.2f}x" if base else "n/a"
        r["speedup_vs_fp32"] = r["tokens_per_s"] / base if base else None
        print(
            f"{name:<14}{r['tokens_per_s']:>14,.0f}{r['step_time_s'] * 1e3:>10.1f}"
            f"{mfu:>8}{mem:>9}{ratio:>9}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
