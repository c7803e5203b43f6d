"""Prefill and decode cost of prefix linear attention (PLA) against softmax attention.

1. **Prefill, kernel level**, per sequence length t (default 1k → 16k), one row, H heads,
   feature width f = 16, value width P: the PLA forms of ``birdie_jax.kernels.linear_attention``
   (``chunked``, the default; ``quadratic`` and ``recurrent`` up to ``--max-small-forms``, as
   their memory grows with t² and t·273·P) with a prefix of t/2, against causal softmax
   attention (``birdie_jax.models.attention.attend``). Time: median of ``--repeats`` jitted
   forward passes after a warm-up (compile excluded); softmax attention is timed up to
   ``--max-attention-time`` (slower and larger beyond, on a shared CPU) — its memory is
   always reported. Memory: XLA's compiled memory analysis (arguments + outputs +
   temporaries − aliased), i.e. the peak working set the compiler plans.
2. **Decode memory** at contexts 1k and 16k: the compiled decode step (``model.step``) of a
   JRT-RNN hybrid (gated conv, PLA, SWA) against a Transformer of the same width, with the
   state a prefill of that context leaves (attention: a KV cache of the context length).

    python tools/bench_linear_attention.py                      # 1k..16k, writes bench_results/
    python tools/bench_linear_attention.py --lengths 1024 4096 --repeats 2
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402

from birdie_jax.config import ModelConfig  # noqa: E402
from birdie_jax.kernels.linear_attention import linear_attention  # noqa: E402
from birdie_jax.models import LanguageModel, state_size  # noqa: E402
from birdie_jax.models.attention import attend  # noqa: E402


def compiled_bytes(fn, *args) -> int:
    """Planned device memory of jit(fn)(*args): arguments + outputs + temporaries − aliased."""
    m = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def seconds(fn, args, repeats: int) -> float:
    jitted = jax.jit(fn)
    jax.block_until_ready(jitted(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(jitted(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prefill_forms(t: int, args) -> list[dict]:
    keys = jax.random.split(jax.random.key(t), 6)
    q, k, ke = (jax.random.normal(key, (1, t, args.heads, 16)) for key in keys[:3])
    v, ve = (jax.random.normal(key, (1, t, args.heads, args.value_dim)) for key in keys[3:5])
    prefix = jnp.arange(t)[None] < t // 2
    rows = []
    forms = ["chunked"] + (["quadratic", "recurrent"] if t <= args.max_small_forms else [])
    for form in forms:
        def pla(q, k, v, ke, ve, prefix, form=form):
            return linear_attention(q, k, v, k_enc=ke, v_enc=ve, encoder_mask=prefix, implementation=form,
                                    chunk_size=args.chunk)[0]

        inputs = (q, k, v, ke, ve, prefix)
        rows.append({"kernel": f"pla_{form}", "length": t, "bytes": compiled_bytes(pla, *inputs),
                     "seconds": seconds(pla, inputs, args.repeats)})
    qa, ka = (jax.random.normal(key, (1, t, args.heads, args.value_dim)) for key in keys[:2])

    def softmax_attention(q, k, v):
        return attend(q, k, v, jnp.tril(jnp.ones((t, t), bool))[None])

    inputs = (qa, ka, v)
    rows.append({"kernel": "softmax_attention", "length": t, "bytes": compiled_bytes(softmax_attention, *inputs),
                 "seconds": seconds(softmax_attention, inputs, args.repeats) if t <= args.max_attention_time else None})
    for row in rows:
        print(row, flush=True)
    return rows


def decode_memory(args) -> list[dict]:
    common = dict(vocab_size=384, d_model=args.model_width, num_heads=4, head_dim=args.model_width // 4,
                  max_len=max(args.contexts) + 16)
    models = {"jrt_rnn": ModelConfig(architecture="hybrid", n_layers=5, layers=(
                  "gated_conv+mlp", "pla+mlp", "swa+mlp", "gated_conv+mlp", "gated_conv+mlp"), mlp="swiglu",
                  mlp_expansion=2.0, **common),
              "transformer": ModelConfig(architecture="transformer", n_layers=5, **common)}
    rows = []
    for name, cfg in models.items():
        model = nnx.eval_shape(lambda cfg=cfg: LanguageModel(cfg, rngs=nnx.Rngs(0)))
        graphdef, params = nnx.split(model)
        for context in args.contexts:
            state = jax.eval_shape(lambda context=context: model.init_state(1, context + 16))

            def step(params, token, state):
                return nnx.merge(graphdef, params).step(token, state)

            token = jax.ShapeDtypeStruct((1,), jnp.int32)
            rows.append({"model": name, "context": context, "decode_step_bytes": compiled_bytes(step, params, token, state),
                         "state_floats": state_size(model, cache_len=context + 16)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--value-dim", type=int, default=64)
    p.add_argument("--chunk", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-small-forms", type=int, default=2048)
    p.add_argument("--max-attention-time", type=int, default=8192)
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 16384])
    p.add_argument("--model-width", type=int, default=256)
    p.add_argument("--out", default=os.path.join("bench_results", "bench_linear_attention.json"))
    args = p.parse_args()
    prefill = [row for t in args.lengths for row in prefill_forms(t, args)]
    decode = decode_memory(args)
    settings = {k: v for k, v in vars(args).items() if k != "out"}
    write_results(args.out, {"settings": settings, "prefill": prefill, "decode": decode, "machine": machine_info()})


if __name__ == "__main__":
    main()
