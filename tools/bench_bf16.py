"""bf16 compute (``model.dtype=bfloat16``, float32 parameters and recurrences) against float32:
loss parity over a training run and the speed of each.

Runs the real training loop (``birdie_jax.training.loop.train``, same seed, same data) once
per compute dtype for ``--steps`` steps, logging every step, and compares the loss curves
(per-step and 10-step-smoothed differences, mean of the last 50 steps). Step time is the
median gap between consecutive logged steps (the loop's wall time per step, compile
excluded). Writes JSON and a PNG.

    python tools/bench_bf16.py                           # hawk_tiny widened to d 128, 200 steps
    python tools/bench_bf16.py --steps 50 --out /tmp/b.json --plot /tmp/b.png
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402
from bench_plot import new_figure, save_figure  # noqa: E402

from birdie_jax.config import load_config  # noqa: E402
from birdie_jax.training.loop import train  # noqa: E402

DTYPES = ("float32", "bfloat16")


def run(config: str, overrides: list[str], dtype: str, steps: int, run_dir: str) -> dict:
    cfg = load_config(config, *overrides, f"model.dtype={dtype}", "model.param_dtype=float32", f"train.steps={steps}",
                      "train.log_every=1", "train.eval_every=0", "train.checkpoint_every=0",
                      "train.tensorboard=false", "train.progress=false", f"train.run_dir={run_dir}")
    start = time.perf_counter()
    train(cfg, quiet=True)
    wall_s = time.perf_counter() - start
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [r for r in map(json.loads, f) if "loss" in r]
    losses = [r["loss"] for r in records]
    gaps = np.diff([r["time"] for r in records])[1:]  # the first gap may hold the step's compile
    tokens = cfg.data.batch_size * cfg.data.seq_len
    step_s = float(statistics.median(gaps))
    return {"dtype": dtype, "losses": [round(x, 5) for x in losses], "wall_s": round(wall_s, 1),
            "step_s": round(step_s, 4), "tokens_per_s": round(tokens / step_s, 1)}


def smooth(values: list[float], window: int = 10) -> np.ndarray:
    """Running mean over ``window`` steps (fewer when the run is shorter)."""
    window = min(window, len(values))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot(runs: dict, title: str, path: str) -> None:
    fig, (ax, diff) = new_figure(2, 1, size=(7, 6), sharex=True, height_ratios=(2, 1))
    for dtype, r in runs.items():
        ax.plot(range(1, len(r["losses"]) + 1), r["losses"], lw=1, label=f"{dtype} compute")
    ax.set_ylabel("training loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    delta = np.asarray(runs["bfloat16"]["losses"]) - np.asarray(runs["float32"]["losses"])
    diff.plot(range(1, len(delta) + 1), delta, lw=0.8, alpha=0.5, label="per step")
    smoothed = smooth(list(delta))
    diff.plot(range(len(delta) - len(smoothed) + 1, len(delta) + 1), smoothed, lw=1.5, label="10-step mean")
    diff.axhline(0, color="k", lw=0.5)
    diff.set_xlabel("step")
    diff.set_ylabel("bf16 − fp32 loss")
    diff.grid(alpha=0.3)
    diff.legend()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="hawk_tiny")
    parser.add_argument("--override", nargs="*", default=["model.d_model=128", "model.state_dim=160",
                                                          "data.seq_len=128", "data.batch_size=8"])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default="docs/benchmarks/bench_bf16.json")
    parser.add_argument("--plot", default="docs/benchmarks/bf16_parity.png")
    args = parser.parse_args()
    start = time.perf_counter()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in DTYPES:
            runs[dtype] = run(args.config, args.override, dtype, args.steps, os.path.join(tmp, dtype))
            print({k: v for k, v in runs[dtype].items() if k != "losses"}, flush=True)
    fp32, bf16 = (np.asarray(runs[d]["losses"]) for d in DTYPES)
    tail = min(50, len(fp32))
    parity = {"max_abs_step_diff": round(float(np.abs(bf16 - fp32).max()), 4),
              "max_abs_smoothed_diff": round(float(np.abs(smooth(list(bf16 - fp32))).max()), 4),
              "last50_mean_float32": round(float(fp32[-tail:].mean()), 4),
              "last50_mean_bfloat16": round(float(bf16[-tail:].mean()), 4),
              "last50_mean_diff": round(float(bf16[-tail:].mean() - fp32[-tail:].mean()), 4),
              "first_loss_float32": round(float(fp32[0]), 4), "first_loss_bfloat16": round(float(bf16[0]), 4)}
    speed = {"bf16_over_fp32_tokens_per_s": round(runs["bfloat16"]["tokens_per_s"] / runs["float32"]["tokens_per_s"], 3)}
    cfg = load_config(args.config, *args.override)
    out = {"config": args.config, "overrides": args.override, "architecture": cfg.model.architecture,
           "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers, "seq_len": cfg.data.seq_len,
           "batch_size": cfg.data.batch_size, "steps": args.steps, "parity": parity, "speed": speed, "runs": runs,
           "wall_s": round(time.perf_counter() - start, 1), "machine": machine_info()}
    print(parity, speed)
    write_results(args.out, out)
    plot(runs, f"{args.config} ({cfg.model.architecture}, d {cfg.model.d_model}): bf16 vs fp32 compute, "
               f"{args.steps} steps", args.plot)


if __name__ == "__main__":
    main()
