"""What the SSD Pallas kernels (TPU and GPU flavours) share: input layout, the chunk step, the VJP.

The kernels run the chunked SSD algorithm of :mod:`.xla` one chunk of Q tokens at a time
per (batch, head), with the [p, n] state carried from chunk to chunk in fp32 (VMEM scratch
on TPU, registers on GPU). Per chunk (:func:`chunk_step`):

1. intra-chunk (quadratic): ``Y_diag = ((C Bᵀ) ⊙ exp(segsum(Ā)) ⊙ same_doc) X``;
2. carried state: ``Y_off = w_off ⊙ (C Hᵀ)``;
3. state pass: ``H ← chunk_decay · H + (w_state ⊙ X)ᵀ B``.

``segsum`` is built in-kernel as a matmul of direct sums (``tril @ (Ā masked below the
diagonal)``, never a difference of cumulative sums), and ``same_doc`` as "no reset in
(s, l]" by the same matmul over the reset indicator, so decays are masked before ``exp``.
The per-token vectors that need only O(L) work (within-chunk cumulative sums of Ā, the
document masks, the chunk decay) are computed here in XLA and handed to the kernel packed
as ``vec`` [b h L 8]: columns Ā, reset, w_state, w_off, chunk_decay (then zeros).

Backward: a documented XLA backward. The kernels are wrapped in ``jax.custom_vjp`` whose
backward recomputes the forward with :func:`.xla.ssd_chunked` and takes its VJP (the same
algebra; residuals are the inputs only). So gradients are exactly those of the "chunked"
implementation and cost one chunked forward + backward.

Axis legend: b batch, l time, c chunks, q position in a chunk, h heads, g groups,
p head width, n state size.
"""

import functools
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from .xla import _exclusive_reverse_cumsum, pad_to_chunks, ssd_chunked

_F32 = jnp.float32
VEC_COLUMNS = 8  # Ā, reset, w_state, w_off, chunk_decay, 3 zero columns (a power of two for Triton)
_HIGHEST = lax.Precision.HIGHEST


class KernelInputs(NamedTuple):
    """The kernels' operands, time padded to a multiple of the chunk ``q``."""

    xs: jax.Array  # [b h L p] f32: dt·x
    b: jax.Array  # [b g L n] f32
    c: jax.Array  # [b g L n] f32
    vec: jax.Array  # [b h L 8] f32 (see the module notes)
    h0: jax.Array  # [b h p n] f32


def prepare(x, dt, A, B, C, initial_state, reset, q: int) -> KernelInputs:
    """Kernel layout (heads before time) with the O(L) per-token vectors precomputed."""
    batch, length, heads, width = x.shape
    size = B.shape[-1]
    chunks, x32, dt32, b32, c32, reset = pad_to_chunks(x, dt, B, C, reset, q)
    a_bar = (dt32 * A.astype(_F32)).reshape(batch, chunks, q, heads)  # [b c q h]
    xs = x32 * dt32[..., None]  # [b L h p]
    doc = jnp.cumsum(reset.astype(jnp.int32), axis=1).reshape(batch, chunks, q)
    reset_q = reset.reshape(batch, chunks, q)
    doc_entering = (doc[:, :, 0] - reset_q[:, :, 0])[:, :, None]  # [b c 1]: document of the carry
    doc_last = doc[:, :, -1:]  # [b c 1]
    from_start = jnp.cumsum(a_bar, axis=2)  # inclusive, direct sums
    to_end = _exclusive_reverse_cumsum(a_bar, axis=2)
    w_state = jnp.where((doc == doc_last)[..., None], jnp.exp(to_end), 0.0)
    w_off = jnp.where((doc == doc_entering)[..., None], jnp.exp(from_start), 0.0)
    carries = (doc_last == doc_entering)[..., None]  # [b c 1 1]: no document starts inside the chunk
    chunk_decay = jnp.broadcast_to(jnp.where(carries, jnp.exp(from_start[:, :, -1:]), 0.0), a_bar.shape)
    reset_h = jnp.broadcast_to(reset_q[..., None].astype(_F32), a_bar.shape)
    zeros = jnp.zeros_like(a_bar)
    vec = jnp.stack([a_bar, reset_h, w_state, w_off, chunk_decay, zeros, zeros, zeros], axis=-1)
    vec = vec.reshape(batch, chunks * q, heads, VEC_COLUMNS)
    h0 = (jnp.zeros((batch, heads, width, size), _F32) if initial_state is None
          else initial_state.astype(_F32))
    to_heads_first = lambda v: jnp.swapaxes(v, 1, 2)  # noqa: E731 - [b L h ...] -> [b h L ...]
    return KernelInputs(to_heads_first(xs), to_heads_first(b32), to_heads_first(c32), to_heads_first(vec), h0)


