"""This library's training step beside the reference implementations, on one workload.

Workload (identical for every entry): vocab 512, d_model 256, 4 layers, batch 8 × 512
tokens, float32, next-token cross-entropy, AdamW, one training step per call (jitted for
JAX; eager for PyTorch, whose peers have no compiled training path), the median of
--steps timed steps after --warmup untimed ones (the first of which carries the compile).

Entries:

- ``ours/hawk``: birdie_jax Hawk (RG-LRU width 256, gated MLP 768, conv 4), the project's
  train step (global-norm clipping + AdamW).
- ``recurrentgemma/hawk-linear``, ``recurrentgemma/hawk-associative``: DeepMind
  ``recurrentgemma`` JAX (Flax Linen ``Griffin``), recurrent blocks only, RG-LRU gates with
  one block (dense, as ours), no logit soft cap, no gradient checkpointing, its
  ``LINEAR_NATIVE`` (``lax.scan``) and ``ASSOCIATIVE_NATIVE`` scans; optax AdamW.
- ``hf/hawk``: Hugging Face ``transformers`` PyTorch ``RecurrentGemmaForCausalLM`` of the
  same shape (recurrent blocks only, one gate block); ``torch.optim.AdamW``.
- ``ours/mamba2``: birdie_jax Mamba-2 (N 64, head 32, chunk 64, expand 2, one group).
- ``hf/mamba2``: ``transformers`` PyTorch ``Mamba2ForCausalLM`` of the same shape (its
  PyTorch path: no CUDA kernels on CPU).

Every entry runs in its own subprocess (no shared thread pools or caches), in the order
above, and the whole sequence runs --rounds times; ratios are ours ÷ peer within a round.

PyTorch uses as many threads as JAX sees cores. Needs the ``bench`` extra (torch 2.13.0 CPU
build, transformers 5.17-5.18: the line of the ``torch`` extra, what a user installs today;
transformers 4.57's Mamba-2 CPU path is ~15x slower and would flatter us) and
``recurrentgemma`` with its imports (``pip install --no-deps recurrentgemma==1.0.1 einops
jaxtyping wadler-lindig "typeguard>=2,<3"``: its absl-py<2 pin conflicts with chex, and it
runs with absl-py 2). All entries run in that one environment.

Host malloc (--malloc; birdie_jax/host_malloc.py): ``import birdie_jax`` sets glibc's
allocator to reuse XLA's per-step CPU arena (0.9 GB for ours/mamba2) instead of mapping it
fresh and page-faulting it in every step (~0.5 s of system CPU per step on the 2-core
machine). Each round runs the sequence in up to three environments: ``library`` (each entry
as its library ships: ours with the settings, the peers with glibc's defaults), ``same``
(every entry, peers included, with the settings, applied before the entry imports anything
else) and ``off`` (every entry with glibc's defaults: ``BIRDIE_JAX_HOST_MALLOC=0``).

    python tools/bench_peers.py            # writes bench_results/bench_peers.json
    python tools/bench_peers.py --markdown bench_results/bench_peers.json   # its tables for the docs
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

VOCAB, D_MODEL, LAYERS, BATCH, SEQ = 512, 256, 4, 8, 512
LRU_WIDTH, MLP_WIDTH = 256, 768
MAMBA = {"d_state": 64, "head_dim": 32, "chunk": 64, "expand": 2}
LEARNING_RATE = 1e-3
ENTRIES = ["ours/hawk", "recurrentgemma/hawk-linear", "recurrentgemma/hawk-associative", "hf/hawk",
           "ours/mamba2", "hf/mamba2"]
ENVIRONMENTS = ["library", "same", "off"]
SAME_MALLOC = "BENCH_PEERS_SAME_MALLOC"  # set in the ``same`` environment
MALLOC_DESCRIPTION = {"library": "each library as shipped: ours with its allocator settings, the peers with glibc's defaults",
                      "same": "every entry with birdie_jax's allocator settings",
                      "off": "every entry with glibc's defaults, BIRDIE_JAX_HOST_MALLOC=0"}
MALLOC_ENVIRONMENT = {"library": {}, "same": {SAME_MALLOC: "1"}, "off": {"BIRDIE_JAX_HOST_MALLOC": "0"}}
RATIOS = [("ours/hawk", "recurrentgemma/hawk-linear"), ("ours/hawk", "recurrentgemma/hawk-associative"),
          ("ours/hawk", "hf/hawk"), ("ours/mamba2", "hf/mamba2")]


def tokens(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, (BATCH, SEQ + 1), dtype=np.int32)


def time_steps(step, warmup: int, steps: int) -> dict:
    """``step()`` runs one training step and blocks; returns compile (first call) and median times,
    and the process's CPU time (user and system) and minor page faults per timed step."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    for _ in range(warmup - 1):
        step()
    times, cpu = [], []
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    median = statistics.median(times)
    # CPU seconds (all threads) per step: less inflated than wall time when other jobs share the cores.
    return {"first_step_s": round(first, 2), "step_ms": round(1000 * median, 1),
            "step_ms_min": round(1000 * min(times), 1), "tokens_per_s": round(BATCH * SEQ / median, 1),
            "cpu_ms_per_step": round(1000 * statistics.median(cpu), 1),
            "system_cpu_ms_per_step": round(1000 * (usage1.ru_stime - usage0.ru_stime) / steps, 1),
            "minor_page_faults_per_step": round((usage1.ru_minflt - usage0.ru_minflt) / steps)}


