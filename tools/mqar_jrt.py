"""MQAR learning run for the JRT-RNN mixers (jrt.md §5.1): a 2-layer Based or PLA model recalls.

The Zoology harness, shrunk for a CPU: layer 0 a gated short convolution, layer 1 the recall
mixer (``based`` linear attention, or ``pla`` reading the key–value context as its prefix),
no MLP, tied head; AdamW (wd 0.1) with warmup and cosine decay; cross-entropy on the
labelled positions (the value after each query key). Training examples are fresh MQAR
draws every step (:func:`birdie_jax.evals.mqar.mqar_batch`, one seed per step); the test set
is a fixed held-out seed. Chance accuracy is 1 / (V/2) (values are drawn from V/2 ids).

    python tools/mqar_jrt.py                        # based and pla, T=64, n=4, V=256
    python tools/mqar_jrt.py --mixers based --steps 500

Writes docs/jrt/mqar_jrt.json (accuracy curve per mixer, final test accuracy, settings).
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402

from birdie_jax.config import ModelConfig  # noqa: E402
from birdie_jax.evals.mqar import mqar_accuracy, mqar_batch  # noqa: E402
from birdie_jax.models import LanguageModel, count_parameters, state_size  # noqa: E402
from birdie_jax.training.step import token_losses  # noqa: E402


def build(mixer: str, args) -> LanguageModel:
    cfg = ModelConfig(architecture="hybrid", layers=("gated_conv", mixer), n_layers=2, vocab_size=args.vocab,
                      d_model=args.d_model, num_heads=args.heads, head_dim=args.d_model // args.heads,
                      la_feature_dim=args.feature_dim, init="normal", embed_scale=False, norm_eps=1e-5)
    return LanguageModel(cfg, rngs=nnx.Rngs(params=args.seed))


def context_prefix(inputs: np.ndarray, num_pairs: int, use_prefix: bool) -> np.ndarray:
    """bool[N T]: the 2n key–value context positions (PLA's prefix), or nothing."""
    mask = np.zeros(inputs.shape, bool)
    if use_prefix:
        mask[:, : 2 * num_pairs] = True
    return mask


def run(mixer: str, args, report) -> dict:
    """Trains one model; ``report(result)`` is called after every evaluation with the result so far."""
    model = build(mixer, args)
    graphdef, params = nnx.split(model)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, args.warmup, args.steps, args.lr * 0.1)
    tx = optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=0.1)
    opt_state = tx.init(params)
    use_prefix = mixer == "pla"

    def loss_fn(params, inputs, labels, prefix):
        logits = nnx.merge(graphdef, params)(inputs, None, prefix)
        losses, mask = token_losses(logits, labels)
        return losses.sum() / jnp.maximum(mask.sum(), 1)

    @jax.jit
    def train_step(params, opt_state, inputs, labels, prefix):
        loss, grads = jax.value_and_grad(loss_fn)(params, inputs, labels, prefix)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def predict(params, inputs, prefix):
        return jnp.argmax(nnx.merge(graphdef, params)(inputs, None, prefix), -1)

    test_x, test_y = mqar_batch(args.test_examples, 10**6, args.seq_len, args.pairs, args.vocab)
    test_prefix = context_prefix(test_x, args.pairs, use_prefix)

    def accuracy(params) -> float:
        return float(mqar_accuracy(np.asarray(predict(params, test_x, test_prefix)), test_y).mean())

    curve, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = mqar_batch(args.batch, step, args.seq_len, args.pairs, args.vocab)
        params, opt_state, loss = train_step(params, opt_state, x, y, context_prefix(x, args.pairs, use_prefix))
        if step % args.eval_every == 0 or step == args.steps:
            curve.append({"step": step, "loss": float(loss), "test_accuracy": accuracy(params)})
            print(f"{mixer} step {step}: loss {float(loss):.3f}, test accuracy {curve[-1]['test_accuracy']:.3f}",
                  flush=True)
            result = {"mixer": mixer, "parameters": count_parameters(model), "state_floats": state_size(model),
                      "steps_done": step, "final_test_accuracy": curve[-1]["test_accuracy"],
                      "seconds": time.perf_counter() - start, "curve": curve}
            report(result)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mixers", nargs="+", default=["based", "pla"], choices=["based", "pla"])
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--heads", type=int, default=1)
    p.add_argument("--feature-dim", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--test-examples", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join("docs", "jrt", "mqar_jrt.json"))
    args = p.parse_args()
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "mixers")}
    results = []

    def report(partial):  # the JSON is rewritten after every evaluation, so a stopped run keeps its curve
        write_results(args.out, {"task": "mqar", "chance_accuracy": 2 / args.vocab, "settings": settings,
                                 "runs": results + [partial], "machine": machine_info()})

    for mixer in args.mixers:
        results.append(run(mixer, args, report))


if __name__ == "__main__":
    main()
