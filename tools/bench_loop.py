"""Does the training loop keep its step's speed? Loop tokens/s ÷ bare-step tokens/s, default config.

- bare step: the loop's own jitted train step (same model, optimizer, per-class metrics),
  fed batches from the real pipeline prepared beforehand and already on the device; the
  median of --steps calls, each ended with ``block_until_ready``.
- loop: ``birdie_jax.training.loop.train`` on the same config (``mixture=birdie``, the data
  pipeline running in the loop's process, metrics read one step late) for --loop-steps
  steps with ``train.log_every=1``; the step time is the median interval between
  consecutive step records in ``metrics.jsonl``, leaving out intervals next to an
  evaluation (per-arm validation + controller) or a checkpoint, which the loop times apart.

The two alternate for --rounds rounds (bare, loop, bare, loop) so both see the same
machine load; the ratio is taken per round.

    python tools/bench_loop.py            # writes bench_results/bench_loop.json
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402

from birdie_jax.config import load_config  # noqa: E402
from birdie_jax.controller import evaluation_steps  # noqa: E402
from birdie_jax.controller.sizing import sized_to_run  # noqa: E402
from birdie_jax.data.corpus import load_documents, split_documents  # noqa: E402
from birdie_jax.data.pipeline import make_batch_iterator  # noqa: E402
from birdie_jax.models import build_model  # noqa: E402
from birdie_jax.objectives import build_mixture  # noqa: E402
from birdie_jax.tokenizer import build_tokenizer  # noqa: E402
from birdie_jax.training.loop import train  # noqa: E402
from birdie_jax.training.metrics import read_metrics  # noqa: E402
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer  # noqa: E402
from birdie_jax.training.step import init_train_state, make_train_step  # noqa: E402


def bare_step_ms(cfg, steps: int) -> float:
    tokenizer = build_tokenizer(cfg.data.tokenizer, num_sentinels=cfg.data.num_sentinels)
    docs, _ = split_documents(load_documents(cfg.data.corpus), cfg.data.validation_fraction, cfg.seed)
    mixture = build_mixture(cfg.mixture, tokenizer, seq_len=cfg.data.seq_len)
    iterator = make_batch_iterator(docs, tokenizer, seq_len=cfg.data.seq_len, batch_size=cfg.data.batch_size,
                                   seed=cfg.seed, sample_transform=mixture)
    batches = [jax.device_put({k: np.asarray(v) for k, v in next(iterator).items()}) for _ in range(4)]
    model = build_model(cfg, seed=cfg.seed, vocab_size=tokenizer.vocab_size)
    tx = make_optimizer(cfg.train)
    step = make_train_step(nnx.graphdef(model), tx, learning_rate_schedule(cfg.train), mixture.class_lookup)
    state = init_train_state(nnx.state(model), tx, cfg.seed)
    state, metrics = step(state, batches[0])  # compile
    jax.block_until_ready(metrics["loss"])
    times = []
    for i in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batches[i % len(batches)])
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def loop_step_ms(cfg, steps: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        run = cfg.replace(f"train.run_dir={tmp}/run", "train.log_every=1", "train.tensorboard=false",
                          "train.progress=false")
        train(run, stop_after=steps, quiet=True)
        records = read_metrics(os.path.join(tmp, "run", "metrics.jsonl"))
    stamps = {r["step"]: r["time"] for r in records if "time" in r and "loss" in r}
    controller = sized_to_run(cfg.controller, cfg.train.steps, 95)
    busy = set(evaluation_steps(cfg.train.steps, controller))
    every = cfg.train.eval_every
    busy |= {s for s in range(1, steps + 1) if (every and s % every == 0)
             or (cfg.train.checkpoint_every and s % cfg.train.checkpoint_every == 0)}
    intervals = [stamps[s] - stamps[s - 1] for s in sorted(stamps) if s - 1 in stamps
                 and not ({s - 1, s} & busy) and s > 2]
    return 1000 * statistics.median(intervals), len(intervals)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="default")
    p.add_argument("--steps", type=int, default=10, help="timed bare steps per round")
    p.add_argument("--loop-steps", type=int, default=40, help="loop steps per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bench_results/bench_loop.json")
    args = p.parse_args(argv)
    cfg = load_config(args.config)
    tokens = cfg.data.batch_size * cfg.data.seq_len
    rounds = []
    for r in range(args.rounds):
        bare = bare_step_ms(cfg, args.steps)
        loop, used = loop_step_ms(cfg, args.loop_steps)
        rounds.append({"bare_step_ms": round(bare, 1), "loop_step_ms": round(loop, 1),
                       "bare_tokens_per_s": round(tokens / bare * 1000, 1),
                       "loop_tokens_per_s": round(tokens / loop * 1000, 1), "loop_intervals_used": used,
                       "loop_over_bare": round(bare / loop, 3), "load_average": os.getloadavg()[0]})
        print(rounds[-1], flush=True)
    write_results(args.out, {"machine": machine_info(), "config": args.config, "tokens_per_step": tokens,
                             "target": 0.95, "rounds": rounds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
