"""Sequence-parallel linear scan: the time axis split over a mesh axis with ``jax.shard_map``.

Engineering note §4 (recurrentgemma's ``multi_shard_correction``). With the time axis
cut into K contiguous shards, shard k (in processing order: k = 0 first forward, the
last time shard first in reverse):

1. scans its slice **from zero**, getting ``y_t`` and the running decay product
   ``P_t`` = product of ``a`` from the shard's first processed step to t (zero from a
   reset on: a reset drops everything carried in);
2. all-gathers every shard's ``(P_last, h_last)`` (O(K·B·D) bytes, independent of T);
3. runs a tiny scan over shards ``c_{k+1} = P_last,k · c_k + h_last,k`` with ``c_0 = h0``
   (so ``c_k`` is the true state entering shard k and ``c_K`` the final state);
4. corrects ``h_t = y_t + P_t · c_k``.

This is exact algebra, not an approximation: ``h_t = y_t + P_t c_k`` holds for the
linear recurrence with resets, so results equal one device's up to float rounding.
Both scans of step 1 run as one call of :func:`~birdie_jax.kernels.linear_scan.linear_scan`
on ``[a | a]``, ``[b | 0]`` with ``h0 = [0 | 1]`` (so any implementation, Pallas
included, serves).

Gradients use the package's linear-recurrence VJP (:func:`.xla._with_linear_vjp`): the
backward of the recurrence is the same recurrence run the other way with ``a`` shifted
by one step, so it is this sharded scan again (in the opposite direction, with the
``h_last`` cotangent as its initial state) plus elementwise work that XLA partitions
(the one-step shifts across shard boundaries become collective permutes). Residuals
are ``a``, ``h`` and ``h0`` only. Tested equal to one device's gradients.

Axis legend: ``B`` batch, ``T`` time, ``D`` channels, ``K`` sequence shards.
"""

import functools
from typing import Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from .api import Implementation, _validate, linear_scan
from .xla import _with_linear_vjp, _zeros_state

#: Mesh axes the batch is split over when ``batch_axes`` is not given (those present).
DEFAULT_BATCH_AXES: Tuple[str, ...] = ("data", "fsdp")
#: Mesh axis the channels are split over when ``channel_axis`` is not given (if present).
DEFAULT_CHANNEL_AXIS = "tensor"


def current_mesh():
    """The mesh set with ``jax.set_mesh`` (an empty AbstractMesh when none is set)."""
    return jax.sharding.get_abstract_mesh()


def _axis_sizes(mesh) -> dict:
    return {} if mesh is None else dict(mesh.shape)


def _dividing_axes(sizes: dict, names: Sequence[str], extent: int) -> Optional[Tuple[str, ...]]:
    """The axes of ``names`` present in the mesh whose product divides ``extent`` (greedy)."""
    chosen, prod = [], 1
    for n in names:
        s = sizes.get(n, 1)
        if s > 1 and extent % (prod * s) == 0:
            chosen.append(n)
            prod *= s
    return tuple(chosen) or None


def resolve_layout(mesh, axis: str, batch: int, channels: int,
                   batch_axes: Union[None, str, Sequence[str]] = None,
                   channel_axis: Union[None, str] = None) -> Tuple[object, object]:
    """(batch entry, channel entry) of the PartitionSpecs used inside ``shard_map``.

    By default the batch is split over the mesh's ``data``/``fsdp`` axes that divide it
    and the channels over ``tensor`` when it divides them; anything else is replicated
    (correct either way; this only avoids gathering what is already split).
    """
    sizes = _axis_sizes(mesh)
    if batch_axes is None:
        b_entry = _dividing_axes(sizes, [n for n in DEFAULT_BATCH_AXES if n != axis], batch)
    else:
        names = (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)
        b_entry = names or None
    if channel_axis is None:
        s = sizes.get(DEFAULT_CHANNEL_AXIS, 1)
        c_entry = DEFAULT_CHANNEL_AXIS if DEFAULT_CHANNEL_AXIS != axis and s > 1 and channels % s == 0 else None
    else:
        c_entry = channel_axis
    return b_entry, c_entry


def sequence_shards(mesh, axis: str) -> int:
    """Number of shards of the time axis (1 if there is no mesh or no such axis)."""
    return int(_axis_sizes(mesh).get(axis, 1))


