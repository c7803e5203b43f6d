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
the intra-chunk scores C_l·B_s are masked to doc_l == doc_s, a chunk state sums only the chunk's
last document, the carry crosses a chunk only if no document starts inside it, and Y_off
reaches only the tokens that continue the document entering the chunk.

Layout (issue 18: XLA's CPU backend materialises a transpose around every contraction
whose operands are not stored as a batched [m k]·[k n] product, and reduces over a
non-minor axis ~25× slower than a matmul does): groups are folded into the rows, (rows,
chunks) are merged into one leading axis z so every tensor is at most 4-D, x is moved to
head-major once for the intra-chunk product, chunk states are [z n (r p)] so both B·X
and C·H are plain batched matmuls over the token-major x, and the segment sums are one
2-D matmul along the contiguous axis.

Matmuls run at the default precision (TF32 for float32 on recent GPUs, as upstream's
kernels); wrap a call in ``jax.default_matmul_precision("highest")`` for full fp32.

Axis legend: b batch, l/s time, c chunks, q position in a chunk, h heads, g groups,
r heads per group (h = g·r), p head width, n state size.
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_F32 = jnp.float32
_SEGSUM_BETWEEN_MAX = 64  # chunk sizes whose segment sums use the [q, q²] 0/1 matrix
_CHUNK_SCAN_UNROLL = 16  # chunks per iteration of the inter-chunk scan (all of them up to 16)


def segsum(a: jax.Array) -> jax.Array:
    """Stable segment sum: a [..., q] → [..., q, q] with out[i, j] = Σ_{k=j+1..i} a_k (i ≥ j), −inf (i < j).

    Row i keeps a_k for k ≤ i (M[i, k]); out[i, j] = Σ_{k>j} M[i, k] is then one 2-D matmul of
    M (rows: every leading index and i) with the strictly-lower 0/1 matrix, so each entry is
    a direct sum of a's (no cancellation: the products are exact, and ``HIGHEST`` keeps a GPU
    from rounding the a's to TF32) and the sum runs along the contiguous axis.
    """
    q = a.shape[-1]
    return jnp.where(jnp.tril(jnp.ones((q, q), bool)), _segsum_lower(a), -jnp.inf)


def _segsum_lower(a: jax.Array) -> jax.Array:
    """:func:`segsum` with 0 (the empty sum) instead of −inf above the diagonal: finite everywhere.

    Up to ``_SEGSUM_BETWEEN_MAX`` positions it is one matmul of a [(...), k] with the 0/1 matrix
    between[k, (i j)] = [j < k ≤ i] (q³ floats: 1 MiB at q = 64): no [..., q, q] masked copy of
    a is written, and the backward is the transposed matmul (issue 18). Longer chunks use the
    row form (a masked [(... i), k] times a 0/1 triangle), whose constant stays q². Either way
    each entry is a direct sum of a's.
    """
    q = a.shape[-1]
    if q <= _SEGSUM_BETWEEN_MAX:
        k, i, j = np.ogrid[:q, :q, :q]
        between = ((j < k) & (k <= i)).reshape(q, q * q)  # [k, (i j)]
        out = jnp.matmul(a.reshape(-1, q), jnp.asarray(between, a.dtype), precision=lax.Precision.HIGHEST)
        return out.reshape(*a.shape, q)
    upto = jnp.tril(jnp.ones((q, q), bool))  # [i, k]: k ≤ i
    rows = jnp.where(upto, a[..., None, :], 0.0).reshape(-1, q)  # [(... i), k]
    after = jnp.tril(jnp.ones((q, q), a.dtype), k=-1)  # [k, j]: k > j
    return jnp.matmul(rows, after, precision=lax.Precision.HIGHEST).reshape(*a.shape, q)


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


@jax.custom_vjp
def _scale_by_heads(scores: jax.Array, decay: jax.Array) -> jax.Array:
    """scores [z l s] (shared by the heads) ⊙ decay [z r l s] → [z r l s].

    Its VJP sums over heads with an einsum (a dot): the plain broadcast's reduction over a
    non-minor axis is ~25× slower in XLA's CPU backend.
    """
    return scores[:, None] * decay


def _scale_by_heads_fwd(scores, decay):
    return scores[:, None] * decay, (scores, decay)


def _scale_by_heads_bwd(residuals, g):
    scores, decay = residuals
    return jnp.einsum("zrls,zrls->zls", g, decay), g * scores[:, None]


_scale_by_heads.defvjp(_scale_by_heads_fwd, _scale_by_heads_bwd)


