"""Projections of every token as one 2-D matmul: [b t d] is flattened to [b·t d] first.

Why: XLA's CPU dot emitter runs a 2-D ``[m k] × [k n]`` product, contracting either
axis, in place; a 3-D ``dot_general`` contracting the last axis makes its weight gradient
contract two axes (b and t), which XLA canonicalises by materialising a transposed copy of
the activation (fused with the elementwise backward work before it). On Hawk's training
step those copies were 22 % of the time (docs/benchmarks.md, "Where a training step's
time goes"). The flattened product is the same sum of products per output element.

Under a mesh that shards the time axis (``sequence``) the leading axes are left alone:
merging a sharded time axis into the rows would make XLA gather it.

Axis legend: b batch, t time, d input width, o output width, v vocabulary.
"""

import jax.numpy as jnp
from flax import nnx

from birdie_jax.array_types import Array
from birdie_jax.kernels.linear_scan.sharded import current_mesh, sequence_shards


def flattens_tokens() -> bool:
    """Whether leading axes may be merged into one row axis (not under a sequence-sharded mesh)."""
    return sequence_shards(current_mesh(), "sequence") <= 1


def over_rows(fn, x: Array) -> Array:
    """``fn`` applied to x [... d] viewed as [rows d] (rows = the product of the leading axes) → [... o]."""
    if x.ndim <= 2 or not flattens_tokens():
        return fn(x)
    y = fn(x.reshape(-1, x.shape[-1]))
    return y.reshape(*x.shape[:-1], y.shape[-1])


def tied_logits(x: Array, embedding: Array) -> Array:
    """x [... d] against the embedding table [v d] → float32 logits [... v] (one 2-D matmul)."""
    return over_rows(lambda rows: jnp.einsum("...d,vd->...v", rows, embedding.astype(rows.dtype),
                                             preferred_element_type=jnp.float32), x)


class TokenLinear(nnx.Linear):
    """``nnx.Linear`` (same parameters ``kernel`` [d o] and ``bias`` [o]) applied as one 2-D matmul."""

    def __call__(self, inputs: Array, out_sharding=None) -> Array:
        if out_sharding is not None:
            return super().__call__(inputs, out_sharding)
        return over_rows(super().__call__, inputs)


__all__ = ["TokenLinear", "flattens_tokens", "over_rows", "tied_logits"]