def _shard_correction(a, b, h0, reset, *, axis: str, reverse: bool, implementation: Implementation):
    """Per-shard body: local scan from zero + decay products, gathered carries, correction."""
    a32 = a.astype(jnp.float32)
    b32 = b.astype(jnp.float32)
    batch, _, channels = a.shape
    zeros = jnp.zeros((batch, channels), jnp.float32)
    # One scan computes y (channels [:D], from h = 0) and the decay product P (channels [D:],
    # from h = 1 with b = 0; a reset zeroes it, as it drops whatever was carried in).
    both, last = linear_scan(jnp.concatenate([a32, a32], axis=-1),
                             jnp.concatenate([b32, jnp.zeros_like(b32)], axis=-1),
                             h0=jnp.concatenate([zeros, jnp.ones_like(zeros)], axis=-1),
                             reset=reset, reverse=reverse, implementation=implementation)
    y, decay = both[..., :channels], both[..., channels:]
    h_last, p_last = last[..., :channels], last[..., channels:]
    p_all = lax.all_gather(p_last, axis)  # [K, B, D]
    h_all = lax.all_gather(h_last, axis)

    def combine(c, shard):
        p_k, h_k = shard
        return p_k * c + h_k, c  # emit the state entering shard k

    c0 = zeros if h0 is None else h0.astype(jnp.float32)
    final, carry_in = lax.scan(combine, c0, (p_all, h_all), reverse=reverse)  # carry_in[k]: [B, D]
    c_k = lax.dynamic_index_in_dim(carry_in, lax.axis_index(axis), axis=0, keepdims=False)
    return y + decay * c_k[:, None, :], final


def linear_scan_sharded(
    a: jax.Array,
    b: jax.Array,
    *,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
    mesh=None,
    axis: str = "sequence",
    implementation: Implementation = None,
    batch_axes: Union[None, str, Sequence[str]] = None,
    channel_axis: Optional[str] = None,
) -> Tuple[jax.Array, jax.Array]:
    """:func:`~birdie_jax.kernels.linear_scan.linear_scan` with time split over mesh axis ``axis``.

    Same arguments and results as ``linear_scan`` (``h`` in ``b``'s dtype, ``h_last``
    float32), equal to it up to float rounding for any resets (inside shards or exactly
    on shard boundaries), ``h0`` and ``reverse``; differentiable.

    Args:
      a, b, h0, reset, reverse, implementation: as for ``linear_scan`` (``implementation``
        is the per-shard scan).
      mesh: a ``Mesh``/``AbstractMesh``; None uses the one set by ``jax.set_mesh``. With
        no mesh, no ``axis`` in it, or ``axis`` of size 1, this is plain ``linear_scan``,
        so models may call it unconditionally.
      axis: the mesh axis the time axis is split over; T must be a multiple of its size.
      batch_axes: mesh axes the batch is split over inside the ``shard_map`` (default:
        ``data``/``fsdp`` where present and dividing B; ``()`` replicates).
      channel_axis: mesh axis the channels are split over (default ``tensor`` where
        present and dividing D).

    Raises:
      ValueError: T not a multiple of the shard count, or the errors of ``linear_scan``.
    """
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    h0 = None if h0 is None else jnp.asarray(h0)
    reset = None if reset is None else jnp.asarray(reset)
    if mesh is None:
        mesh = current_mesh()
    num_shards = sequence_shards(mesh, axis)
    if num_shards == 1:
        return linear_scan(a, b, h0=h0, reset=reset, reverse=reverse, implementation=implementation)
    _validate(a, b, h0, reset)
    batch, steps, channels = a.shape
    if steps % num_shards:
        raise ValueError(f"linear_scan_sharded: time length {steps} is not a multiple of the {num_shards} "
                         f"shards of mesh axis {axis!r}")
    if reset is None:
        reset = jnp.zeros((batch, steps), bool)
    b_entry, c_entry = resolve_layout(mesh, axis, batch, channels, batch_axes, channel_axis)
    if isinstance(implementation, list):
        implementation = tuple(implementation)
    core = _sharded_core(mesh, axis, b_entry, c_entry, implementation)
    return _with_linear_vjp(core, a, b, _zeros_state(a, h0), reset, bool(reverse))


@functools.lru_cache(maxsize=None)
def _sharded_core(mesh, axis: str, b_entry, c_entry, implementation):
    """The forward ``(a, b, h0, reset, reverse) -> (h, h_last)`` as one ``shard_map``.

    Cached so that the custom VJP sees the same (static) core object for the same layout.
    ``check_vma=False``: the per-shard scans initialise loop carries with fresh zeros,
    which the varying-axes checker rejects; no autodiff goes through this ``shard_map``
    (the VJP is :func:`.xla._with_linear_vjp`, which runs this core again in the opposite
    direction), so the checker's autodiff guarantees are not needed.
    """
    spec_btd, spec_bt, spec_bd = P(b_entry, axis, c_entry), P(b_entry, axis), P(b_entry, c_entry)

    def core(a, b, h0, reset, reverse):
        out_dtype = b.dtype

        def body(a, b, h0, reset):
            h, last = _shard_correction(a, b, h0, reset, axis=axis, reverse=reverse,
                                        implementation=implementation)
            return h.astype(out_dtype), last

        fn = jax.shard_map(body, mesh=mesh, in_specs=(spec_btd, spec_btd, spec_bd, spec_bt),
                           out_specs=(spec_btd, spec_bd), check_vma=False)
        if reset is None:
            reset = jnp.zeros(a.shape[:2], bool)
        return fn(a, b, h0, reset)

    return core


__all__ = ["linear_scan_sharded", "resolve_layout", "sequence_shards"]
