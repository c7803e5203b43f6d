"""What the linear-attention Pallas kernels (TPU and GPU flavours) share: layout, chunk step, VJP.

The kernels compute the chunked feature-map form of :mod:`.xla` one chunk of C tokens at a
time per (batch, head). One *pass* sums, for every query i, the kernel-weighted values of the
keys j of i's run with j ≤ i (or j < i, ``strict``), processing time forwards (or, on flipped
inputs, backwards); :func:`linear_attention_pallas_forward` adds up to three passes: the
decoder keys (with the initial state), and for the prefix (PLA) term the encoder keys
forwards (j ≤ i) and backwards (j > i), exactly as ``linear_attention_chunked`` does.

Per chunk (:func:`chunk_step`):

1. inside the chunk, the kernel matrix ``A = 1 + s + s²/2`` (``s = q kᵀ/√f``, i.e.
   φ(q)·φ(k) without forming the 1 + f + f² features), masked to allowed pairs (causal and
   same run, "no run start in (j, i]" by a matmul of direct counts), times the values;
2. the carried state (S = Σ φ(k) vᵀ of the current run) applied to the chunk's tokens of that
   run: φ(q)·S = S₀ + (q/f^¼)·S₁ + Σ_a q_a/(√2√f) · (q·S₂[a]), with the state kept split
   as S₀ [1, P], S₁ [f, P], S₂ [f, f, P] (the 1, x and x⊗x blocks of φ);
3. the state update with the chunk's last-run keys (dropped first if a run starts in the chunk).

Masked keys (padding, non-encoder positions) are folded into the values: ``vn = v·mask`` for
the numerator and ``vd = mask`` (broadcast to 16 columns, the smallest GPU matmul tile) for the
denominator, so one kernel matrix serves both. The denominator state is z broadcast to 16
columns. The O(t) per-token flags (run starts, "carry applies", "in the chunk's last run",
"carry survives the chunk") are computed here in XLA and packed as ``vec`` [b h T 8].

Backward: a documented XLA backward. :func:`with_xla_backward` wraps a kernel flavour in a
``jax.custom_vjp`` whose backward takes the VJP of ``linear_attention_chunked`` (recomputing
its forward; residuals are the inputs), so gradients are exactly the "chunked" form's.

Axis legend: b batch, t/T time (T padded), h heads, f key width, F = 1 + f + f², p value width,
P p or 16 (numerator / denominator).
"""

import functools
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from .reference import State, segment_runs, zero_state
from .xla import linear_attention_chunked

_F32 = jnp.float32
DEN_WIDTH = 16  # denominator columns (all equal): the smallest Triton matmul tile
VEC_COLUMNS = 8  # start, carry applies, in last run, carry survives, 4 zero columns
_HIGHEST = lax.Precision.HIGHEST


class Split(NamedTuple):
    """A state S [b h F P] split into the blocks of φ: 1, x, x⊗x."""

    s0: jax.Array  # [b h 1 P]
    s1: jax.Array  # [b h f P]
    s2: jax.Array  # [b h f f P]


class PassInputs(NamedTuple):
    """One pass's operands, heads first, time padded to a multiple of the chunk."""

    q: jax.Array  # [b h T f] f32
    k: jax.Array  # [b h T f] f32
    vn: jax.Array  # [b h T p] f32, v·mask
    vd: jax.Array  # [b h T 16] f32, mask
    vec: jax.Array  # [b h T 8] f32 flags
    num_state: Split
    den_state: Split


def state_specs(f: int, p: int):
    """BlockSpecs of the six state blocks (numerator then denominator: 1, x, x⊗x), one (batch, head) each.

    The index maps ignore grid axes after (batch, head), so on TPU the blocks stay resident across chunks.
    """
    specs = []
    for width in (p, DEN_WIDTH):
        specs += [pl.BlockSpec((None, None, 1, width), lambda i, j, *_: (i, j, 0, 0)),
                  pl.BlockSpec((None, None, f, width), lambda i, j, *_: (i, j, 0, 0)),
                  pl.BlockSpec((None, None, f, f, width), lambda i, j, *_: (i, j, 0, 0, 0))]
    return specs


def output_shapes(batch: int, heads: int, padded: int, f: int, p: int):
    """Shapes of a pass kernel's outputs: num [b h T p], den [b h T 16], then the six final-state blocks."""
    shapes = [jax.ShapeDtypeStruct((batch, heads, padded, p), _F32),
              jax.ShapeDtypeStruct((batch, heads, padded, DEN_WIDTH), _F32)]
    for width in (p, DEN_WIDTH):
        shapes += [jax.ShapeDtypeStruct((batch, heads, 1, width), _F32),
                   jax.ShapeDtypeStruct((batch, heads, f, width), _F32),
                   jax.ShapeDtypeStruct((batch, heads, f, f, width), _F32)]
    return shapes


