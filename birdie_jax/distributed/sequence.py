"""Sequence parallelism helpers for the model's recurrent blocks.

* :func:`linear_scan_sharded` (re-exported from :mod:`birdie_jax.kernels.linear_scan.sharded`):
  the recurrence with its time axis split over the mesh axis ``sequence``.
* :func:`causal_conv_sharded`: the segment-masked short causal convolution of
  :class:`birdie_jax.models.conv.CausalConv1D` with the time axis split the same way.
  Each shard needs the previous shard's last ``width - 1`` inputs and their segment ids,
  received with one ``lax.ppermute`` (shard k → k+1); the first shard uses the carried
  conv state, labelled with the row's first segment exactly as the module does. The new
  conv state comes from the last shard. Equal to the module on the whole sequence
  (same float operations in the same order).

Both take ``mesh=None`` to mean the mesh set with ``jax.set_mesh`` and fall back to the
unsharded computation when there is no ``sequence`` axis (or it has size 1), so model
code can call them unconditionally.

Axis legend: b batch, t time, c channels, w conv width, K sequence shards.
"""

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from birdie_jax.array_types import Array, SegmentIds
from birdie_jax.kernels.linear_scan.sharded import current_mesh, linear_scan_sharded, resolve_layout, sequence_shards
from birdie_jax.models.conv_taps import conv_taps


def _conv_local(x: Array, seg_hist_x: Array, segment_ids: SegmentIds, history: Array, weight: Array,
                bias: Array, silu: bool = False, custom_backward: bool = True) -> Array:
    """The module's tap sum on one slice: history [b w-1+t c] (oldest first), seg_hist_x [b w-1+t]."""
    return conv_taps(history, seg_hist_x, segment_ids, weight.astype(x.dtype), bias, silu=silu,
                     custom_backward=custom_backward)


def causal_conv_reference(x: Array, segment_ids: SegmentIds, weight: Array, bias: Array,
                          state: Array | None = None, *, silu: bool = False) -> tuple[Array, Array]:
    """The unsharded computation of ``CausalConv1D.__call__`` as a function of its parameters."""
    b, _, c = x.shape
    w = weight.shape[0]
    if state is None:
        state = jnp.zeros((b, w - 1, c), x.dtype)
    history = jnp.concatenate([state.astype(x.dtype), x], axis=1)
    seg_hist = jnp.concatenate([jnp.repeat(segment_ids[:, :1], w - 1, axis=1), segment_ids], axis=1)
    y = _conv_local(x, seg_hist, segment_ids, history, weight, bias, silu)
    last_seg = segment_ids[:, -1:]
    new_state = jnp.where((seg_hist[:, -(w - 1):] == last_seg)[..., None], history[:, -(w - 1):], 0)
    return y, new_state


def causal_conv_sharded(x: Array, segment_ids: SegmentIds, weight: Array, bias: Array, state: Array | None = None,
                        *, mesh=None, axis: str = "sequence", batch_axes=None,
                        channel_axis: str | None = None, silu: bool = False) -> tuple[Array, Array]:
    """Segment-masked causal depthwise conv with time split over mesh axis ``axis``.

    Args:
      x: ``[b t c]`` inputs (pre-conv), t a multiple of the shard count with at least
        ``w - 1`` steps per shard.
      segment_ids: ``int[b t]``.
      weight: ``[w c]`` taps (``weight[j]`` multiplies ``x_{t-j}``); bias: ``[c]``.
      state: ``[b w-1 c]`` carried inputs (None: zeros), continuing the row's first segment.
      mesh, axis: the mesh (None: the one set by ``jax.set_mesh``) and its time axis.
      batch_axes, channel_axis: layout inside the ``shard_map`` (defaults as for
        :func:`~birdie_jax.kernels.linear_scan.sharded.linear_scan_sharded`).

    Returns:
      ``(y [b t c], new_state [b w-1 c])``, equal to ``CausalConv1D`` on the whole sequence.
    """
    if mesh is None:
        mesh = current_mesh()
    num_shards = sequence_shards(mesh, axis)
    w = weight.shape[0]
    if num_shards == 1 or w == 1:
        return causal_conv_reference(x, segment_ids, weight, bias, state, silu=silu)
    b, t, c = x.shape
    if t % num_shards or t // num_shards < w - 1:
        raise ValueError(f"causal_conv_sharded: time length {t} must be a multiple of the {num_shards} shards of "
                         f"mesh axis {axis!r} with at least width-1 = {w - 1} steps per shard")
    if state is None:
        state = jnp.zeros((b, w - 1, c), x.dtype)
    b_entry, c_entry = resolve_layout(mesh, axis, b, c, batch_axes, channel_axis)
    spec_btc, spec_bt, spec_bc = P(b_entry, axis, c_entry), P(b_entry, axis), P(b_entry, None, c_entry)
    forward = [(k, k + 1) for k in range(num_shards - 1)]

    def body(x, segment_ids, weight, bias, state):
        k = lax.axis_index(axis)
        prev_x = lax.ppermute(x[:, -(w - 1):], axis, forward)  # shard 0 receives zeros
        prev_seg = lax.ppermute(segment_ids[:, -(w - 1):], axis, forward)
        first = k == 0
        carried = jnp.where(first, state.astype(x.dtype), prev_x)
        carried_seg = jnp.where(first, jnp.repeat(segment_ids[:, :1], w - 1, axis=1), prev_seg)
        history = jnp.concatenate([carried, x], axis=1)
        seg_hist = jnp.concatenate([carried_seg, segment_ids], axis=1)
        y = _conv_local(x, seg_hist, segment_ids, history, weight, bias, silu, custom_backward=False)
        last_seg = segment_ids[:, -1:]
        local_state = jnp.where((seg_hist[:, -(w - 1):] == last_seg)[..., None], history[:, -(w - 1):], 0)
        # Only the last shard's is the row's; adding exact zeros from the others replicates it.
        new_state = lax.psum(jnp.where(k == num_shards - 1, local_state, jnp.zeros_like(local_state)), axis)
        return y, new_state

    fn = jax.shard_map(body, mesh=mesh, in_specs=(spec_btc, spec_bt, P(None, c_entry), P(c_entry), spec_bc),
                       out_specs=(spec_btc, spec_bc))
    return fn(x, segment_ids, weight, bias, state)


def conv_module_sharded(conv, x: Array, segment_ids: SegmentIds, state: Array | None = None, **kw) -> tuple[Array, Array]:
    """``conv(x, segment_ids, state)`` for a :class:`~birdie_jax.models.conv.CausalConv1D`, sequence-parallel."""
    return causal_conv_sharded(x, segment_ids, conv.weight[...], conv.bias[...], state, **kw)


__all__ = ["causal_conv_reference", "causal_conv_sharded", "conv_module_sharded", "linear_scan_sharded"]