def _ssd_one_group(xs, a_bar, b_in, c_in, doc, doc_entering, h0, q: int):
    """The chunked SSD for one group of heads (groups folded into the rows).

    xs = dt·x [y c s r p], a_bar = dt·A [y c s r], b_in/c_in [y c s n], doc [y c s] (document
    numbers), doc_entering [y c] (the document of the carry entering each chunk), h0 [y n r p]
    → (y [y c l r p], final state [y n r p]); y = rows (batch · groups).
    Every contraction is a batched matmul over the merged rows z = (y, c) (module docstring).
    """
    rows, chunks, _, heads, width = xs.shape
    size = b_in.shape[-1]
    z = rows * chunks
    xs, a_bar = xs.reshape(z, q, heads, width), a_bar.reshape(z, q, heads)
    b_in, c_in, doc = b_in.reshape(z, q, size), c_in.reshape(z, q, size), doc.reshape(z, q)
    doc_entering = doc_entering.reshape(z)
    doc_last = doc[:, -1]

    with jax.named_scope("ssd_intra_chunk"):
        same_doc = (doc[:, :, None] == doc[:, None, :]) & jnp.tril(jnp.ones((q, q), bool))  # [z l s]
        # The mask is applied to the scores shared by the heads ([z l s], 1/r of the decay's size),
        # so the decay is a plain exp, with no mask recomputed per head and no exp(−inf) (XLA's
        # CPU exp is ~5× slower on non-finite inputs; issue 18). Ā ≤ 0 (A < 0, dt ≥ 0: the
        # kernel's contract), so every decay entry, masked or not, is in [0, 1] and a zeroed
        # score makes its product, and that product's gradient, exactly 0.
        scores = jnp.where(same_doc, jnp.einsum("zln,zsn->zls", c_in, b_in), 0.0)
        decay = jnp.exp(_segsum_lower(jnp.swapaxes(a_bar, 1, 2)))  # [z r l s]
        x_heads = jnp.swapaxes(xs, 1, 2)  # [z r s p]
        y_diag = jnp.swapaxes(jnp.einsum("zrls,zrsp->zrlp", _scale_by_heads(scores, decay), x_heads), 1, 2)

    with jax.named_scope("ssd_chunk_states"):
        to_end = jnp.exp(_exclusive_reverse_cumsum(a_bar, axis=1))  # [z s r]
        to_end = jnp.where((doc == doc_last[:, None])[..., None], to_end, 0.0)
        x_to_end = (xs * to_end[..., None]).reshape(z, q, heads * width)  # [z s (r p)]
        states = jnp.einsum("zsn,zsx->znx", b_in, x_to_end).reshape(rows, chunks, size, heads, width)

    with jax.named_scope("ssd_inter_chunk"):
        from_start = jnp.cumsum(a_bar, axis=1)  # [z l r], inclusive
        carries = (doc_last == doc_entering)[:, None]  # no document starts inside the chunk
        chunk_decay = jnp.where(carries, jnp.exp(from_start[:, -1]), 0.0).reshape(rows, chunks, heads)

        def step(h, inputs):
            decay_k, state_k = inputs  # [y r], [y n r p]
            return decay_k[:, None, :, None] * h + state_k, h

        # Unrolled (up to _CHUNK_SCAN_UNROLL chunks per loop iteration): the steps are few and
        # large, and XLA's CPU backend runs a while loop's iterations as separate, serial
        # launches that cannot fuse with each other (issue 18).
        final, entering = lax.scan(step, h0, (jnp.moveaxis(chunk_decay, 1, 0), jnp.moveaxis(states, 1, 0)),
                                   unroll=min(chunks, _CHUNK_SCAN_UNROLL))
        entering = jnp.moveaxis(entering, 0, 1).reshape(z, size, heads * width)  # [z n (r p)]: before each chunk

    with jax.named_scope("ssd_chunk_outputs"):
        from_entry = jnp.where((doc == doc_entering[:, None])[..., None], jnp.exp(from_start), 0.0)  # [z l r]
        y_off = jnp.einsum("zln,znx->zlx", c_in, entering).reshape(z, q, heads, width) * from_entry[..., None]

    return (y_diag + y_off).reshape(rows, chunks, q, heads, width), final


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
    rows = batch * groups

    def by_group(v, *inner):  # [b L g ...] → [(b g) c q ...] (a free reshape when g = 1)
        v = jnp.moveaxis(v.reshape(batch, chunks * q, groups, *inner), 2, 1)
        return v.reshape(rows, chunks, q, *inner)

    xs = by_group(x32 * dt32[..., None], per_group, width)  # [y c s r p]
    a_bar = by_group(dt32 * A.astype(_F32), per_group)  # [y c s r]
    doc = jnp.cumsum(reset.astype(jnp.int32), axis=1).reshape(batch, chunks, q)  # [b c q]
    doc_entering = doc[:, :, 0] - reset.reshape(batch, chunks, q)[:, :, 0]  # [b c]: document of the carry
    if initial_state is None:
        h0 = jnp.zeros((rows, size, per_group, width), _F32)
    else:  # [b h p n] → [(b g) n r p]
        h0 = jnp.transpose(initial_state.astype(_F32).reshape(rows, per_group, width, size), (0, 3, 1, 2))
    y, final = _ssd_one_group(xs, a_bar, by_group(b32, size), by_group(c32, size), jnp.repeat(doc, groups, axis=0),
                              jnp.repeat(doc_entering, groups, axis=0), h0, q)
    y = jnp.moveaxis(y.reshape(batch, groups, chunks * q, per_group, width), 1, 2)
    y = y.reshape(batch, chunks * q, heads, width)[:, :length]
    if D is not None:
        y = y + D.astype(_F32)[:, None] * x.astype(_F32)
    final = jnp.transpose(final, (0, 2, 3, 1)).reshape(batch, heads, width, size)  # [(b g) n r p] → [b h p n]
    return y.astype(x.dtype), final
