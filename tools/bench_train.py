"""Training throughput (tokens/s) of the jitted train step, per model config.

Compilation is timed separately from the steady state (median of --repeats timed steps
after a warm-up). Batches are random tokens of the config's shape, so the figure is the
step's cost alone, not the data pipeline's.

    python tools/bench_train.py                  # the default config under each architecture
    python tools/bench_train.py --configs default hawk_small --architectures hawk --repeats 3
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np
from flax import nnx

from birdie_jax.config import load_config
from birdie_jax.models import build_model, count_parameters
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer
from birdie_jax.training.step import init_train_state, make_train_step


def random_batch(cfg, vocab_size: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    shape = (cfg.data.batch_size, cfg.data.seq_len)
    tokens = rng.integers(0, 256, shape, dtype=np.int32)
    return {"inputs": tokens, "targets": np.roll(tokens, -1, axis=1), "segment_ids": np.ones(shape, np.int32),
            "positions": np.broadcast_to(np.arange(shape[1], dtype=np.int32), shape).copy(),
            "region": np.full(shape, 2, np.int32)}


def bench_config(name: str, repeats: int, overrides: list[str]) -> dict:
    cfg = load_config(name, *overrides)
    name = f"{name} ({cfg.model.architecture})"
    model = build_model(cfg, seed=0)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(cfg.train)
    step = make_train_step(graphdef, tx, learning_rate_schedule(cfg.train))
    state = init_train_state(params, tx, 0)
    batch = {k: jax.numpy.asarray(v) for k, v in random_batch(cfg, model.cfg.vocab_size, 0).items()}
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics["loss"])
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, metrics = step(state, batch)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    tokens = cfg.data.batch_size * cfg.data.seq_len
    return {"config": name, "architecture": cfg.model.architecture, "parameters": count_parameters(model),
            "batch_size": cfg.data.batch_size, "seq_len": cfg.data.seq_len, "compile_s": round(compile_s, 2),
            "step_ms": round(step_s * 1e3, 2), "tokens_per_s": round(tokens / step_s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=["default"])
    p.add_argument("--architectures", nargs="*", default=["gated_ssm", "hawk", "transformer"],
                   help="run each config under each of these architectures (none given: as configured)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="bench_results/bench_train.json")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="applied to every config")
    args = p.parse_args(argv)
    results = []
    runs = [(name, [f"model.architecture={arch}"] if arch else []) for name in args.configs
            for arch in (args.architectures or [None])]
    for name, arch_override in runs:
        r = bench_config(name, args.repeats, [*arch_override, *args.overrides])
        results.append(r)
        print(f"{r['config']:<26} {r['architecture']:<12} {r['parameters']:>12,} params  "
              f"compile {r['compile_s']:6.1f}s  step {r['step_ms']:9.1f} ms  {r['tokens_per_s']:>10,.0f} tok/s",
              flush=True)
    machine = {"jax": jax.__version__, "backend": jax.default_backend(), "devices": str(jax.devices()),
               "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "results": results}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