def _dot(lhs, rhs, contract: Tuple[int, int]):
    """fp32 matmul contracting ``lhs`` axis ``contract[0]`` with ``rhs`` axis ``contract[1]``."""
    return lax.dot_general(lhs, rhs, (((contract[0],), (contract[1],)), ((), ())),
                           precision=_HIGHEST, preferred_element_type=_F32)


def chunk_step(xs, b, c, a, r, w_state, w_off, chunk_decay, state):
    """One chunk: (y [q p], next state [p n]) from xs [q p], b/c [q n], a/r/w_* [q 1], chunk_decay [1 1], state [p n]."""
    q = xs.shape[0]
    row = lax.broadcasted_iota(jnp.int32, (q, q), 0)
    col = lax.broadcasted_iota(jnp.int32, (q, q), 1)
    strictly_below = row > col
    on_or_below = (row >= col).astype(_F32)
    zero = jnp.zeros((q, q), _F32)
    segsum = _dot(on_or_below, jnp.where(strictly_below, a, zero), (1, 0))  # [l s]: Σ_{s<u≤l} Ā_u
    resets_between = _dot(on_or_below, jnp.where(strictly_below, r, zero), (1, 0))  # resets in (s, l]
    same_doc = (row >= col) & (resets_between < 0.5)
    decay = jnp.exp(jnp.where(same_doc, segsum, -jnp.inf))
    scores = _dot(c, b, (1, 1)) * decay  # [l s]
    y = _dot(scores, xs, (1, 0)) + w_off * _dot(c, state, (1, 1))  # [q p]
    state = chunk_decay * state + _dot(xs * w_state, b, (0, 0))  # [p n]
    return y, state


def finish(y_heads_first, x, D, length: int) -> jax.Array:
    """[b h L p] kernel output → y [b l h p] in x's dtype, with the skip term D·x."""
    y = jnp.swapaxes(y_heads_first, 1, 2)[:, :length]
    if D is not None:
        y = y + D.astype(_F32)[:, None] * x.astype(_F32)
    return y.astype(x.dtype)


Forward = Callable[[KernelInputs, int], Tuple[jax.Array, jax.Array]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _with_xla_backward(forward: Forward, q: int, x, dt, A, B, C, D, initial_state, reset):
    inputs = prepare(x, dt, A, B, C, initial_state, reset, q)
    y, final = forward(inputs, B.shape[2])
    return finish(y, x, D, x.shape[1]), final


def _fwd(forward, q, x, dt, A, B, C, D, initial_state, reset):
    out = _with_xla_backward(forward, q, x, dt, A, B, C, D, initial_state, reset)
    return out, (x, dt, A, B, C, D, initial_state, reset)


def _bwd(forward, q, residuals, cotangents):
    x, dt, A, B, C, D, initial_state, reset = residuals
    chunked = lambda x, dt, A, B, C, D, h0: ssd_chunked(x, dt, A, B, C, D, h0, reset, chunk_size=q)  # noqa: E731
    _, vjp = jax.vjp(chunked, x, dt, A, B, C, D, initial_state)
    return (*vjp(cotangents), None)


_with_xla_backward.defvjp(_fwd, _bwd)


def ssd_with_xla_backward(forward: Forward, q: int, x, dt, A, B, C, D: Optional[jax.Array],
                          initial_state: Optional[jax.Array], reset: Optional[jax.Array]):
    """``forward`` (a kernel flavour) under the custom VJP; None D / initial_state / reset filled in."""
    batch, length, heads, width = x.shape
    D = jnp.zeros((heads,), _F32) if D is None else D
    if initial_state is None:
        initial_state = jnp.zeros((batch, heads, width, B.shape[-1]), _F32)
    reset = jnp.zeros((batch, length), bool) if reset is None else reset
    return _with_xla_backward(forward, int(q), x, dt, A, B, C, D, initial_state, reset)
