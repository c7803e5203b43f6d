"""Command line: ``birdie-jax train | generate | info``.

Every problem with user input ends with one line ``error: ...`` and exit status 2.
"""

import argparse
import json
import os
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="birdie-jax", description="Train and sample recurrent language models (JAX).")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (no arguments: the built-in default, a small Hawk)")
    t.add_argument("--config", default=None, help="bundled config name (e.g. hawk_tiny) or YAML path; "
                   "default: configs/default.yaml")
    t.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in train.run_dir")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=100")

    g = sub.add_parser("generate", help="continue a prompt with a trained model")
    g.add_argument("--checkpoint", required=True, help="run folder or its checkpoints/ subfolder")
    g.add_argument("--prompt", required=True)
    g.add_argument("--max-new-tokens", type=int, default=200)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")

    i = sub.add_parser("info", help="show a config, its parameter count and state size")
    i.add_argument("--config", required=True)
    i.add_argument("--json", action="store_true")
    i.add_argument("overrides", nargs="*", metavar="key=value")
    return p


def _train(args) -> int:
    from birdie_jax.config import load_config
    from birdie_jax.training.loop import train

    cfg = load_config(args.config or "default", *args.overrides)
    result = train(cfg, resume=args.resume, quiet=args.quiet)
    val = f", validation loss {result.val_loss:.4f}" if result.val_loss is not None else ""
    print(f"done: step {result.step}, loss {result.final_loss:.4f}{val}; run folder {result.run_dir}")
    return 0


def _generate(args) -> int:
    from birdie_jax.inference import generate_text, load_checkpoint

    if args.max_new_tokens <= 0:
        raise _usage("--max-new-tokens must be > 0")
    run = load_checkpoint(args.checkpoint, args.step)
    text = generate_text(run, args.prompt, args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, seed=args.seed)
    print(args.prompt + text)
    return 0


def _info(args) -> int:
    import dataclasses

    from birdie_jax.config import config_to_yaml, load_config
    from birdie_jax.models import build_model, count_parameters, state_size

    cfg = load_config(args.config, *args.overrides)
    model = build_model(cfg, seed=cfg.seed)
    info = {"name": cfg.name, "architecture": cfg.model.architecture, "parameters": count_parameters(model),
            "state_floats_per_sequence": state_size(model, cache_len=cfg.data.seq_len),
            "vocab_size": model.cfg.vocab_size}
    if args.json:
        print(json.dumps({**info, "config": dataclasses.asdict(cfg)}, indent=2))
    else:
        print(config_to_yaml(cfg))
        for k, v in info.items():
            print(f"{k}: {v:,}" if isinstance(v, int) else f"{k}: {v}")
    return 0


class _UsageError(Exception):
    pass


def _usage(msg: str) -> _UsageError:
    return _UsageError(msg)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from absl import logging as absl_logging

    from birdie_jax.errors import BirdieError

    absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's informational warnings are noise here

    handlers = {"train": _train, "generate": _generate, "info": _info}
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
