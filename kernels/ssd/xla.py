"""Chunked SSD in pure XLA (Mamba-2 paper Listing 1, spec §8), with packed-document resets.

The sequence is cut into c chunks of Q tokens (the tail padded with dt = 0, which leaves
the state unchanged). With Ā = dt·A and X = dt·x:

1. intra-chunk: Y_diag[l] = Σ_{s≤l} (C_l·B_s) exp(segsum(Ā))[l, s] X_s  (a masked matmul);
2. chunk states from zero: S_k = Σ_s exp(Σ_{u>s} Ā_u) X_s B_sᵀ;
3. inter-chunk: H_0 = h_{−1}, H_{k+1} = exp(Σ_chunk k Ā)·H_k + S_k (``lax.scan``); H_c is the
   final state;
4. Y_off[l] = exp(Σ_{u≤l} Ā_u)·C_l H_k; Y = Y_diag + Y_off + D·x.

Every decay is a direct sum of Ā terms (never a difference of cumulative sums, whose
cancellation makes NaNs in training) and is kept in float32 with the states.

Resets. ``doc`` = cumsum(reset) numbers the documents of a row (0 = the one that
receives the initial state). A reset is encoded as a same-document mask, never log(0):
the intra-chunk decay is masked to doc_l == doc_s, a chunk state sums only the chunk's
last document, the carry crosses a chunk only if no document starts inside it, and Y_off
reaches only the tokens that continue the document entering the chunk.

Matmuls run at the default precision (TF32 for float32 on recent GPUs, as upstream's
kernels); wrap a call in ``jax.default_matmul_precision("highest")`` for full fp32.

Axis legend: b batch, l/s time, c chunks, q position in a chunk, h heads, g groups,
r heads per group (h = g·r), p head width, n state size.
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32


def segsum(a: jax.Array) -> jax.Array:
    """Stable segment sum: a [..., q] → [..., q, q] with out[i, j] = Σ_{k=j+1..i} a_k (i ≥ j), −inf (i < j).

    Built as M[i, j] = a_i kept strictly below the diagonal, then a cumulative sum over i,
    so each entry is a direct sum of a's (no cancellation).
    """
    q = a.shape[-1]
    below = jnp.tril(jnp.ones((q, q), bool), k=-1)
    m = jnp.where(below, a[..., :, None], 0.0)
    out = jnp.cumsum(m, axis=-2)
    return jnp.where(jnp.tril(jnp.ones((q, q), bool)), out, -jnp.inf)


def _exclusive_reverse_cumsum(a: jax.Array, axis: int) -> jax.Array:
    """out[s] = Σ_{u>s} a_u along ``axis``, as a direct sum."""
    shifted = jnp.concatenate([lax.slice_in_dim(a, 1, None, axis=axis),
                               jnp.zeros_like(lax.slice_in_dim(a, 0, 1, axis=axis))], axis=axis)
    return jnp.flip(jnp.cumsum(jnp.flip(shifted, axis), axis=axis), axis)


def _pad_time(v: jax.Array, pad: int) -> jax.Array:
    if not pad:
        return v
    widths = [(0, 0)] * v.ndim
    widths[1] = (0, pad)
    return jnp.pad(v, widths)


def pad_to_chunks(x, dt, B, C, reset, q: int):
    """(chunks, x, dt, B, C in float32, reset) with time padded to a multiple of ``q``.

    Padding is dt = 0 (decay 1, no input) and no reset, so the state passes through unchanged.
    """
    batch, length = x.shape[:2]
    chunks = -(-length // q)
    pad = chunks * q - length
    if reset is None:
        reset = jnp.zeros((batch, length), bool)
    x32, dt32, b32, c32 = (_pad_time(v.astype(_F32), pad) for v in (x, dt, B, C))
    return chunks, x32, dt32, b32, c32, _pad_time(reset, pad)


def ssd_chunked(
    x: jax.Array,
    dt: jax.Array,
    A: jax.Array,
    B: jax.Array,
    C: jax.Array,
    D: Optional[jax.Array] = None,
    initial_state: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    *,
    chunk_size: int = 256,
) -> Tuple[jax.Array, jax.Array]:
    """Chunked SSD; same arguments and results as :func:`reference.ssd_reference`.

    Args:
      x: [b l h p]; dt: [b l h]; A: [h]; B, C: [b l g n]; D: [h] or None;
      initial_state: [b h p n] or None; reset: bool [b l] or None.
      chunk_size: Q; a sequence shorter than Q is one chunk of its own length.

    Returns:
      (y [b l h p] in the dtype of x, final state float32 [b h p n]).
    """
    batch, length, heads, width = x.shape
    groups, size = B.shape[2], B.shape[3]
    per_group = heads // groups
    q = min(int(chunk_size), length)
    chunks, x32, dt32, b32, c32, reset = pad_to_chunks(x, dt, B, C, reset, q)

    a_bar = (dt32 * A.astype(_F32)).reshape(batch, chunks, q, groups, per_group)  # [b c q g r]
    xs = (x32 * dt32[..., None]).reshape(batch, chunks, q, groups, per_group, width)  # [b c q g r p]
    b5 = b32.reshape(batch, chunks, q, groups, size)  # [b c q g n]
    c5 = c32.reshape(batch, chunks, q, groups, size)
    doc = jnp.cumsum(reset.astype(jnp.int32), axis=1).reshape(batch, chunks, q)  # [b c q]
    doc_entering = doc[:, :, 0] - reset.reshape(batch, chunks, q)[:, :, 0]  # [b c]: document of the carry
    doc_last = doc[:, :, -1]  # [b c]

    with jax.named_scope("ssd_intra_chunk"):
        a_q = jnp.moveaxis(a_bar, 2, -1)  # [b c g r q]
        same_doc = (doc[:, :, :, None] == doc[:, :, None, :]) & jnp.tril(jnp.ones((q, q), bool))  # [b c l s]
        decay = jnp.exp(jnp.where(same_doc[:, :, None, None], segsum(a_q), -jnp.inf))  # [b c g r l s]
        scores = jnp.einsum("bclgn,bcsgn->bcgls", c5, b5)
        y_diag = jnp.einsum("bcgls,bcgrls,bcsgrp->bclgrp", scores, decay, xs)

    with jax.named_scope("ssd_chunk_states"):
        to_end = jnp.exp(_exclusive_reverse_cumsum(a_bar, axis=2))  # [b c q g r]
        in_last_doc = (doc == doc_last[:, :, None])[..., None, None]
        to_end = jnp.where(in_last_doc, to_end, 0.0)
        states = jnp.einsum("bcsgn,bcsgr,bcsgrp->bcgrpn", b5, to_end, xs)  # [b c g r p n]

    with jax.named_scope("ssd_inter_chunk"):
        from_start = jnp.cumsum(a_bar, axis=2)  # [b c q g r], inclusive
        carries = doc_last == doc_entering  # [b c]: no document starts inside the chunk
        chunk_decay = jnp.where(carries[..., None, None], jnp.exp(from_start[:, :, -1]), 0.0)  # [b c g r]
        h0 = jnp.zeros((batch, heads, width, size), _F32) if initial_state is None else initial_state.astype(_F32)

        def step(h, inputs):
            decay_k, state_k = inputs
            return decay_k[..., None, None] * h + state_k, h

        final, entering = lax.scan(step, h0.reshape(batch, groups, per_group, width, size),
                                   (jnp.moveaxis(chunk_decay, 1, 0), jnp.moveaxis(states, 1, 0)))
        entering = jnp.moveaxis(entering, 0, 1)  # [b c g r p n]: state before each chunk

    with jax.named_scope("ssd_chunk_outputs"):
        continues = (doc == doc_entering[:, :, None])[..., None, None]  # [b c q 1 1]
        from_entry = jnp.where(continues, jnp.exp(from_start), 0.0)
        y_off = jnp.einsum("bclgn,bcgrpn,bclgr->bclgrp", c5, entering, from_entry)

    y = (y_diag + y_off).reshape(batch, chunks * q, heads, width)[:, :length]
    if D is not None:
        y = y + D.astype(_F32)[:, None] * x.astype(_F32)
    return y.astype(x.dtype), final.reshape(batch, heads, width, size)
