"""What ``model.remat`` costs and saves: train-step temporary memory and step time per policy.

For each policy (and with/without ``model.scan_layers``) the jitted train step of one config
is compiled; XLA's ``memory_analysis()`` gives the temporary buffers it needs (activations
kept for the backward pass, the figure remat shrinks), then the median of ``--repeats``
steps on random tokens gives the time. Also checks that every policy's first-step loss and
gradient norm equal the no-remat ones. Writes JSON and a PNG.

    python tools/bench_remat.py                     # default config at 4 layers (scan needs a period dividing n_layers)
    python tools/bench_remat.py --config hawk_small --seq-len 256 --repeats 3
"""

import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402
from bench_plot import new_figure, save_figure  # noqa: E402
from bench_train import random_batch  # noqa: E402

from birdie_jax.config import REMAT_POLICIES, load_config  # noqa: E402
from birdie_jax.models import build_model  # noqa: E402
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer  # noqa: E402
from birdie_jax.training.step import init_train_state, train_step_fn  # noqa: E402


def measure(config: str, overrides: list[str], remat: str, scan: bool, seq_len: int, batch_size: int,
            repeats: int) -> dict:
    cfg = load_config(config, *overrides, f"model.remat={remat}", f"model.scan_layers={str(scan).lower()}",
                      f"data.seq_len={seq_len}", f"data.batch_size={batch_size}")
    model = build_model(cfg, seed=0)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(cfg.train)
    step = jax.jit(train_step_fn(graphdef, tx, learning_rate_schedule(cfg.train)), donate_argnums=0)
    batch = {k: jax.numpy.asarray(v) for k, v in random_batch(cfg, model.cfg.vocab_size, 0).items()}
    state = init_train_state(params, tx, 0)
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    memory = compiled.memory_analysis()
    state, metrics = compiled(state, batch)
    first = {k: float(metrics[k]) for k in ("loss", "grad_norm")}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    return {"remat": remat, "scan_layers": scan, "temp_mib": round(memory.temp_size_in_bytes / 2**20, 1),
            "compile_s": round(compile_s, 2), "step_s": round(statistics.median(times), 3),
            "step_times_s": [round(t, 3) for t in times], **{f"first_{k}": v for k, v in first.items()}}


def plot(rows: list[dict], title: str, path: str) -> None:
    fig, axes = new_figure(1, 2, size=(11, 4.5))
    labels = [f"{r['remat']}{' +scan' if r['scan_layers'] else ''}" for r in rows]
    for ax, key, unit in ((axes[0], "temp_mib", "train-step temporaries (MiB)"), (axes[1], "step_s", "step time (s)")):
        ax.barh(labels, [r[key] for r in rows])
        ax.set_xlabel(unit)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--override", nargs="*", default=["model.n_layers=4"], help="key=value config overrides")
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--policies", nargs="+", choices=REMAT_POLICIES,
                        default=["none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable"],
                        help="policies measured on the unrolled model")
    parser.add_argument("--scan-policies", nargs="*", choices=REMAT_POLICIES, default=["none", "full"],
                        help="policies measured with model.scan_layers=true")
    parser.add_argument("--out", default="docs/benchmarks/bench_remat.json")
    parser.add_argument("--plot", default="docs/benchmarks/remat.png")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = []
    for scan, policies in ((False, args.policies), (True, args.scan_policies)):
        for remat in policies:
            rows.append(measure(args.config, args.override, remat, scan, args.seq_len, args.batch_size, args.repeats))
            print(rows[-1], flush=True)
    base = {r["scan_layers"]: r for r in rows if r["remat"] == "none"}
    for r in rows:  # same first step (loss, gradient norm) as unrolled no remat, to float32 reassociation
        ref = base.get(False, r)
        r["same_first_step_as_none"] = bool(np.allclose([r["first_loss"], r["first_grad_norm"]],
                                                        [ref["first_loss"], ref["first_grad_norm"]], rtol=1e-5))
    cfg = load_config(args.config, *args.override)
    out = {"config": args.config, "overrides": args.override, "architecture": cfg.model.architecture, "d_model": cfg.model.d_model,
           "n_layers": cfg.model.n_layers, "seq_len": args.seq_len, "batch_size": args.batch_size,
           "repeats": args.repeats, "rows": rows, "wall_s": round(time.perf_counter() - start, 1),
           "machine": machine_info()}
    write_results(args.out, out)
    plot(rows, f"{args.config} ({cfg.model.architecture}, d {cfg.model.d_model}, {cfg.model.n_layers} layers), "
               f"{args.batch_size}×{args.seq_len} tokens: remat policies", args.plot)


if __name__ == "__main__":
    main()
