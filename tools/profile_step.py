"""Where a training step's time goes: per-component timings and the compiled step's HLO.

For each architecture, on the peer workload of tools/bench_peers.py (vocab 512, d_model
256, 4 layers, batch 8 × 512, float32, AdamW), it times, each jitted on its own and
measured as the median of --repeats calls after a warm-up (interleaved in rounds):

- ``step``: the whole train step (forward, backward, clipping, AdamW);
- ``loss_head``: final norm + tied head + cross-entropy, forward and backward;
- ``mixer`` / ``mlp`` / ``norm``: one layer's mixer, gated MLP, RMSNorm, fwd+bwd (× layers);
- ``recurrence``: the mixer's recurrence kernel alone (linear_scan or SSD), fwd+bwd (× layers);
- ``optimizer``: clip + AdamW update + apply on gradients of the parameters' shapes;

and reads the compiled step's optimized HLO: how many transposes, copies, converts
(dtype casts), fusions, dots and while loops it runs, and XLA's cost analysis (flops,
bytes accessed). ``other`` = step − the parts (embedding, residual adds, gradient
plumbing, metrics).

    python tools/profile_step.py                     # writes bench_results/profile_step.json
    python tools/profile_step.py --hlo-only --out bench_results/profile_step_hlo.json   # HLO counts only
"""

import argparse
import collections
import json
import os
import re
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import machine_info, write_results  # noqa: E402

from birdie_jax.config import load_config
from birdie_jax.models import build_model
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer
from birdie_jax.training.step import init_train_state, make_train_step, token_losses

WORKLOAD = {"vocab": 512, "d_model": 256, "layers": 4, "batch": 8, "seq_len": 512}
ARCH_OVERRIDES = {
    "hawk": ["model.architecture=hawk", "model.state_dim=256", "model.mlp_expansion=3"],
    "mamba2": ["model.architecture=mamba2", "model.mamba_d_state=64", "model.mamba_head_dim=32",
               "model.mamba_chunk=64", "model.mamba_expand=2"],
    "gated_ssm": ["model.architecture=gated_ssm", "model.state_dim=320"],
}


def workload_config(arch: str, extra: list[str] = ()):
    w = WORKLOAD
    return load_config(None, *ARCH_OVERRIDES[arch], f"model.vocab_size={w['vocab']}", f"model.d_model={w['d_model']}",
                       f"model.n_layers={w['layers']}", f"data.batch_size={w['batch']}",
                       f"data.seq_len={w['seq_len']}", "model.bidirectional=none", "train.grad_clip=1.0", *extra)


def random_batch(cfg, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    shape = (cfg.data.batch_size, cfg.data.seq_len)
    tokens = rng.integers(0, cfg.model.vocab_size, shape, dtype=np.int32)
    return {"inputs": jnp.asarray(tokens), "targets": jnp.asarray(np.roll(tokens, -1, axis=1)),
            "segment_ids": jnp.ones(shape, jnp.int32)}


def fwd_bwd(fn):
    """jit(grad of sum(fn(params, x)) w.r.t. params and x)."""
    return jax.jit(jax.grad(lambda p, x: jnp.sum(fn(p, x)), argnums=(0, 1)))


def hlo_stats(compiled) -> dict:
    text = compiled.as_text()
    ops = collections.Counter(re.findall(r"=\s*[a-z0-9\[\],{}: ]*?\s([a-z\-]+)\(", text))
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return {"transpose": ops["transpose"], "copy": ops["copy"], "convert": ops["convert"], "fusion": ops["fusion"],
            "dot": ops["dot"], "while": ops["while"], "custom-call": ops["custom-call"],
            "gflops": round(float(cost.get("flops", 0)) / 1e9, 2),
            "gbytes_accessed": round(float(cost.get("bytes accessed", 0)) / 1e9, 2)}


def components(arch: str, extra: list[str] = ()) -> dict:
    """name → (callable with no arguments that runs once and blocks, multiplicity)."""
    cfg = workload_config(arch, extra)
    model = build_model(cfg, seed=0)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(cfg.train)
    step = make_train_step(graphdef, tx, learning_rate_schedule(cfg.train))
    batch = random_batch(cfg)
    holder = {"state": init_train_state(jax.tree.map(jnp.copy, params), tx, 0)}

    def run_step():
        holder["state"], metrics = step(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])

    b, t, d = cfg.data.batch_size, cfg.data.seq_len, cfg.model.d_model
    x = jax.random.normal(jax.random.key(1), (b, t, d), jnp.float32)
    block = model.blocks[0]
    seg = batch["segment_ids"]
    parts = {"step": (run_step, 1)}

    def add(name, module, fn, inputs, times):
        g, p = nnx.split(module)
        f = fwd_bwd(lambda p, x: fn(nnx.merge(g, p), x))
        parts[name] = (lambda: jax.block_until_ready(f(p, inputs)), times)

    def head(m, h):
        losses, _ = token_losses(m.logits(h), batch["targets"])
        return losses

    add("loss_head", model, head, x, 1)
    add("mixer", block.mixer, lambda m, h: m(h, segment_ids=seg, prefix_mask=None, state=None)[0], x,
        cfg.model.n_layers)
    if block.mlp is not None:
        add("mlp", block.mlp, lambda m, h: m(h), x, cfg.model.n_layers)
    add("norm", block.mixer_norm, lambda m, h: m(h), x, cfg.model.n_layers * (2 if block.mlp is not None else 1) + 1)
    parts["recurrence"] = (recurrence_part(arch, cfg, block.mixer, x, seg), cfg.model.n_layers)

    grads = jax.tree.map(jnp.ones_like, params)
    opt_state = tx.init(params)
    opt = jax.jit(lambda g, s, p: optax.apply_updates(p, tx.update(g, s, p)[0]))
    parts["optimizer"] = (lambda: jax.block_until_ready(opt(grads, opt_state, params)), 1)
    compiled = step.lower(holder["state"], batch).compile()
    return parts, hlo_stats(compiled)


