"""``birdie-jax objectives show``: one decoded sample per objective class (paper Table 1 style),
or, with ``--json``, the token ids and masks of one sample of every arm of the grid.

Wire into the CLI with::

    add_objectives_parser(subparsers)            # registers "objectives show ..."
    handlers["objectives"] = run_objectives      # returns the exit status
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from birdie_jax.data.layout import layout_sample
from birdie_jax.errors import ConfigError, DataError
from birdie_jax.objectives.arms import Arm, birdie_grid
from birdie_jax.objectives.mixture import Mixture
from birdie_jax.objectives.presets import class_uniform, distinct_mixture
from birdie_jax.tokenizer import OBJECTIVE_CLASSES, Tokenizer, build_tokenizer

DEFAULT_TEXT = (
    "The quick brown fox jumps over the lazy dog. Birdie trains state space models with a mixture of "
    "objectives: next-token prediction, prefix language modeling, selective copying, copying, "
    "deshuffling, infilling and autoencoding. A reward-driven controller chooses how often each "
    "configuration is used, and bidirectional layers read the prefix in both directions."
)
DEFAULT_SEQ_LEN = 512


def example_sample(arm: Arm, tokens: np.ndarray, tokenizer: Tokenizer, *, seq_len: int,
                   seed: int) -> dict[str, Any]:
    """The first sample ``arm`` makes from ``tokens`` (with its class paradigm token, as in
    the birdie mixture): prefix, labels, and the laid-out inputs/targets/region."""
    mixture = Mixture("show", [arm], [1.0], special=tokenizer.special, seq_len=seq_len)
    prefix, labels, arm_id = mixture.document_samples(tokens, np.random.default_rng(seed))[0]
    laid = layout_sample(prefix, labels, bg_id=tokenizer.special.bg)
    return {"name": arm.name, "objective": arm.objective, "fallback": arm_id == mixture.fallback_id,
            "arm": arm.to_dict(), "prefix": prefix.tolist(), "labels": labels.tolist(),
            "inputs": laid["inputs"].tolist(), "targets": laid["targets"].tolist(),
            "region": laid["region"].tolist()}


def _text_table(samples: list[dict[str, Any]], tokenizer: Tokenizer) -> str:
    lines = ["Region: 1 = first prefix token, 0 = prefix (read both ways, no loss), "
             "2 = causal (BG and labels, loss)", ""]
    for s in samples:
        tag = " (too short: NTP fallback)" if s["fallback"] else ""
        lines += [
            f"[{s['objective']}] {s['name']}{tag}",
            f"  input : {tokenizer.decode(s['inputs'])}",
            f"  labels: {tokenizer.decode(s['labels'])}",
            f"  region: {''.join(map(str, s['region']))}",
            "",
        ]
    return "\n".join(lines)


def add_objectives_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers ``objectives show [--text TEXT] [--json] [--seq-len N] [--seed S]``."""
    o = subparsers.add_parser("objectives", help="inspect the pre-training objectives (Birdie)")
    osub = o.add_subparsers(dest="objectives_command", required=True)
    s = osub.add_parser("show", help="one decoded sample per objective class (--json: every configuration)")
    s.add_argument("--text", default=None, help="source text (default: a built-in paragraph)")
    s.add_argument("--json", action="store_true", help="token ids and masks for every configuration of the grid")
    s.add_argument("--seq-len", type=int, default=DEFAULT_SEQ_LEN, help="row length (default %(default)s)")
    s.add_argument("--seed", type=int, default=0)
    return o


def run_objectives(args: argparse.Namespace) -> int:
    """Runs ``objectives show``; prints to stdout, returns the exit status."""
    if getattr(args, "objectives_command", "show") != "show":
        raise ConfigError(f"unknown objectives command {args.objectives_command!r}")
    if args.seq_len < 2:
        raise ConfigError(f"--seq-len must be >= 2, got {args.seq_len}")
    tokenizer = build_tokenizer("byte")
    text = DEFAULT_TEXT if args.text is None else args.text
    if not text:
        raise DataError("--text is empty")
    tokens = np.concatenate([tokenizer.encode(text), [tokenizer.special.eos]]).astype(np.int32)
    grid = birdie_grid()
    distinct = distinct_mixture("birdie", grid, class_uniform(grid), uniform=True, special=tokenizer.special,
                                seq_len=args.seq_len)
    merged = [list(m) for m in distinct.arm_members if len(m) > 1]
    if args.json:
        samples = [example_sample(a, tokens, tokenizer, seq_len=args.seq_len, seed=args.seed) for a in grid]
        print(json.dumps({"tokenizer": tokenizer.to_dict(), "special": tokenizer.special.to_dict(),
                          "seq_len": args.seq_len, "seed": args.seed, "text": text, "ignore_id": -100,
                          "arms": samples, "distinct_arms": len(distinct.arms), "merged": merged}))
        return 0
    first = {c: next(a for a in grid if a.objective == c) for c in OBJECTIVE_CLASSES}
    samples = [example_sample(first[c], tokens, tokenizer, seq_len=args.seq_len, seed=args.seed)
               for c in OBJECTIVE_CLASSES]
    print(arm_count_line(len(grid), distinct, merged))
    print(_text_table(samples, tokenizer))
    return 0


def arm_count_line(grid_size: int, distinct: Mixture, merged: list[list[str]]) -> str:
    """"seq_len 256: 95 arms, 57 distinct" and the merged groups, one per line."""
    line = f"seq_len {distinct.seq_len}: {grid_size} arms, {len(distinct.arms)} distinct"
    if not merged:
        return line + "\n"
    groups = "\n".join(f"  {' = '.join(m)}" for m in merged)
    return f"{line} (length buckets the row cuts to the same length are merged):\n{groups}\n"