def split_state(S: jax.Array, f: int) -> Split:
    b, h, _, P = S.shape
    return Split(S[:, :, :1], S[:, :, 1:1 + f], S[:, :, 1 + f:].reshape(b, h, f, f, P))


def join_state(split: Split) -> jax.Array:
    b, h, f, _, P = split.s2.shape
    return jnp.concatenate([split.s0, split.s1, split.s2.reshape(b, h, f * f, P)], axis=2)


def _dot(lhs, rhs, contract: Tuple[int, int]):
    """fp32 matmul contracting ``lhs`` axis ``contract[0]`` with ``rhs`` axis ``contract[1]``."""
    return lax.dot_general(lhs, rhs, (((contract[0],), (contract[1],)), ((), ())),
                           precision=_HIGHEST, preferred_element_type=_F32)


def chunk_step(q, k, q_cols, k_cols, vn, vd, start, applies, in_last, survives, num_state, den_state, *, strict):
    """One chunk of one pass.

    Args:
      q, k: [c f]; q_cols, k_cols: f columns [c 1] of q and k (loaded from the refs: GPU
        kernels cannot slice a loaded tile); vn [c p], vd [c 16]; start, applies, in_last:
        [c 1] flags; survives [1 1]; num_state, den_state: (s0 [1 P], s1 [f P], s2: f × [f P]).

    Returns:
      (num [c p], den [c 16], num_state, den_state).
    """
    c, f = q.shape
    scale1, scale2 = f ** -0.25, 1.0 / (2.0 ** 0.5 * f ** 0.5)
    row = lax.broadcasted_iota(jnp.int32, (c, c), 0)
    col = lax.broadcasted_iota(jnp.int32, (c, c), 1)
    strictly_below = row > col
    on_or_below = (row >= col).astype(_F32)
    starts_between = _dot(on_or_below, jnp.where(strictly_below, start, jnp.zeros((c, c), _F32)), (1, 0))
    allowed = (strictly_below if strict else row >= col) & (starts_between < 0.5)  # same run: no start in (j, i]
    s = _dot(q, k, (1, 1)) * f ** -0.5
    a = jnp.where(allowed, 1.0 + s + 0.5 * s * s, 0.0)
    outs, states = [], []
    for values, (s0, s1, s2) in ((vn, num_state), (vd, den_state)):
        carried = s0 + _dot(q * scale1, s1, (1, 0))
        for i in range(f):
            carried = carried + (q_cols[i] * scale2) * _dot(q, s2[i], (1, 0))
        outs.append(_dot(a, values, (1, 0)) + applies * carried)
        kept = values * in_last
        s0 = survives * s0 + jnp.sum(kept, axis=0, keepdims=True)
        s1 = survives * s1 + _dot(k * scale1, kept, (0, 0))
        s2 = tuple(survives * s2[i] + _dot(k * (k_cols[i] * scale2), kept, (0, 0)) for i in range(f))
        states.append((s0, s1, s2))
    return outs[0], outs[1], states[0], states[1]


def _pad_time(x: jax.Array, pad: int, value=0) -> jax.Array:
    return jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2), constant_values=value)


