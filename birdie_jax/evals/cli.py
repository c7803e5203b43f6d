"""Command-line pieces: ``birdie-jax eval TASK --checkpoint RUN [options]`` (TASK or ``all``).

Loads the run with :func:`birdie_jax.inference.load_checkpoint` (its model carries the
prompt format it was trained with), builds passages from the run's own corpus (its
validation split; for ``data.corpus: mix`` its held-out built-in text; or ``--corpus``), runs the task(s) and writes ``<task>.json`` and
``<task>.png`` into ``--out`` (default ``RUN_DIR/eval``).
"""

from __future__ import annotations

import argparse
import os

from birdie_jax.evals.runner import TASK_NAMES


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _pairs(text: str) -> list[tuple[int, int]]:
    try:
        return [tuple(int(x) for x in v.split(":")) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated A:B pairs of integers, got {text!r}") from None


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    e = subparsers.add_parser("eval", help="recall evaluations of a trained run (JSON + PNG)")
    e.add_argument("task", help=f"one of {', '.join(TASK_NAMES)}, or all")
    e.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ subfolder")
    e.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    e.add_argument("--n", type=int, default=None, help="examples per slice (default: the task's)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", default=None, help="output folder (default: RUN_DIR/eval)")
    e.add_argument("--batch-size", type=int, default=8)
    e.add_argument("--layout", choices=["trained", "prefix", "causal"], default="trained",
                   help="prompt layout: as trained (default), prompt + [BG], or [BG] + prompt")
    e.add_argument("--paradigm", default="auto", help="paradigm token: auto (as trained), none, or a name "
                   "(ntp, plm, sc, copy, deshuf, infill, ae, r, x, s)")
    e.add_argument("--jrt", action="store_true", help="squad: also score the JRT-Prompt (read twice)")
    e.add_argument("--corpus", default=None, help="text for passages (default: the run's corpus)")
    e.add_argument("--qa-file", default=None, help="squad: JSONL of {context, question, answers}")
    e.add_argument("--lengths", type=_ints, default=None, help="squad/passkey/copy lengths (tokens)")
    e.add_argument("--queries", type=_ints, default=None, help="phonebook k values, e.g. 1,2,4,8")
    e.add_argument("--entries", type=_ints, default=None, help="phonebook book size MIN,MAX")
    e.add_argument("--slices", type=_pairs, default=None, help="mqar T:n pairs, e.g. 64:4,128:8")
    e.add_argument("--sizes", type=_pairs, default=None, help="set_disjointness |A|:|B| pairs, e.g. 4:16,16:4")
    e.add_argument("--vocab", type=int, default=None, help="mqar/set_disjointness vocabulary V")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    return e


def knobs_from_args(args) -> dict:
    """The size knobs given on the command line, under the tasks' keyword names."""
    knobs = {"seed": args.seed}
    for name, key in (("n", "num_examples"), ("lengths", "lengths"), ("queries", "queries"), ("slices", "slices"),
                      ("sizes", "sizes"), ("vocab", "vocab_size"), ("qa_file", "qa_file")):
        value = getattr(args, name)
        if value is not None:
            knobs[key] = value
    if args.entries is not None:
        if len(args.entries) != 2:
            raise EvalUsageError(f"--entries takes MIN,MAX, got {args.entries}")
        knobs["entries"] = tuple(args.entries)
    if args.jrt:
        knobs["jrt"] = True
    return knobs


class EvalUsageError(ValueError):
    pass


def run_eval(args) -> int:
    from birdie_jax.data.corpus import load_documents  # noqa: PLC0415
    from birdie_jax.data.mix import MIX  # noqa: PLC0415
    from birdie_jax.errors import DataError  # noqa: PLC0415
    from birdie_jax.evals.evaluator import Evaluator  # noqa: PLC0415
    from birdie_jax.evals.runner import get_task, headline, run_defaults, run_suite  # noqa: PLC0415
    from birdie_jax.inference import load_checkpoint  # noqa: PLC0415

    names = ["all"] if args.task == "all" else [args.task]
    if args.task != "all":
        get_task(args.task)  # unknown task: one clear line before loading anything
    if args.batch_size < 1 or (args.n is not None and args.n < 1):
        raise DataError("--batch-size and --n must be >= 1")
    try:
        knobs = knobs_from_args(args)
    except EvalUsageError as e:
        raise DataError(str(e)) from None
    run = load_checkpoint(args.checkpoint, args.step)
    layout = {"trained": None, "prefix": True, "causal": False}[args.layout]
    evaluator = Evaluator(run.model, run.tokenizer, prompt_as_prefix=layout, paradigm=args.paradigm,
                          batch_size=args.batch_size, progress=not args.quiet)
    evaluator.format  # an unknown paradigm fails here, before any work
    if args.corpus:
        documents = load_documents(args.corpus)
    elif run.config.data.corpus == MIX:  # passages from held-out text, not from phonebooks or QA documents
        from birdie_jax.data.mix import held_out_text  # noqa: PLC0415

        documents = held_out_text(run.config)
    else:
        from birdie_jax.analysis.cli import _documents  # noqa: PLC0415

        documents = _documents(run.config) if run.config.data.corpus not in GENERATED else load_documents("builtin")
    out = args.out or os.path.join(args.checkpoint, "eval")
    results = run_suite(names, evaluator, out_dir=out, documents=documents, defaults=run_defaults(run.config),
                        **knobs)
    for name, result in results.items():
        print(f"{name}: {get_task(name).headline} {headline(name, result):.3f}; wrote {result['files']['json']} "
              f"and {result['files']['png']}")
    return 0


#: Corpora that are generated task data, not text (passages then come from the built-in corpus).
GENERATED = ("mqar", "phonebook", "set_disjointness")
