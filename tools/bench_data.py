"""Data-pipeline throughput of the full Birdie-grid mixture on one CPU core.

Runs the real pipeline (``make_batch_iterator`` with the birdie mixture as the sample
transform, ``num_workers=0``) over the built-in corpus at the default config's shape
(batch 8 x 256 tokens), pinned to one core, and reports batches/s, samples/s and
tokens/s, and the headroom: how many times faster than the default training step
consumes batches (step time from ``bench_results/bench_train.json``, config "default",
or ``--step-ms``). Target: >= 10x.

    python tools/bench_data.py                 # writes bench_results/bench_data.json and
                                               # the "Data pipeline" section of docs/benchmarks.md
    python tools/bench_data.py --seconds 5 --step-ms 1000 --no-docs
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from birdie_jax.config import load_config
from birdie_jax.data.corpus import load_documents
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.objectives import build_mixture
from birdie_jax.tokenizer import OBJECTIVE_CLASSES, build_tokenizer

SECTION = "## Data pipeline (tools/bench_data.py)"


def pin_to_one_core(cpu: int | None) -> int | None:
    """Restricts this process (and threads it starts later) to one CPU; returns it (None if unsupported)."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[0] if cpu is None else cpu
    os.sched_setaffinity(0, {cpu})
    return cpu


def default_step_ms(path: str) -> float | None:
    """step_ms of the default config in a bench_train.json (named "default", or "default (<its
    architecture>)" when the tool timed it under each architecture), or None."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        data = json.load(f)
    names = ("default", f"default ({load_config('default').model.architecture})")
    for r in data.get("results", []):
        if r.get("config") in names and r.get("step_ms"):
            return float(r["step_ms"])
    return None


def headroom(batches_per_s: float, step_ms: float, source: str, batch_size: int, seq_len: int) -> dict:
    """How many times faster than the training step consumes batches the pipeline makes them."""
    train_batches_per_s = 1000.0 / step_ms
    return {"step_ms": step_ms, "source": source, "train_batches_per_s": round(train_batches_per_s, 3),
            "train_tokens_per_s": round(train_batches_per_s * batch_size * seq_len, 1),
            "ratio": round(batches_per_s / train_batches_per_s, 1)}


def measure(seconds: float, seq_len: int, batch_size: int, seed: int, mixture_name: str) -> dict:
    tokenizer = build_tokenizer("byte")
    docs = load_documents("builtin")
    mixture = build_mixture(load_config("default", f"mixture.name={mixture_name}").mixture, tokenizer,
                            seq_len=seq_len)
    it = make_batch_iterator(docs, tokenizer, seq_len=seq_len, batch_size=batch_size, seed=seed,
                             sample_transform=mixture, num_workers=0)
    for _ in range(5):  # warm-up: thread pool, first documents
        next(it)
    batches = samples = tokens = labels = 0
    per_class = np.zeros(len(OBJECTIVE_CLASSES), np.int64)
    t0 = time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        b = next(it)
        seg = b["segment_ids"]
        batches += 1
        samples += int(seg.max(axis=1).sum())
        tokens += int((seg > 0).sum())
        labels += int((b["targets"] != -100).sum())
        starts = (seg > 0) & (b["positions"] == 0)
        cls = mixture.class_ids(b["arm_ids"][starts])
        per_class += np.bincount(cls, minlength=len(OBJECTIVE_CLASSES))
    return {"mixture": mixture_name, "arms": len(mixture.arms), "seq_len": seq_len, "batch_size": batch_size,
            "documents": len(docs), "seconds": round(elapsed, 2), "batches": batches,
            "batches_per_s": round(batches / elapsed, 1), "samples_per_s": round(samples / elapsed, 1),
            "tokens_per_s": round(tokens / elapsed, 1), "label_tokens_per_s": round(labels / elapsed, 1),
            "row_fill": round(tokens / (batches * batch_size * seq_len), 4),
            "sample_share_per_class": {c: round(int(n) / max(samples, 1), 4)
                                       for c, n in zip(OBJECTIVE_CLASSES, per_class)}}


def write_section(path: str, body: str) -> None:
    """Replaces (or appends) this tool's section of the markdown file, leaving the others alone."""
    text = open(path).read() if os.path.isfile(path) else "# Benchmarks\n"
    lines = text.splitlines()
    try:
        start = lines.index(SECTION)
    except ValueError:
        lines += ["", SECTION]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = lines[:start] + [SECTION, ""] + body.strip("\n").splitlines() + ([""] if end < len(lines) else [])
    new += lines[end:]
    with open(path, "w") as f:
        f.write("\n".join(new).rstrip("\n") + "\n")