def recurrence_part(arch: str, cfg, mixer, x, seg):
    from birdie_jax.kernels.linear_scan import linear_scan
    from birdie_jax.models.layers import segment_starts

    reset = segment_starts(seg)
    if arch == "mamba2":
        from birdie_jax.kernels.ssd import ssd

        b, t = x.shape[:2]
        h, p, n = mixer.num_heads, mixer.head_dim, mixer.d_state
        key = jax.random.split(jax.random.key(2), 4)
        xs = jax.random.normal(key[0], (b, t, h, p))
        dt = jax.nn.softplus(jax.random.normal(key[1], (b, t, h)))
        bb = jax.random.normal(key[2], (b, t, 1, n))
        cc = jax.random.normal(key[3], (b, t, 1, n))
        a = -jnp.ones((h,))
        f = jax.jit(jax.grad(lambda xs, dt, bb, cc: jnp.sum(ssd(xs, dt, a, bb, cc, reset=reset,
                                                               chunk_size=cfg.model.mamba_chunk)[0]),
                             argnums=(0, 1, 2, 3)))
        return lambda: jax.block_until_ready(f(xs, dt, bb, cc))
    n = cfg.model.state_dim
    a = jax.nn.sigmoid(jax.random.normal(jax.random.key(3), x.shape[:2] + (n,)))
    bx = jax.random.normal(jax.random.key(4), x.shape[:2] + (n,))
    f = jax.jit(jax.grad(lambda a, bx: jnp.sum(linear_scan(a, bx, reset=reset)[0]), argnums=(0, 1)))
    return lambda: jax.block_until_ready(f(a, bx))


def profile(arch: str, repeats: int, rounds: int, extra: list[str] = ()) -> dict:
    parts, hlo = components(arch, extra)
    for fn, _ in parts.values():  # compile + warm up
        fn()
    samples = {k: [] for k in parts}
    for _ in range(rounds):  # interleaved: every part sees the same machine load
        for name, (fn, _) in parts.items():
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    ms = {k: 1000 * statistics.median(v) for k, v in samples.items()}
    rows = {name: {"ms_each": round(ms[name], 2), "times": parts[name][1],
                   "ms_total": round(ms[name] * parts[name][1], 2)} for name in parts}
    step = ms["step"]
    counted = sum(r["ms_total"] for n, r in rows.items() if n not in ("step", "recurrence"))
    rows["other"] = {"ms_total": round(step - counted, 2)}
    for r in rows.values():
        r["share_of_step"] = round(r["ms_total"] / step, 3)
    tokens = WORKLOAD["batch"] * WORKLOAD["seq_len"]
    return {"architecture": arch, "overrides": list(extra), "step_ms": round(step, 2),
            "tokens_per_s": round(tokens / step * 1000, 1), "components": rows, "hlo": hlo}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--architectures", nargs="*", default=["hawk", "mamba2", "gated_ssm"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="bench_results/profile_step.json")
    p.add_argument("--hlo-only", action="store_true",
                   help="only compile each step and count its HLO ops (no timing: load-independent)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    results = []
    for arch in args.architectures:
        if args.hlo_only:
            results.append({"architecture": arch, "overrides": list(args.overrides),
                            "hlo": components(arch, args.overrides)[1]})
        else:
            results.append(profile(arch, args.repeats, args.rounds, args.overrides))
        print(json.dumps(results[-1]), flush=True)
        write_results(args.out, {"machine": machine_info(), "workload": WORKLOAD, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
