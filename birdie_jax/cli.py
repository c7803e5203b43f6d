"""Command line: ``birdie-jax train | generate | info | objectives | plot-mixture | analyze | eval | export |
import``.

Every problem with user input ends with one line ``error: ...`` and exit status 2.
"""

import argparse
import dataclasses
import json
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="birdie-jax", description="Train and sample recurrent language models (JAX).")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (no arguments: the built-in default, a small Hawk)")
    t.add_argument("--config", default=None, help="bundled config name (e.g. hawk_tiny) or YAML path; "
                   "default: configs/default.yaml")
    t.add_argument("--resume", action="store_true", help="continue from the latest intact checkpoint in "
                   "train.run_dir (none yet: start from step 0), so one command serves start and restarts")
    t.add_argument("--allow-config-change", action="store_true", help="with --resume: accept changed data/batch "
                   "settings (recorded in the run's history.jsonl; earlier config.yaml versions are kept)")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=100")

    g = sub.add_parser("generate", help="continue a prompt with a trained model")
    g.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ subfolder")
    g.add_argument("--prompt", default=None, help="text to continue")
    g.add_argument("--jrt", action="store_true", help="JRT-Prompt: read the context twice (needs --context, "
                   "--question)")
    g.add_argument("--template", choices=["qa", "kv", "squad"], default=None,
                   help="prompt template for --context/--question (default with --jrt: qa)")
    g.add_argument("--context", default=None, help="document for --jrt / --template")
    g.add_argument("--question", default=None, help="question (qa, squad) or attribute key (kv)")
    g.add_argument("--cloze", default=None, help="the question as a statement to complete (qa, squad)")
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    g.add_argument("--stop-at-newline", action="store_true", help="end the continuation at its first newline")
    g.add_argument("--layout", choices=["trained", "prefix", "causal"], default="trained",
                   help="prompt layout: as trained (default), prompt + [BG], or [BG] + prompt")
    g.add_argument("--paradigm", default="auto", help="paradigm token: auto (as trained), none, or a name")
    g.add_argument("--read-twice", action="store_true",
                   help="PLA (JRT-RNN) models: fill a prompt shorter than model.max_prefix_len by repeating it")

    from birdie_jax.analysis.cli import add_analyze_parser
    from birdie_jax.evals.cli import add_eval_parser
    from birdie_jax.controller.plot import add_plot_mixture_parser
    from birdie_jax.objectives.show import add_objectives_parser

    add_objectives_parser(sub)
    add_plot_mixture_parser(sub)
    add_analyze_parser(sub)
    add_eval_parser(sub)

    from birdie_jax.convert.cli import add_convert_parsers

    add_convert_parsers(sub)

    i = sub.add_parser("info", help="show a config, its parameter count and state size")
    i.add_argument("--config", required=True)
    i.add_argument("--json", action="store_true")
    i.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def _train(args) -> int:
    from birdie_jax.config import load_config
    from birdie_jax.distributed.multihost import initialize_from_environment
    from birdie_jax.training.loop import train

    initialize_from_environment()  # multi-host (TPU pod, SLURM, JAX_* variables); a no-op on one process

    cfg = load_config(args.config or "default", *args.overrides)
    result = train(cfg, resume=args.resume, quiet=args.quiet, allow_config_change=args.allow_config_change)
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"done: step {result.step}, loss {result.final_loss:.4f}{val}; run folder {result.run_dir}")
    return 0


def _generate(args) -> int:
    from birdie_jax.generation import Sampling
    from birdie_jax.inference import generate_text, load_checkpoint
    from birdie_jax.prompts import jrt_prompt

    for flag in ("prompt", "context", "question", "cloze"):
        _check_utf8(f"--{flag}", getattr(args, flag))
    if args.max_new_tokens <= 0:
        raise _usage("--max-new-tokens must be > 0")
    if args.jrt or args.template:
        if args.context is None or args.question is None:
            raise _usage("--jrt/--template need --context and --question")
        prompt = jrt_prompt(args.template or "qa", context=args.context, question=args.question,
                            cloze=args.cloze, repeat=args.jrt)
    elif args.prompt is None:
        raise _usage("give --prompt TEXT (or --context and --question with --jrt)")
    else:
        prompt = args.prompt
    from birdie_jax.evals.evaluator import newline_ids
    from birdie_jax.prompt_format import PromptFormat

    if args.paradigm not in ("auto", "none"):
        PromptFormat(True, args.paradigm)  # an unknown name: one clear line
    try:
        sampling = Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ValueError as e:
        raise _usage(str(e)) from None
    run = load_checkpoint(args.checkpoint, args.step)
    if args.stop_at_newline:
        sampling = dataclasses.replace(sampling, stop_ids=newline_ids(run.tokenizer))
    layout = {"trained": None, "prefix": True, "causal": False}[args.layout]
    continuation = generate_text(run, prompt, args.max_new_tokens, sampling, prompt_as_prefix=layout,
                                 paradigm=args.paradigm, read_twice=args.read_twice)
    if args.stop_at_newline:
        continuation = continuation.split("\n")[0]
    print(prompt)
    print(CONTINUATION_RULE)
    print(continuation)
    return 0


#: The line ``generate`` prints between the prompt and the model's continuation.
CONTINUATION_RULE = "----- continuation -----"


def _info(args) -> int:
    import dataclasses

    from birdie_jax import host_malloc
    from birdie_jax.config import config_to_yaml, load_config
    from birdie_jax.models import build_model, count_parameters, state_size

    from flax import nnx

    cfg = load_config(args.config, *args.overrides)
    model = nnx.eval_shape(lambda: build_model(cfg, seed=cfg.seed))  # shapes only: paper sizes need no memory
    info = {"name": cfg.name, "architecture": cfg.model.architecture, "parameters": count_parameters(model),
            "state_floats_per_sequence": state_size(model, cache_len=cfg.data.seq_len),
            "vocab_size": model.cfg.vocab_size, "host_malloc": host_malloc.status()}
    if args.json:
        print(json.dumps({**info, "config": dataclasses.asdict(cfg)}, indent=2))
    else:
        print(config_to_yaml(cfg))
        for k, v in info.items():
            print(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}")
    return 0


def _check_utf8(flag: str, text: str | None) -> None:
    """Command-line text that is not valid UTF-8 arrives with surrogate escapes; refuse it."""
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise _usage(f"{flag} is not valid UTF-8 text (byte {e.start})") from None


class _UsageError(Exception):
    pass


def _usage(msg: str) -> _UsageError:
    return _UsageError(msg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from absl import logging as absl_logging

    from birdie_jax.errors import BirdieError

    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's informational warnings are noise here

    from birdie_jax.analysis.cli import run_analyze
    from birdie_jax.controller.plot import run_plot_mixture
    from birdie_jax.evals.cli import run_eval
    from birdie_jax.objectives.show import run_objectives

    handlers = {"train": _train, "generate": _generate, "info": _info, "objectives": run_objectives,
                "plot-mixture": run_plot_mixture, "analyze": run_analyze, "eval": run_eval}
    from birdie_jax.convert.cli import run_export, run_import

    handlers.update({"export": run_export, "import": run_import})
    try:
        return handlers[args.command](args)
    except (BirdieError, _UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
