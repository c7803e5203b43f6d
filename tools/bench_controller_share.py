"""The Birdie controller's share of a run's wall time, per bundled config (``mixture=birdie``).

Runs (``--run``, the tiny configs): a real ``birdie-jax train`` of the config with
``mixture=birdie``, each in a fresh process, into a temporary folder,
reading the loop's own ``time/*`` record from ``metrics.jsonl``: ``time/controller_share``
= time inside ``BirdieController.observe`` (history, update, waiting for its compile) /
the loop's wall time.

Projections (``--project``: the default config, whose 400 steps take over an hour on this
machine while it is shared, and the small configs, whose 10,000 steps of 32 × 1024 tokens
take days): the controller's cost = its compile (``lower().compile()``, counted in full
although the loop overlaps it with setup) + the schedule's number of updates × one
update's median time, at the critic size the run gets (``sized_to_run``); the training
time = steps × the train step measured at ``--project-rows`` rows (8: the default's whole
batch; for the small configs a quarter of theirs, a lower bound since a full batch does
more work), so the projected share is an upper bound. Validation passes are left out of the denominator (another upper-bound choice).

    python tools/bench_controller_share.py            # writes bench_results/controller_share.json
"""

import argparse
import json
import functools
import os
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402
from bench_controller import arm_classes  # noqa: E402
from bench_scan import _timed  # noqa: E402
from bench_train import bench_config  # noqa: E402

from birdie_jax.config import load_config  # noqa: E402
from birdie_jax.controller import BirdieController, controller_update  # noqa: E402
from birdie_jax.training.loop import train  # noqa: E402
from birdie_jax.training.metrics import read_metrics  # noqa: E402

RUN = ["hawk_tiny", "gated_ssm_tiny", "transformer_tiny"]
PROJECT = ["default", "hawk_small", "gated_ssm_small", "transformer_small"]


def real_run_in_subprocess(name: str) -> dict:
    """:func:`real_run` in a fresh Python process, so no compilation is shared between configs
    (controllers of equal size would otherwise reuse the previous run's compiled update)."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def real_run(name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(name, "mixture=birdie", f"train.run_dir={tmp}/run", "train.tensorboard=false",
                          "train.progress=false")
        t0 = time.perf_counter()
        train(cfg, quiet=True)
        process_s = time.perf_counter() - t0
        records = read_metrics(os.path.join(tmp, "run", "metrics.jsonl"))
    timing = [r for r in records if "time/wall_s" in r][-1]
    updates = max(r.get("mixture/updates", 0) for r in records)
    sized = BirdieController(arm_classes(), cfg.train.steps, cfg.controller).config
    return {"config": name, "kind": "run", "steps": cfg.train.steps, "architecture": cfg.model.architecture,
            "critic_width": sized.critic_width, "critic_state": sized.critic_state,
            "critic_steps": sized.critic_steps, "updates": int(updates), "train_call_s": round(process_s, 2),
            **{k.replace("time/", ""): round(v, 4) for k, v in timing.items() if k.startswith("time/")}}


def projected(name: str, rows: int, repeats: int) -> dict:
    cfg = load_config(name, "mixture=birdie")
    rows = min(rows, cfg.data.batch_size) if rows else cfg.data.batch_size
    step = bench_config(name, repeats, ["mixture=birdie", f"data.batch_size={rows}"])
    ctl = BirdieController(arm_classes(), cfg.train.steps, cfg.controller)
    args = ctl._update_args(np.asarray(jax.random.key_data(jax.random.key(0))), 0.2,
                            np.full((ctl.num_arms,), 3.0, np.float32))
    compile_s, times = _timed(functools.partial(controller_update, cfg=ctl.config), args, 1, repeats)
    update_s = float(np.median(times))
    updates = sum(1 for s in ctl.evaluation_steps[1:] if s >= ctl.warmup_end)
    controller_s = compile_s + updates * update_s
    train_s = cfg.train.steps * step["step_ms"] / 1000
    return {"config": name, "kind": "projection", "steps": cfg.train.steps, "architecture": cfg.model.architecture,
            "critic_width": ctl.config.critic_width, "critic_state": ctl.config.critic_state,
            "critic_steps": ctl.config.critic_steps, "updates": updates, "controller_compile_s": round(compile_s, 2),
            "update_ms": round(1000 * update_s, 1), "step_ms_at_rows": step["step_ms"], "rows_timed": rows,
            "batch_size": cfg.data.batch_size, "training_s_lower_bound": round(train_s, 1),
            "controller_s": round(controller_s, 2),
            "controller_share_upper_bound": round(controller_s / (train_s + controller_s), 5)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", nargs="*", default=RUN)
    p.add_argument("--project", nargs="*", default=PROJECT)
    p.add_argument("--project-rows", type=int, default=8,
                   help="rows of the timed train step (at most the config's batch; 0: the config's batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench_results/controller_share.json")
    p.add_argument("--one", help="run this one config here and print its JSON line (used internally)")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(real_run(args.one)), flush=True)
        return 0
    results = []
    jobs = [(name, real_run_in_subprocess) for name in args.run]
    jobs += [(name, lambda n: projected(n, args.project_rows, args.repeats)) for name in args.project]
    for name, measure in jobs:
        results.append({**measure(name), "load_average_after": os.getloadavg()[0]})
        print(json.dumps(results[-1]), flush=True)
        # Written after every config, so a run stopped early keeps what it measured.
        write_results(args.out, {"machine": machine_info(), "targets": {"tiny_small": 0.05, "default": 0.01},
                                 "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