# ----------------------------------------------------------------------------- this library


def ours(arch: str, warmup: int, steps: int) -> dict:
    import jax
    from flax import nnx

    from birdie_jax.config import load_config
    from birdie_jax.models import build_model, count_parameters
    from birdie_jax.training.optim import learning_rate_schedule, make_optimizer
    from birdie_jax.training.step import init_train_state, make_train_step

    shape = {"hawk": [f"model.state_dim={LRU_WIDTH}", f"model.mlp_expansion={MLP_WIDTH / D_MODEL}"],
             "mamba2": [f"model.mamba_d_state={MAMBA['d_state']}", f"model.mamba_head_dim={MAMBA['head_dim']}",
                        f"model.mamba_chunk={MAMBA['chunk']}", f"model.mamba_expand={MAMBA['expand']}"]}[arch]
    cfg = load_config(None, f"model.architecture={arch}", f"model.vocab_size={VOCAB}", f"model.d_model={D_MODEL}",
                      f"model.n_layers={LAYERS}", *shape, f"train.learning_rate={LEARNING_RATE}",
                      "train.warmup_steps=0", "train.weight_decay=0.0")
    model = build_model(cfg, seed=0)
    graphdef, params = nnx.split(model)
    tx = make_optimizer(cfg.train)
    step_fn = make_train_step(graphdef, tx, learning_rate_schedule(cfg.train))
    tok = tokens()
    batch = {"inputs": jax.numpy.asarray(tok[:, :-1]), "targets": jax.numpy.asarray(tok[:, 1:]),
             "segment_ids": jax.numpy.ones((BATCH, SEQ), jax.numpy.int32)}
    holder = {"state": init_train_state(params, tx, 0)}
    parameters = count_parameters(model)

    def step():
        holder["state"], metrics = step_fn(holder["state"], batch)
        jax.block_until_ready(metrics["loss"])

    return {"parameters": parameters, **time_steps(step, warmup, steps)}


# ----------------------------------------------------------------------------- recurrentgemma JAX


