"""Decoding speed and memory after a long context, per architecture.

For each architecture and context length (default 1k and 16k tokens) the prompt is
prefilled (in chunks through the state contract, so a 16k attention prefill fits in
memory), then ``--new-tokens`` tokens are decoded greedily with the jitted ``lax.scan``
decoder of :mod:`birdie_jax.generation`. Reported: decode tokens/s (steady state, compile
excluded) and the decode step's device memory from XLA's compiled memory analysis
(arguments + outputs + temporaries − aliased), i.e. parameters + state + workspace.
Recurrent models must show flat memory: ratio 16k/1k ≤ 1.05.

    python tools/bench_decode.py                 # d=256, 4 layers, contexts 1024 and 16384
    python tools/bench_decode.py --contexts 512 2048 --new-tokens 32
"""

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.generation import Sampling, decode
from birdie_jax.models import LanguageModel, count_parameters

ARCHITECTURES = ("gated_ssm", "hawk", "transformer")


def prefill_in_chunks(model: LanguageModel, tokens: np.ndarray, cache_len: int, chunk: int):
    """Causal prefill of tokens [b t] piece by piece, carrying the state (equal to one pass)."""
    graphdef, params = nnx.split(model)

    @jax.jit
    def run(params, piece, state):
        return nnx.merge(graphdef, params)(piece, state=state, return_state=True)

    state = model.init_state(tokens.shape[0], cache_len)
    for start in range(0, tokens.shape[1], chunk):
        logits, state = run(params, jnp.asarray(tokens[:, start:start + chunk]), state)
    return logits[:, -1], state


def decode_memory_bytes(graphdef, params, logits, state, key, new_tokens: int) -> int:
    """Device bytes of the compiled decoder: arguments + outputs + temporaries − aliased."""
    compiled = decode.lower(graphdef, params, logits, state, key, new_tokens, Sampling(), 0, False).compile()
    m = compiled.memory_analysis()
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes)


def bench(arch: str, context: int, new_tokens: int, chunk: int, width: int, layers: int) -> dict:
    cfg = ModelConfig(architecture=arch, vocab_size=384, d_model=width, n_layers=layers, state_dim=width * 5 // 4,
                      num_heads=max(1, width // 64), head_dim=64, max_len=context + new_tokens)
    model = LanguageModel(cfg, rngs=nnx.Rngs(0))
    tokens = np.random.default_rng(0).integers(0, 256, (1, context), dtype=np.int32)
    t0 = time.perf_counter()
    logits, state = prefill_in_chunks(model, tokens, context + new_tokens, chunk)
    jax.block_until_ready(logits)
    prefill_s = time.perf_counter() - t0
    graphdef, params = nnx.split(model)
    key = jax.random.key(0)
    memory = decode_memory_bytes(graphdef, params, logits, state, key, new_tokens)
    state_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    copy = jax.tree.map(jnp.copy, state)  # decode donates its state
    out = decode(graphdef, params, logits, copy, key, new_tokens, Sampling(), 0, False)
    jax.block_until_ready(out[0])  # compile + first run
    times = []
    for _ in range(3):
        copy = jax.tree.map(jnp.copy, state)
        t0 = time.perf_counter()
        out = decode(graphdef, params, logits, copy, key, new_tokens, Sampling(), 0, False)
        jax.block_until_ready(out[0])
        times.append(time.perf_counter() - t0)
    return {"architecture": arch, "context": context, "parameters": count_parameters(model),
            "prefill_s": round(prefill_s, 2), "decode_tokens_per_s": round(new_tokens / min(times), 1),
            "decode_memory_bytes": memory, "state_bytes": state_bytes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--contexts", type=int, nargs="+", default=[1024, 16384])
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--chunk", type=int, default=1024, help="prefill chunk length")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--architectures", nargs="+", default=list(ARCHITECTURES))
    p.add_argument("--out", default="bench_results/bench_decode.json")
    args = p.parse_args(argv)
    results = []
    for arch in args.architectures:
        rows = [bench(arch, c, args.new_tokens, args.chunk, args.width, args.layers) for c in args.contexts]
        for r in rows:
            r["memory_ratio_to_shortest"] = round(r["decode_memory_bytes"] / rows[0]["decode_memory_bytes"], 4)
            print(f"{arch:<12} context {r['context']:>6}  prefill {r['prefill_s']:7.2f}s  decode "
                  f"{r['decode_tokens_per_s']:8.1f} tok/s  memory {r['decode_memory_bytes'] / 2**20:8.2f} MiB "
                  f"(x{r['memory_ratio_to_shortest']:.3f})  state {r['state_bytes'] / 2**10:10.1f} KiB", flush=True)
        results += rows
    machine = {"jax": jax.__version__, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
               "platform": platform.platform()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "settings": vars(args), "results": results}, f, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
