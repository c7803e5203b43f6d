"""Results for docs/evals.md: an MQAR oracle run and every eval task on a small Birdie run.

1. **MQAR oracle** (T=64, n=4, V=128): a tiny Transformer trained on ``data.corpus: mqar``
   through the normal pipeline, evaluated with the MQAR metric during training
   (``eval.tasks: [mqar]``): accuracy far above chance (1/64) shows the training data path
   and the metric agree.
2. **All tasks** on a small Hawk trained with ``mixture=birdie`` on the built-in corpus,
   each at its CPU size (``birdie-jax eval all`` does the same from the command line).

Writes ``docs/evals/evals_demo.json`` and one PNG per task into ``docs/evals/``::

    python tools/evals_demo.py                      # both parts (~15-30 min on 2 CPU cores)
    python tools/evals_demo.py --oracle-steps 400 --text-steps 300 --out docs/evals
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

from birdie_jax.config import load_config
from birdie_jax.data.corpus import load_documents, split_documents
from birdie_jax.evals import Evaluator, run_suite
from birdie_jax.evals.runner import headline, run_defaults
from birdie_jax.inference import load_checkpoint
from birdie_jax.training.loop import train
from birdie_jax.training.metrics import read_metrics

ORACLE = ("data.corpus=mqar", "generated.vocab_size=128", "generated.num_examples=20000", "data.seq_len=132",
          "data.batch_size=32", "train.learning_rate=3e-3", "train.warmup_steps=30", "train.checkpoint_every=0",
          "train.tensorboard=false", "eval.tasks=[mqar]", "eval.num_examples=64")
TEXT = ("mixture=birdie", "data.seq_len=256", "data.batch_size=8", "model.d_model=128", "model.state_dim=160",
        "mixture.val_rows_per_config=1", "controller.critic_width=32", "controller.critic_state=64",
        "controller.critic_steps=20", "train.eval_every=0", "train.checkpoint_every=0", "train.tensorboard=false")
# Small task sizes: every task in a few minutes on a CPU.
KNOBS = {"mqar": dict(num_examples=32), "set_disjointness": dict(num_examples=32),
         "phonebook": dict(num_examples=4, entries=(10, 20), queries=(1, 2, 4)),
         "squad": dict(num_examples=8, lengths=(128, 256)), "infilling": dict(num_examples=16),
         "jrt": dict(num_examples=8, length=128), "passkey": dict(num_examples=4, lengths=(256, 512)),
         "copy": dict(num_examples=4, lengths=(16, 32))}


def oracle(steps: int, work: str) -> dict:
    run_dir = os.path.join(work, "mqar_oracle")
    cfg = load_config("transformer_tiny", *ORACLE, f"train.steps={steps}", f"train.eval_every={max(steps // 6, 1)}",
                      f"train.run_dir={run_dir}")
    tick = time.perf_counter()
    train(cfg, quiet=True)
    curve = [{"step": r["step"], "accuracy": r["eval/mqar"]} for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))
             if "eval/mqar" in r]
    return {"config": "transformer_tiny " + " ".join(ORACLE), "steps": steps, "chance": 1 / 64, "curve": curve,
            "seconds": round(time.perf_counter() - tick, 1)}


def all_tasks(steps: int, work: str, out: str) -> dict:
    run_dir = os.path.join(work, "birdie_hawk")
    cfg = load_config("hawk_tiny", *TEXT, f"train.steps={steps}", f"train.run_dir={run_dir}")
    tick = time.perf_counter()
    result = train(cfg, quiet=True)
    train_s = time.perf_counter() - tick
    run = load_checkpoint(run_dir)
    _, validation = split_documents(load_documents("builtin"), cfg.data.validation_fraction, cfg.seed)
    evaluator = Evaluator(run.model, run.tokenizer, progress=False)
    results = {}
    defaults = run_defaults(run.config)
    for name, knobs in KNOBS.items():
        results.update(run_suite([name], evaluator, out_dir=out, documents=validation,
                                 defaults=defaults, **knobs))
    summary = {name: headline(name, r) for name, r in results.items()}
    for r in results.values():
        r.pop("files", None)
    return {"config": "hawk_tiny " + " ".join(TEXT), "steps": steps, "final_loss": result.final_loss,
            "train_seconds": round(train_s, 1), "prompt_format": {"as_prefix": evaluator.format.as_prefix,
                                                                  "paradigm": evaluator.format.paradigm},
            "sizes": {k: {a: list(b) if isinstance(b, tuple) else b for a, b in v.items()} for k, v in KNOBS.items()},
            "headline": summary, "tasks": results}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--oracle-steps", type=int, default=400)
    p.add_argument("--text-steps", type=int, default=300)
    p.add_argument("--out", default="docs/evals")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="evals_demo_")
    try:
        payload = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs)",
                   "oracle": oracle(args.oracle_steps, work), "all_tasks": all_tasks(args.text_steps, work, args.out)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "evals_demo.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
