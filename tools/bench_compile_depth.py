"""Compile time of the training step against depth, with and without ``model.scan_layers``.

The model is a config (default ``hawk_paper``: d 2048, RG-LRU 2560, bf16 compute, alternate
bidirectional layers) with ``model.n_layers`` swept. Nothing is allocated: the model, the
optimizer state and the batch are abstract (``nnx.eval_shape``/``jax.eval_shape``), and the
whole jitted train step (loss, gradient, AdamW update) is timed through
``jax.jit(step).lower(abstract state, abstract batch)`` (trace + lowering) and ``.compile()``
(XLA). The config's own depth is always included. Writes JSON and a PNG.

    python tools/bench_compile_depth.py                                  # 2/4/8/16/24 + the config's depth
    python tools/bench_compile_depth.py --layers 2 4 --seq-len 128 --out /tmp/c.json --plot /tmp/c.png
"""

import argparse
import gc
import os
import sys
import time

import jax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402
from bench_plot import new_figure, save_figure  # noqa: E402
from bench_train import random_batch  # noqa: E402

from birdie_jax.config import load_config  # noqa: E402
from birdie_jax.models import build_model  # noqa: E402
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer  # noqa: E402
from birdie_jax.training.step import init_train_state, train_step_fn  # noqa: E402


def compile_times(config: str, n_layers: int, scan: bool, seq_len: int, batch_size: int) -> dict:
    """Lower and compile seconds of the abstract train step at ``n_layers``."""
    cfg = load_config(config, f"model.n_layers={n_layers}", f"model.scan_layers={str(scan).lower()}",
                      f"data.seq_len={seq_len}", f"data.batch_size={batch_size}")
    abstract_model = nnx.eval_shape(lambda: build_model(cfg, seed=0))
    graphdef, params = nnx.split(abstract_model)
    tx = make_optimizer(cfg.train)
    state = jax.eval_shape(lambda p: init_train_state(p, tx, 0), params)
    batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype)
             for k, v in random_batch(cfg, abstract_model.cfg.vocab_size, 0).items()}
    step = jax.jit(train_step_fn(graphdef, tx, learning_rate_schedule(cfg.train)), donate_argnums=0)
    t0 = time.perf_counter()
    lowered = step.lower(state, batch)
    lower_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lowered.compile()
    compile_s = time.perf_counter() - t0
    hlo_lines = lowered.as_text().count("\n")
    parameters = sum(x.size for x in jax.tree.leaves(nnx.state(abstract_model, nnx.Param)))
    return {"n_layers": n_layers, "scan_layers": scan, "lower_s": round(lower_s, 2), "compile_s": round(compile_s, 2),
            "total_s": round(lower_s + compile_s, 2), "stablehlo_lines": hlo_lines, "parameters": int(parameters)}


def plot(rows: list[dict], config: str, path: str) -> None:
    fig, ax = new_figure()
    for scan, label in ((False, "unrolled (default)"), (True, "model.scan_layers=true")):
        points = sorted((r["n_layers"], r["total_s"]) for r in rows if r["scan_layers"] == scan)
        ax.plot(*zip(*points), "o-", label=label)
    ax.set_xlabel("n_layers")
    ax.set_ylabel("lower + compile of the train step (s)")
    ax.set_title(f"{config}: compile time against depth (CPU)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="hawk_paper")
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4, 8, 16, 24])
    parser.add_argument("--seq-len", type=int, default=512, help="row length of the abstract batch")
    parser.add_argument("--batch-size", type=int, default=4, help="rows of the abstract batch")
    parser.add_argument("--out", default="docs/benchmarks/bench_compile_depth.json")
    parser.add_argument("--plot", default="docs/benchmarks/compile_depth.png")
    args = parser.parse_args()
    depth = load_config(args.config).model.n_layers
    layers = sorted(set(args.layers) | {depth})
    rows = []
    start = time.perf_counter()
    for n in layers:
        for scan in (False, True):
            row = compile_times(args.config, n, scan, args.seq_len, args.batch_size)
            rows.append(row)
            print(row, flush=True)
            jax.clear_caches()
            gc.collect()
    out = {"config": args.config, "config_n_layers": depth, "seq_len": args.seq_len, "batch_size": args.batch_size,
           "what": "jax.jit(train step: loss + grad + AdamW).lower(abstract inputs) then .compile(); seconds",
           "rows": rows, "wall_s": round(time.perf_counter() - start, 1), "machine": machine_info()}
    write_results(args.out, out)
    plot(rows, args.config, args.plot)


if __name__ == "__main__":
    main()
