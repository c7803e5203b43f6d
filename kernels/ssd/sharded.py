"""Sequence-parallel SSD: the time axis split over a mesh axis with ``jax.shard_map``.

The SSD recurrence h_t = exp(dt_t·A)·h_{t−1} + dt_t·x_t B_tᵀ has a scalar decay per head,
so the linear-scan correction applies (jax-engineering note §4): each shard runs the
chunked SSD from a zero state, also keeping its running decay product P_t = exp(Σ dt·A)
(zeroed from a reset on); the shards all-gather (P_last, h_last), a scan over shards gives
each shard's incoming state c_k (c_0 = the initial state), and the outputs are corrected
by y_t += (P_t · c_k) C_t and the final state by P_last · c_k. Exact algebra: equal to one
device up to float rounding, for resets anywhere. Gradients flow through the shard_map.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from birdie_jax.kernels.linear_scan.sharded import current_mesh, resolve_layout, sequence_shards

from .api import ssd
from .reference import heads_from_groups


def ssd_sharded(x, dt, A, B, C, *, D=None, initial_state=None, reset=None, chunk_size: int = 256, mesh=None,
                axis: str = "sequence", implementation=None):
    """:func:`~birdie_jax.kernels.ssd.ssd` with time split over mesh axis ``axis`` (same
    arguments and results, ``implementation`` included); plain ``ssd`` without a mesh or with one shard."""
    mesh = current_mesh() if mesh is None else mesh
    shards = sequence_shards(mesh, axis)
    if shards == 1:
        return ssd(x, dt, A, B, C, D=D, initial_state=initial_state, reset=reset, chunk_size=chunk_size,
                   implementation=implementation)
    b, length, heads, p = x.shape
    n = B.shape[-1]
    if length % shards:
        raise ValueError(f"ssd_sharded: time length {length} is not a multiple of the {shards} shards of {axis!r}")
    reset = jnp.zeros((b, length), bool) if reset is None else reset
    h0 = jnp.zeros((b, heads, p, n), jnp.float32) if initial_state is None else initial_state.astype(jnp.float32)
    D = jnp.zeros((heads,), x.dtype) if D is None else D
    b_entry, _ = resolve_layout(mesh, axis, b, heads, None, ())
    t_spec = lambda *rest: P(b_entry, axis, *rest)  # noqa: E731

    def body(x, dt, B, C, reset, h0, A, D):
        y, last = ssd(x, dt, A, B, C, D=D, initial_state=h0 * 0.0, reset=reset, chunk_size=chunk_size,
                      implementation=implementation)
        log_a = dt.astype(jnp.float32) * A.astype(jnp.float32)  # [b l h]
        alive = (jnp.cumsum(reset.astype(jnp.int32), axis=1) == 0)[..., None]  # no reset up to t
        decay = jnp.exp(jnp.cumsum(log_a, axis=1)) * alive  # P_t [b l h]
        p_all = lax.all_gather(decay[:, -1], axis)  # [K b h]
        h_all = lax.all_gather(last, axis)  # [K b h p n]
        k = lax.axis_index(axis)

        def combine(c, shard):
            p_k, h_k = shard
            return p_k[..., None, None] * c + h_k, c

        _, incoming = lax.scan(combine, h0, (p_all, h_all))
        c_in = incoming[k]  # state entering this shard [b h p n]
        c_heads = heads_from_groups(C, x.shape[2]).astype(jnp.float32)  # [b l h n]
        correction = jnp.einsum("blhn,bhpn->blhp", c_heads * decay[..., None], c_in)
        final = last + decay[:, -1][..., None, None] * c_in
        return (y.astype(jnp.float32) + correction).astype(y.dtype), lax.all_gather(final, axis)[-1]

    fn = jax.shard_map(body, mesh=mesh, in_specs=(t_spec(None, None), t_spec(None), t_spec(None, None),
                                                  t_spec(None, None), t_spec(), P(b_entry), P(), P()),
                       out_specs=(t_spec(None, None), P(b_entry)), check_vma=False)
    return fn(x, dt, B, C, reset, h0, A, D)