def markdown(result: dict, machine: dict) -> str:
    r, h = result, result["headroom"]
    shares = ", ".join(f"{c} {100 * s:.0f}%" for c, s in r["sample_share_per_class"].items())
    load = (f", load average {machine['load_average']} at the end (above 1: other jobs shared the machine)"
            if machine.get("load_average") else "")
    return f"""Command: `python tools/bench_data.py` (writes `bench_results/bench_data.json`).

Machine: {machine['platform']}, Python {machine['python']}, {machine['cpu_count']} CPUs, the process pinned to
CPU {machine['pinned_cpu']}{load}. The real pipeline (`make_batch_iterator`, `num_workers=0`, Grain
{machine['grain']}) with the **full Birdie grid** (`mixture=birdie`, {r['arms']} arms, initial
probabilities: uniform over classes, then within a class) as the sample transform, on the
built-in corpus ({r['documents']} documents), byte tokenizer, batch {r['batch_size']} × {r['seq_len']} tokens
(the default config); {r['seconds']} s timed after 5 warm-up batches.

| batches/s | samples/s | tokens/s (non-pad) | label tokens/s | row fill |
|---|---|---|---|---|
| {r['batches_per_s']:,} | {r['samples_per_s']:,} | {r['tokens_per_s']:,.0f} | {r['label_tokens_per_s']:,.0f} | {100 * r['row_fill']:.1f}% |

Samples per class in the timed stream: {shares}.

Headroom: the default training step takes **{h['step_ms']} ms** ({h['source']}) for one batch
of {r['batch_size']} × {r['seq_len']} tokens, i.e. it consumes {h['train_batches_per_s']} batches/s
({h['train_tokens_per_s']:,.0f} tokens/s); one core of data pipeline produces
**{h['ratio']:,.0f}×** that (target ≥ 10×).
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="timed duration")
    p.add_argument("--mixture", default="birdie")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cpu", type=int, default=None, help="core to pin to (default: the first allowed)")
    p.add_argument("--step-ms", type=float, default=None,
                   help="default training step time (default: read from --train-json)")
    p.add_argument("--train-json", default="bench_results/bench_train.json")
    p.add_argument("--out", default="bench_results/bench_data.json")
    p.add_argument("--docs", default="docs/benchmarks.md")
    p.add_argument("--no-docs", action="store_true", help="do not update --docs")
    p.add_argument("--headroom-only", action="store_true",
                   help="keep the pipeline measurement in --out, recompute the headroom from --train-json")
    args = p.parse_args(argv)

    step_ms, source = args.step_ms, "--step-ms"
    if step_ms is None:
        step_ms, source = default_step_ms(args.train_json), f"from {args.train_json}"
    if step_ms is None:
        p.error(f"no default step time in {args.train_json}: run tools/bench_train.py or pass --step-ms")
    if args.headroom_only:  # the pipeline's measurement kept, the step time re-read
        with open(args.out) as f:
            saved = json.load(f)
        result, machine = saved["result"], saved["machine"]
        result["headroom"] = headroom(result["batches_per_s"], step_ms, source, result["batch_size"],
                                      result["seq_len"])
        with open(args.out, "w") as f:
            json.dump({"machine": machine, "result": result}, f, indent=2)
        print(f"headroom {result['headroom']['ratio']:,}x over the default step ({step_ms} ms); wrote {args.out}")
        if not args.no_docs:
            write_section(args.docs, markdown(result, machine))
        return 0
    cpu = pin_to_one_core(args.cpu)
    cfg = load_config("default")
    result = measure(args.seconds, cfg.data.seq_len, cfg.data.batch_size, args.seed, args.mixture)
    result["headroom"] = headroom(result["batches_per_s"], step_ms, source, cfg.data.batch_size, cfg.data.seq_len)
    import grain  # noqa: PLC0415

    machine = {"platform": platform.platform(), "python": sys.version.split()[0], "cpu_count": os.cpu_count(),
               "pinned_cpu": cpu, "grain": getattr(grain, "__version__", "0.2"), "numpy": np.__version__,
               "load_average": [round(x, 2) for x in os.getloadavg()]}
    print(f"{result['batches_per_s']:,} batches/s, {result['samples_per_s']:,} samples/s, "
          f"{result['tokens_per_s']:,.0f} tokens/s on one core; headroom {result['headroom']['ratio']:,}x "
          f"over the default step ({step_ms} ms)")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "result": result}, f, indent=2)
    print(f"wrote {args.out}")
    if not args.no_docs:
        write_section(args.docs, markdown(result, machine))
        print(f"updated {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
