"""Command-line pieces: ``birdie-jax analyze {loss-by-position,effrem,state-norm,passkey,copy}``.

``add_analyze_parser(subparsers)`` registers the command and ``run_analyze(args)`` runs it
(returns the exit status; problems are raised as :class:`~birdie_jax.errors.BirdieError`).
Every tool loads the run with ``birdie_jax.inference.load_checkpoint`` and writes its JSON
and PNG into ``--out`` (default ``RUN_DIR/analysis``). Text comes from the run's own corpus:
its validation split, or every document when it has none.
"""

import argparse
import os

TOOLS = ("loss-by-position", "effrem", "state-norm", "passkey", "copy")


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_analyze_parser(subparsers) -> argparse.ArgumentParser:
    """Adds ``analyze <tool> --checkpoint RUN_DIR [--out DIR] [options]`` to a subparsers object."""
    a = subparsers.add_parser("analyze", help="length-generalization analyses of a trained run (JSON + PNG)")
    tools = a.add_subparsers(dest="tool", required=True)

    def tool(name: str, help_: str, *, text: bool) -> argparse.ArgumentParser:
        p = tools.add_parser(name, help=help_)
        p.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ subfolder")
        p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
        p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/analysis)")
        p.add_argument("--label", default=None, help="curve label (default: the run's name)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--batch-size", type=int, default=8)
        p.add_argument("--chunk-len", type=int, default=None, help="tokens per forward chunk (default: the "
                       "training length)")
        p.add_argument("--train-len", type=int, default=None, help="training length T (default: data.seq_len)")
        if text:
            p.add_argument("--num-sequences", type=int, default=None, help="evaluation rows")
        return p

    p = tool("loss-by-position", "per-token loss against position up to k× the training length, state carried "
             "vs reset every T", text=True)
    p.add_argument("--max-factor", type=int, default=16)
    p.add_argument("--length", type=int, default=None, help="positions evaluated, a multiple of T "
                   "(default max-factor × T)")
    p = tool("effrem", "Effective Remembrance EffRem_T(t)", text=True)
    p.add_argument("--context-len", type=int, default=None, help="T (default 4× the training length)")
    p.add_argument("--num-points", type=int, default=64)
    p.add_argument("--num-last", type=int, default=64)
    p = tool("state-norm", "std of the recurrent state against position", text=True)
    p.add_argument("--max-factor", type=int, default=4)
    p.add_argument("--every", type=int, default=None, help="tokens between measurements")
    p = tool("passkey", "5-digit passkey retrieval at depths × lengths", text=False)
    p.add_argument("--lengths", type=_ints, required=True, help="prompt lengths in tokens, e.g. 512,1024,2048")
    p.add_argument("--depths", type=_floats, default=[0.1, 0.5, 0.9])
    p.add_argument("--trials", type=int, default=20)
    p = tool("copy", "synthetic copying accuracy beyond the training length", text=False)
    p.add_argument("--lengths", type=_ints, required=True, help="string lengths in characters")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--seeds", type=_ints, default=[0, 1, 2])
    return a


def _documents(cfg) -> list[str]:
    from birdie_jax.data.corpus import corpus_documents, split_documents  # noqa: PLC0415

    documents = corpus_documents(cfg.data)
    _, validation = split_documents(documents, cfg.data.validation_fraction, cfg.seed)
    return validation or documents


def run_analyze(args) -> int:
    """Runs ``args.tool`` on the checkpoint; prints where the files went. Returns 0."""
    from birdie_jax import analysis  # noqa: PLC0415
    from birdie_jax.analysis.common import AnalysisError  # noqa: PLC0415
    from birdie_jax.inference import load_checkpoint, prompt_as_prefix  # noqa: PLC0415

    for name in ("batch_size", "chunk_len", "train_len", "num_sequences", "trials"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise AnalysisError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    run = load_checkpoint(args.checkpoint, args.step)
    cfg, model, tokenizer = run.config, run.model, run.tokenizer
    out = args.out or os.path.join(args.checkpoint, "analysis")
    label = args.label or cfg.name
    train_len = args.train_len or cfg.data.seq_len
    chunk_len = args.chunk_len or train_len
    common = dict(out_dir=out, label=label)
    if args.tool in ("loss-by-position", "effrem", "state-norm"):
        text = dict(documents=_documents(cfg), tokenizer=tokenizer, train_len=train_len, seed=args.seed, **common)
        if args.num_sequences:
            text["num_sequences"] = args.num_sequences
        if args.tool == "loss-by-position":
            result = analysis.loss_by_position(model, max_factor=args.max_factor, length=args.length,
                                               chunk_len=chunk_len,
                                               batch_size=args.batch_size, **text)
        elif args.tool == "effrem":
            result = analysis.effrem(model, context_len=args.context_len, num_points=args.num_points,
                                     num_last=args.num_last, chunk_len=chunk_len, batch_size=args.batch_size, **text)
        else:
            result = analysis.state_norm(model, max_factor=args.max_factor, every=args.every, **text)
    elif args.tool == "passkey":
        result = analysis.passkey(model, tokenizer, args.lengths, args.depths, trials=args.trials, seed=args.seed,
                                  chunk_len=chunk_len, batch_size=args.batch_size,
                                  prompt_as_prefix=prompt_as_prefix(cfg), **common)
    else:
        result = analysis.copy_task(model, tokenizer, args.lengths, train_len=args.train_len, trials=args.trials,
                                    seeds=args.seeds, chunk_len=chunk_len, batch_size=args.batch_size,
                                    prompt_as_prefix=prompt_as_prefix(cfg), **common)
    print(f"{args.tool}: wrote {result['files']['json']} and {result['files']['png']}")
    return 0