def recurrentgemma_hawk(scan: str, warmup: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from recurrentgemma import jax as rg

    config = rg.GriffinConfig(vocab_size=VOCAB, width=D_MODEL, mlp_expanded_width=MLP_WIDTH, num_heads=1,
                              block_types=(rg.TemporalBlockType.RECURRENT,) * LAYERS,
                              embeddings_scale_by_sqrt_dim=True, attention_window_size=SEQ, logits_soft_cap=0.0,
                              lru_width=LRU_WIDTH, scan_type=getattr(rg.ScanType, scan))
    model = rg.Griffin(config, gradient_checkpointing=False)
    tok = tokens()
    inputs, targets = jnp.asarray(tok[:, :-1]), jnp.asarray(tok[:, 1:])
    pos = jnp.broadcast_to(jnp.arange(SEQ, dtype=jnp.int32), (BATCH, SEQ))
    params = model.init(jax.random.key(0), inputs, pos)["params"]
    tx = optax.adamw(LEARNING_RATE, weight_decay=0.0)
    opt_state = tx.init(params)

    def loss_fn(p):
        logits, _ = model.apply({"params": p}, inputs, pos, return_cache=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets).mean()

    @jax.jit
    def train_step(p, s):
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    holder = {"p": params, "s": opt_state}

    def step():
        holder["p"], holder["s"], loss = train_step(holder["p"], holder["s"])
        jax.block_until_ready(loss)

    parameters = sum(x.size for x in jax.tree.leaves(params))
    return {"parameters": parameters, **time_steps(step, warmup, steps)}


# ----------------------------------------------------------------------------- Hugging Face PyTorch


def hf(arch: str, warmup: int, steps: int) -> dict:
    import torch
    import transformers

    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    if arch == "hawk":
        config = transformers.RecurrentGemmaConfig(
            vocab_size=VOCAB, hidden_size=D_MODEL, intermediate_size=2 * MLP_WIDTH, num_hidden_layers=LAYERS,
            num_attention_heads=1, lru_width=LRU_WIDTH, attention_window_size=SEQ, conv1d_width=4,
            # HF applies cap·tanh(logits / cap) unconditionally (0 gives NaN): a cap so large it is the identity.
            logits_soft_cap=1e6, block_types=["recurrent"], tie_word_embeddings=True)
        model = transformers.RecurrentGemmaForCausalLM(config)
    else:
        heads = MAMBA["expand"] * D_MODEL // MAMBA["head_dim"]
        config = transformers.Mamba2Config(
            vocab_size=VOCAB, hidden_size=D_MODEL, num_hidden_layers=LAYERS, state_size=MAMBA["d_state"],
            expand=MAMBA["expand"], head_dim=MAMBA["head_dim"], num_heads=heads, n_groups=1,
            chunk_size=MAMBA["chunk"], conv_kernel=4, use_bias=False, use_conv_bias=True, tie_word_embeddings=True)
        model = transformers.Mamba2ForCausalLM(config)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    tok = torch.from_numpy(tokens().astype(np.int64))
    inputs, targets = tok[:, :-1].contiguous(), tok[:, 1:].contiguous()

    stateful = [m for m in model.modules() if hasattr(m, "recurrent_states")]

    def step():
        for module in stateful:  # RecurrentGemma's RG-LRU keeps its last state even with use_cache=False
            module.recurrent_states = None  # each step is a fresh sequence (as ours and recurrentgemma's)
        opt.zero_grad(set_to_none=True)
        logits = model(input_ids=inputs, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, VOCAB), targets.reshape(-1))
        loss.backward()
        opt.step()

    parameters = sum(p.numel() for p in model.parameters())
    return {"parameters": parameters, "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(), **time_steps(step, warmup, steps)}


def run_entry(name: str, warmup: int, steps: int) -> dict:
    kind, variant = name.split("/")
    if kind == "ours":
        return ours(variant, warmup, steps)
    if kind == "recurrentgemma":
        return recurrentgemma_hawk({"hawk-linear": "LINEAR_NATIVE", "hawk-associative": "ASSOCIATIVE_NATIVE"}[variant],
                                   warmup, steps)
    return hf(variant, warmup, steps)


def markdown(results: dict) -> str:
    """The per-environment, per-round tables and ratios (wall time and CPU time per step) of a results file."""
    lines = []
    # Files written before the --malloc option hold one environment's rounds at the top level.
    runs = results.get("environments") or {"default": {"rounds": results["rounds"]}}
    for env_name, run in runs.items():
        described = MALLOC_DESCRIPTION.get(env_name) or f"GLIBC_TUNABLES={run.get('GLIBC_TUNABLES') or 'unset'}"
        for i, rnd in enumerate(run["rounds"], 1):
            res = rnd["results"]
            lines += [f"Round {i}, malloc `{env_name}` ({described})"
                      f"{'' if rnd['complete'] else ' (incomplete)'}:", "",
                      "| entry | parameters | first step s (compile + step) | step ms median / min | tokens/s "
                      "| CPU ms per step | load average |", "|---|---|---|---|---|---|---|"]
            for name, e in res.items():
                cpu = e.get("cpu_ms_per_step")
                lines.append(f"| {name} | {e['parameters']:,} | {e['first_step_s']:.0f} | {e['step_ms']:,.0f} / "
                             f"{e['step_ms_min']:,.0f} | {e['tokens_per_s']:,.1f} | {'—' if cpu is None else f'{cpu:,.0f}'} "
                             f"| {e['load_average']:.0f} |")
            lines.append("")
            for key, ratio in rnd["ratios"].items():
                a, b = key.split(" / ")
                cpu_a, cpu_b = res[a].get("cpu_ms_per_step"), res[b].get("cpu_ms_per_step")
                by_cpu = f", {cpu_b / cpu_a:.2f}× by CPU time per step" if cpu_a and cpu_b else ""
                lines.append(f"- {key}: **{ratio:.2f}×** by wall time (median step){by_cpu}")
            lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--entries", nargs="*", default=ENTRIES)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", default="bench_results/bench_peers.json")
    p.add_argument("--malloc", nargs="+", choices=ENVIRONMENTS, default=ENVIRONMENTS,
                   help="host malloc environment(s) every entry runs in (module docstring)")
    p.add_argument("--one", help="time one entry here and print its JSON line (used internally)")
    p.add_argument("--markdown", metavar="JSON", help="print the tables of docs/benchmarks.md from a results file")
    args = p.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as f:
            print(markdown(json.load(f)))
        return 0
    if args.one:
        if os.environ.get(SAME_MALLOC) == "1":
            from birdie_jax import host_malloc  # noqa: PLC0415  (importing birdie_jax applies the settings)

            assert host_malloc.status().startswith("on"), host_malloc.status()
        print(json.dumps(run_entry(args.one, args.warmup, args.steps)), flush=True)
        return 0
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_common import machine_info, write_results  # imports jax: not in the --one subprocesses

    workload = {"vocab": VOCAB, "d_model": D_MODEL, "layers": LAYERS, "batch": BATCH, "seq_len": SEQ,
                "dtype": "float32", "optimizer": "AdamW", "lru_width": LRU_WIDTH, "mlp_width": MLP_WIDTH,
                "mamba": MAMBA, "timed_steps": args.steps, "warmup_steps": args.warmup}
    environments = args.malloc
    base_env = {k: v for k, v in os.environ.items() if k not in (SAME_MALLOC, "BIRDIE_JAX_HOST_MALLOC")}
    envs = {name: {**base_env, **MALLOC_ENVIRONMENT[name]} for name in environments}
    runs = {name: {"environment_variables": MALLOC_ENVIRONMENT[name], "rounds": []} for name in environments}
    for r in range(args.rounds):
        for env_name in environments:
            results: dict = {}
            rounds = runs[env_name]["rounds"]
            rounds.append({"results": results, "ratios": {}, "complete": False})
            for name in args.entries:
                out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name, "--steps",
                                      str(args.steps), "--warmup", str(args.warmup)],
                                     capture_output=True, text=True, env=envs[env_name])
                if out.returncode:
                    sys.exit(f"error: {name} failed:\n{out.stderr[-3000:]}")
                results[name] = {**json.loads(out.stdout.strip().splitlines()[-1]), "load_average": os.getloadavg()[0]}
                print(f"round {r + 1} {env_name:<8} {name:<34} {results[name]['tokens_per_s']:>9,.0f} tok/s  "
                      f"first step {results[name]['first_step_s']:.1f} s", flush=True)
                rounds[-1]["ratios"] = {f"{a} / {b}": round(results[a]["tokens_per_s"] / results[b]["tokens_per_s"], 3)
                                        for a, b in RATIOS if a in results and b in results}
                rounds[-1]["complete"] = len(results) == len(args.entries)
                # Written after every entry, so a run stopped early keeps what it measured.
                write_results(args.out, {"machine": machine_info(), "workload": workload, "environments": runs})
            print(env_name, json.dumps(rounds[-1]["ratios"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
