"""Memory per device of training the paper-size configs, computed from the sharding rules.

For each config and mesh:

* **state** (computed exactly): parameters (``model.param_dtype``), gradients (same
  dtype as the parameters) and AdamW's two moments (same dtype), each leaf sharded by
  :mod:`birdie_jax.distributed.rules` and rounded up to whole shards; optimizer step
  counts and the RNG key are negligible and counted. Nothing is allocated: shapes come
  from ``nnx.eval_shape`` / ``jax.eval_shape``.
* **activations per row** (an *estimate*): the temporary buffers XLA allocates for the
  loss + gradient of one row of ``data.seq_len`` tokens, measured with
  ``compiled.memory_analysis()`` for 1 and 2 layers of the config's width (CPU compile,
  nothing executed) and extrapolated linearly to ``n_layers``. No rematerialisation,
  compute dtype as configured. Accelerator compilers fuse and schedule differently,
  so treat it as an order of magnitude; it scales with rows per device per
  micro-batch and divides by ``mesh.sequence`` under sequence parallelism (and by
  ``mesh.tensor`` for the tensor-parallel projections' activations).

    python tools/memory_per_device.py                     # the three *_paper configs
    python tools/memory_per_device.py --configs hawk_paper --no-activations
"""

import argparse
import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.config import load_config
from birdie_jax.distributed.rules import DEFAULT_RULES, shard_bytes, state_specs
from birdie_jax.models import build_model
from birdie_jax.training.optim import make_optimizer
from birdie_jax.training.step import batch_loss, init_train_state

CONFIGS = ("gated_ssm_paper", "hawk_paper", "transformer_paper")
# (label, axis sizes, rules). Devices = product of the sizes.
FSDP_WITH_TENSOR = dataclasses.replace(DEFAULT_RULES, fsdp_with_tensor=True)
MESHES = (
    ("1 device", dict(data=1, fsdp=1, tensor=1, sequence=1), DEFAULT_RULES),
    ("8: data=8 (pure DP)", dict(data=8, fsdp=1, tensor=1, sequence=1), DEFAULT_RULES),
    ("8: fsdp=8", dict(data=1, fsdp=8, tensor=1, sequence=1), DEFAULT_RULES),
    ("8: fsdp=4 tensor=2", dict(data=1, fsdp=4, tensor=2, sequence=1), DEFAULT_RULES),
    ("8: fsdp=4 tensor=2, fsdp_with_tensor", dict(data=1, fsdp=4, tensor=2, sequence=1), FSDP_WITH_TENSOR),
    ("64: data=8 fsdp=8", dict(data=8, fsdp=8, tensor=1, sequence=1), DEFAULT_RULES),
    ("256: data=4 fsdp=64", dict(data=4, fsdp=64, tensor=1, sequence=1), DEFAULT_RULES),
)
GB = 1024**3


def abstract_state(cfg):
    """ShapeDtypeStruct pytree of the train state {"params", "opt_state", "step", "rng"}."""
    tx = make_optimizer(cfg.train)
    return jax.eval_shape(lambda: init_train_state(nnx.split(build_model(cfg, seed=0))[1], tx, 0))


def state_bytes(state, sizes: dict, rules=DEFAULT_RULES) -> dict[str, int]:
    """Per-device bytes of parameters, gradients and optimizer state under the rules
    (gradients are laid out like their parameters, as the reduce-scatter of FSDP leaves them)."""
    specs = state_specs(state, sizes, rules)

    def total(tree, spec_tree):
        leaves = jax.tree.leaves(tree)
        spec_leaves = jax.tree.leaves(spec_tree, is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
        return sum(shard_bytes(x.shape, jnp.dtype(x.dtype).itemsize, s, sizes) for x, s in zip(leaves, spec_leaves))

    params = total(state["params"], specs["params"])
    return {"params": params, "grads": params, "optimizer": total(state["opt_state"], specs["opt_state"]),
            "other": total({"step": state["step"], "rng": state["rng"]}, {"step": specs["step"], "rng": specs["rng"]})}


def activation_bytes_per_row(cfg) -> tuple[float, int]:
    """(bytes per row for n_layers, per-layer bytes): XLA temp memory of loss+grad, 1 row."""
    seq = cfg.data.seq_len

    def temp(n_layers: int) -> int:
        c = cfg.replace(f"model.n_layers={n_layers}")
        model = nnx.eval_shape(lambda: build_model(c, seed=0))
        graphdef, params = nnx.split(model)
        batch = {k: jax.ShapeDtypeStruct((1, seq), jnp.int32) for k in ("inputs", "targets", "segment_ids", "region")}
        grad = jax.grad(lambda p, b: batch_loss(graphdef, p, b)[0])
        compiled = jax.jit(grad).lower(params, batch).compile()
        analysis = compiled.memory_analysis()
        return int(analysis.temp_size_in_bytes)

    one, two = temp(1), temp(2)
    per_layer = max(two - one, 0)
    return one + per_layer * (cfg.model.n_layers - 1), per_layer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--no-activations", action="store_true", help="skip the (compiling) activation estimate")
    args = parser.parse_args(argv)

    for name in args.configs:
        cfg = load_config(name)
        state = abstract_state(cfg)
        n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(state["params"]))
        act = None if args.no_activations else activation_bytes_per_row(cfg)
        print(f"\n### {name}: {cfg.model.architecture}, {n_params / 1e9:.3f} B parameters "
              f"({cfg.model.param_dtype}), d_model={cfg.model.d_model}, n_layers={cfg.model.n_layers}, "
              f"seq_len={cfg.data.seq_len}, global batch {cfg.data.batch_size} rows\n")
        if act is not None:
            print(f"Activation estimate (XLA temp buffers of loss+grad, CPU compile, no remat): "
                  f"{act[0] / GB:.2f} GiB per row of {cfg.data.seq_len} tokens "
                  f"({act[1] / GB:.3f} GiB per layer, {act[1] / cfg.data.seq_len / 1024:.0f} KiB per token "
                  f"per layer).\n")
        header = "| mesh | params | grads | AdamW mu+nu | state total |"
        sep = "|---|---|---|---|---|"
        if act is not None:
            header += " + activations, 1 row/device | + activations, 4 rows/device |"
            sep += "---|---|"
        print(header)
        print(sep)
        for label, sizes, rules in MESHES:
            b = state_bytes(state, sizes, rules)
            total = b["params"] + b["grads"] + b["optimizer"] + b["other"]
            line = (f"| {label} | {b['params'] / GB:.2f} | {b['grads'] / GB:.2f} | {b['optimizer'] / GB:.2f} | "
                    f"{total / GB:.2f} |")
            if act is not None:
                line += f" {(total + act[0]) / GB:.2f} | {(total + 4 * act[0]) / GB:.2f} |"
            print(line)
        sys.stdout.flush()
    print("\nAll figures in GiB per device.")
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