def _flags(run: jax.Array, c: int) -> jax.Array:
    """[b T 8] f32: start, carry applies, in the chunk's last run, carry survives the chunk (T = n·c)."""
    b, t = run.shape
    start = jnp.concatenate([jnp.zeros((b, 1), bool), run[:, 1:] != run[:, :-1]], axis=1)
    per_chunk = start.reshape(b, t // c, c).astype(jnp.int32)
    upto = jnp.cumsum(per_chunk, axis=2)  # starts in [0, i] of the chunk
    total = upto[:, :, -1:]
    applies = upto == 0
    in_last = (total - upto) == 0  # no start in (j, c-1]
    survives = jnp.broadcast_to(total == 0, per_chunk.shape)
    cols = [per_chunk > 0, applies, in_last, survives]
    zeros = jnp.zeros_like(applies)
    return jnp.stack(cols + [zeros] * (VEC_COLUMNS - len(cols)), axis=-1).astype(_F32).reshape(b, t, VEC_COLUMNS)


Forward = Callable[[PassInputs, bool], Tuple[jax.Array, jax.Array, Split, Split]]


def _run_pass(forward: Forward, c: int, q, k, v, mask, run, state: State, *, reverse: bool, strict: bool):
    """(num [b t h p], den [b t h], final (S, z)) of one pass; see the module notes."""
    b, t, h, f = q.shape
    if reverse:
        q, k, v, mask, run = (jnp.flip(x, axis=1) for x in (q, k, v, mask, run))
    pad = (-t) % c
    run = jnp.concatenate([run, jnp.repeat(run[:, -1:], pad, axis=1)], axis=1)  # padding continues the last run
    mask = _pad_time(mask, pad, False)
    heads_first = lambda x: jnp.swapaxes(x, 1, 2)  # noqa: E731 - [b T h ...] -> [b h T ...]
    m = mask[:, :, None, None].astype(_F32)
    vn = _pad_time(v.astype(_F32), pad) * m
    vd = jnp.broadcast_to(m, vn.shape[:3] + (DEN_WIDTH,))
    vec = jnp.broadcast_to(_flags(run, c)[:, :, None], (b, t + pad, h, VEC_COLUMNS))
    S, z = state
    inputs = PassInputs(heads_first(_pad_time(q.astype(_F32), pad)), heads_first(_pad_time(k.astype(_F32), pad)),
                        heads_first(vn), heads_first(vd), heads_first(vec), split_state(S.astype(_F32), f),
                        split_state(jnp.broadcast_to(z.astype(_F32)[..., None], z.shape + (DEN_WIDTH,)), f))
    num, den, num_final, den_final = forward(inputs, strict)
    num, den = jnp.swapaxes(num, 1, 2)[:, :t], jnp.swapaxes(den, 1, 2)[:, :t, :, 0]
    if reverse:
        num, den = jnp.flip(num, axis=1), jnp.flip(den, axis=1)
    return num, den, (join_state(num_final), join_state(den_final)[..., 0])


def linear_attention_pallas_forward(forward: Forward, c: int, q, k, v, k_enc, v_enc, encoder_mask, segment_ids,
                                    initial_state: Optional[State], eps: float):
    """The kernel form of ``linear_attention_chunked``: same arguments and results."""
    b, t, h, f = q.shape
    p = v.shape[-1]
    valid = segment_ids != 0
    run = segment_runs(segment_ids)
    state = zero_state(b, h, f, p) if initial_state is None else initial_state
    num, den, (S, z) = _run_pass(forward, c, q, k, v, valid, run, state, reverse=False, strict=False)
    if k_enc is not None:
        enc_mask = valid & encoder_mask
        zero = zero_state(b, h, f, p)
        n_fwd, d_fwd, (S_enc, z_enc) = _run_pass(forward, c, q, k_enc, v_enc, enc_mask, run, zero,
                                                 reverse=False, strict=False)
        n_rev, d_rev, _ = _run_pass(forward, c, q, k_enc, v_enc, enc_mask, run, zero, reverse=True, strict=True)
        num, den = num + n_fwd + n_rev, den + d_fwd + d_rev
        S, z = S + S_enc, z + z_enc
    y = num / (den + eps)[..., None] * valid[..., None, None]
    return y.astype(v.dtype), (S, z)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _with_xla_backward(forward: Forward, c: int, eps: float, diff, encoder_mask, segment_ids):
    q, k, v, k_enc, v_enc, initial_state = diff
    return linear_attention_pallas_forward(forward, c, q, k, v, k_enc, v_enc, encoder_mask, segment_ids,
                                           initial_state, eps)


def _fwd(forward, c, eps, diff, encoder_mask, segment_ids):
    return _with_xla_backward(forward, c, eps, diff, encoder_mask, segment_ids), (diff, encoder_mask, segment_ids)


def _bwd(forward, c, eps, residuals, cotangents):
    diff, encoder_mask, segment_ids = residuals

    def chunked(diff):
        q, k, v, k_enc, v_enc, initial_state = diff
        return linear_attention_chunked(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, eps,
                                        chunk_size=c)

    _, vjp = jax.vjp(chunked, diff)
    return (*vjp(cotangents), None, None)


_with_xla_backward.defvjp(_fwd, _bwd)


def with_xla_backward(forward: Forward, c: int, q, k, v, k_enc, v_enc, encoder_mask, segment_ids,
                      initial_state: Optional[State], eps: float):
    """``forward`` (a kernel flavour) under the custom VJP whose backward is the chunked XLA form's."""
    diff = (q, k, v, k_enc, v_enc, None if initial_state is None else tuple(initial_state))
    return _with_xla_backward(forward, int(c), float(eps), diff, encoder_mask, segment_ids)
