"""Cost of one Birdie controller update against the training time it steers.

Times the jitted update (critic training ``lax.fori_loop`` + K candidates scored + top-k
selection + exploration) at the paper's sizes — n = 95 arms, K = 2048, 200 critic steps,
critic width 256 / state 512 / 4 blocks, history buffers sized by the schedule (40 rows) — compile separately
from the steady state (median of --repeats calls after a warm-up call, each ended with
``block_until_ready``), plus the host-side ``BirdieController.observe`` around it.

It then prices a whole default run: ``train.steps`` of the default config (400) with the
schedule scaled by N/32000, the number of evaluations and of updates it implies, and the
training step time of ``bench_results/bench_train.json`` (the ``default`` entry's step_ms;
``--step-ms`` if absent). The ratio excludes the per-arm validation forward passes, whose
cost is only estimated here (forward ≈ 1/3 of a training step per batch of rows).

    python tools/bench_controller.py                   # paper sizes + cheaper variants
    python tools/bench_controller.py --measure-train   # + the train step, timed alongside
    python tools/bench_controller.py --no-variants --repeats 5
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np

from birdie_jax.config import load_config
from birdie_jax.controller import BirdieController, ControllerConfig, controller_update, evaluation_steps, warmup_end
from birdie_jax.controller.sizing import sized_to_run

# Spec §3: arms per class, in arm order (95).
ARMS_PER_CLASS = {"ntp": 1, "plm": 1, "sc": 16, "copy": 2, "deshuf": 4, "infill": 35, "ae": 36}
VARIANTS = {  # cheaper settings, to price the options when the paper's exceed the budget
    "critic_steps=50": dict(critic_steps=50),
    "critic_steps=20": dict(critic_steps=20),
    "history_capacity=128 (fixed)": dict(history_capacity=128),
    "critic 64/128 (width/state)": dict(critic_width=64, critic_state=128),
    "num_candidates=512": dict(num_candidates=512),
    "critic 64/128, critic_steps=50": dict(critic_width=64, critic_state=128, critic_steps=50),
    "critic 64/128, critic_steps=20, K=512": dict(critic_width=64, critic_state=128, critic_steps=20,
                                                 num_candidates=512),
}


def arm_classes() -> list[str]:
    return [c for c, k in ARMS_PER_CLASS.items() for _ in range(k)]


def time_update(cfg: ControllerConfig, repeats: int, total_steps: int, history_rows: int = 20) -> dict:
    """Compile time and steady-state time of one controller_update call (cost is independent
    of the number of valid rows: the buffers have a static length)."""
    ctl = BirdieController(arm_classes(), total_steps, cfg, seed=0)
    rng = np.random.default_rng(0)
    n, h = ctl.num_arms, ctl.capacity
    loss = np.zeros((h, n), np.float32)
    action = np.zeros((h, n), np.float32)
    reward = np.zeros((h, n), np.float32)
    loss[:history_rows] = rng.uniform(2, 5, (history_rows, n))
    action[:history_rows] = rng.dirichlet(np.ones(n), history_rows)
    reward[:history_rows] = rng.uniform(-0.1, 0.1, (history_rows, n))
    args = (ctl._params, ctl._opt_state, loss, action, reward, np.int32(history_rows), loss[history_rows - 1],
            ctl.onehot, np.float32(0.2), np.asarray(jax.random.key_data(jax.random.key(0))))
    t0 = time.perf_counter()
    lowered = controller_update.lower(*args, cfg=cfg)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return {"history_capacity": h, "compile_s": round(compile_s, 2),
            "update_ms": round(1000 * statistics.median(times), 1),
            "update_ms_min": round(1000 * min(times), 1)}


def time_observe(cfg: ControllerConfig, repeats: int) -> float:
    """Median ms of BirdieController.observe at update steps (jit already compiled)."""
    ctl = BirdieController(arm_classes(), 32_000, cfg, seed=0)
    rng = np.random.default_rng(1)
    loss = rng.uniform(3, 5, ctl.num_arms)
    steps = [s for s in ctl.evaluation_steps]
    times = []
    for i, step in enumerate(steps[: ctl.evaluation_steps.index(ctl.warmup_end) + 1 + repeats]):
        loss = loss * (1 - 0.01 * rng.uniform(size=loss.shape))
        t0 = time.perf_counter()
        ctl.observe(step, loss)
        if step >= ctl.warmup_end:
            times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times[1:] or times), 1)


def training_step_ms(path: str, fallback: float | None, architecture: str) -> tuple[float, str]:
    """step_ms of the default config: the entry named "default", else "default (<its architecture>)"."""
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f).get("results", [])
        entries = [r for r in results if r.get("config") == "default"] or \
                  [r for r in results if r.get("config") == f"default ({architecture})"]
        if entries:
            return float(entries[0]["step_ms"]), f"{path} (config {entries[0]['config']!r})"
    if fallback is None:
        sys.exit(f"error: no 'default' entry in {path}; pass --step-ms")
    return fallback, "--step-ms"


def default_run_shape() -> dict:
    try:
        cfg = load_config("default")
        return {"steps": cfg.train.steps, "batch_size": cfg.data.batch_size, "seq_len": cfg.data.seq_len,
                "architecture": cfg.model.architecture}
    except Exception:  # noqa: BLE001 — the bench must run even if the config cannot be read
        return {"steps": 400, "batch_size": 8, "seq_len": 256, "architecture": "hawk"}


def price_run(update_ms: float, step_ms: float, steps: int, cfg: ControllerConfig, val_rows: int,
              batch_size: int) -> dict:
    evals = evaluation_steps(steps, cfg)
    start = warmup_end(steps, cfg)
    updates = sum(1 for s in evals[1:] if s >= start)  # the first evaluation only stores losses
    train_s = steps * step_ms / 1000
    controller_s = updates * update_ms / 1000
    val_batches = -(-(len(arm_classes()) * val_rows) // batch_size)
    val_s = len(evals) * val_batches * step_ms / 3 / 1000
    late_interval = [b - a for a, b in zip(evals, evals[1:])][-1] if len(evals) > 1 else steps
    return {"train_steps": steps, "evaluations": len(evals), "updates": updates, "warmup_end": start,
            "mean_steps_between_evaluations": round(steps / len(evals), 1),
            "late_steps_between_evaluations": late_interval,
            "training_s": round(train_s, 1), "controller_s": round(controller_s, 1),
            "controller_fraction_of_training": round(controller_s / train_s, 4),
            "controller_fraction_of_late_interval": round(update_ms / (late_interval * step_ms), 4),
            "validation_forward_s_estimate": round(val_s, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--step-ms", type=float, default=None, help="training step time if bench_train.json lacks it")
    p.add_argument("--bench-train", default="bench_results/bench_train.json")
    p.add_argument("--out", default="bench_results/bench_controller.json")
    p.add_argument("--val-rows-per-arm", type=int, default=None,
                   help="held-out rows per arm (default: configs/default.yaml's mixture.val_rows_per_config)")
    p.add_argument("--no-variants", action="store_true", help="time only the paper's sizes")
    p.add_argument("--measure-train", action="store_true",
                   help="also time the default config's train step in this process (tools/bench_train.py's "
                        "bench_config), so both sides of the ratio see the same machine load; the ratio then "
                        "uses this figure")
    args = p.parse_args(argv)
    if args.val_rows_per_arm is None:
        args.val_rows_per_arm = load_config("default").mixture.val_rows_per_config

    run = default_run_shape()
    step_ms, step_source = training_step_ms(args.bench_train, args.step_ms, run["architecture"])
    file_step_ms = step_ms
    if args.measure_train:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from bench_train import bench_config

        measured = bench_config("default", args.repeats, [])
        print(json.dumps(measured), flush=True)
        step_ms, step_source = float(measured["step_ms"]), "measured in this run (bench_train.bench_config)"
    paper = ControllerConfig(critic_width=256, critic_state=512, critic_steps=200, num_candidates=2048)
    rows = []
    configs = {"paper constants (configs/*_paper.yaml)": paper,
               "default run (configs/default.yaml controller:, sized to the run)": sized_to_run(
                   load_config("default").controller, run["steps"], len(arm_classes()))}
    if not args.no_variants:
        configs.update({name: dataclasses.replace(paper, **kw) for name, kw in VARIANTS.items()})
    for name, cfg in configs.items():
        timing = time_update(cfg, args.repeats, run["steps"])
        row = {"setting": name, "critic_steps": cfg.critic_steps, "critic_width": cfg.critic_width,
               "critic_state": cfg.critic_state, "num_candidates": cfg.num_candidates, **timing,
               **price_run(timing["update_ms"], step_ms, run["steps"], cfg, args.val_rows_per_arm,
                           run["batch_size"])}
        unscaled = price_run(timing["update_ms"], step_ms, run["steps"],
                             dataclasses.replace(cfg, scale_short_runs=False), args.val_rows_per_arm,
                             run["batch_size"])
        row["unscaled_schedule"] = {k: unscaled[k] for k in ("evaluations", "updates", "controller_s",
                                                             "controller_fraction_of_training",
                                                             "validation_forward_s_estimate")}
        if cfg == paper:
            row["observe_ms"] = time_observe(cfg, args.repeats)
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = {
        "machine": {"jax": jax.__version__, "backend": jax.default_backend(), "devices": str(jax.devices()),
                    "cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_average_at_end": os.getloadavg()},
        "arms": len(arm_classes()), "candidates": paper.num_candidates, "step_ms": step_ms,
        "step_ms_source": step_source, "step_ms_bench_train_json": file_step_ms, "default_run": run,
        "target_fraction": 0.01, "results": rows,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
