"""Pure-XLA implementations of ``h_t = a_t * h_{t-1} + b_t``: "scan", "associative", "chunked".

All three take batch-major ``[B, T, D]`` arrays, accumulate in float32 and return
``(h, h_last)`` with ``h`` in the dtype of ``b`` and ``h_last`` in float32. Resets are
folded into ``a`` (``a_t = 0`` where ``reset[:, t]``). Arguments are assumed to be
validated by :func:`birdie_jax.kernels.linear_scan.api.linear_scan`.

Every implementation has a custom VJP. The backward of a linear recurrence is the
same recurrence run the other way:

    g_t  = dh_t + a_{t+1} g_{t+1}          (g_{T-1} = dh_{T-1} + dh_last)
    db_t = g_t,   da_t = g_t h_{t-1},   dh0 = a_0 g_0

(with ``t+1 -> t-1`` and ``h_{t-1} -> h_{t+1}`` for ``reverse=True``; ``da_t = 0`` and
no flow through ``a_t`` where ``reset[:, t]``). Only ``a``, ``h`` and ``h0`` are kept as
residuals, so the memory cost is the output itself, not a per-step stack (``lax.scan``
autodiff) or every tree level (``lax.associative_scan`` autodiff).

Axis legend: ``B`` batch, ``T`` time, ``D`` channels, ``N`` number of chunks,
``C`` chunk length.
"""

import functools
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32


def _zeros_state(a: jax.Array, h0: Optional[jax.Array]) -> jax.Array:
    if h0 is None:
        return jnp.zeros((a.shape[0], a.shape[2]), _F32)
    return h0.astype(_F32)


def _masked_a32(a: jax.Array, reset: Optional[jax.Array]) -> jax.Array:
    a32 = a.astype(_F32)
    if reset is not None:
        a32 = jnp.where(reset[:, :, None], jnp.zeros_like(a32), a32)
    return a32


# ---------------------------------------------------------------------------
# Generic custom VJP (used by "scan" and "associative"): the backward pass is the
# same implementation run in the opposite direction with ``a`` shifted by one step.
# ---------------------------------------------------------------------------

_Core = Callable[..., Tuple[jax.Array, jax.Array]]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 5))
def _with_linear_vjp(core: _Core, a, b, h0, reset, reverse: bool):
    return core(a, b, h0, reset, reverse)


def _with_linear_vjp_fwd(core, a, b, h0, reset, reverse):
    h, h_last = core(a, b, h0, reset, reverse)
    return (h, h_last), (a, h, h0, reset)


def _with_linear_vjp_bwd(core, reverse, residuals, cotangents):
    a, h, h0, reset = residuals
    dh, dh_last = cotangents
    a32 = _masked_a32(a, reset)
    ones = jnp.ones_like(a32[:, :1])
    h32 = h.astype(_F32)
    h0_ = h0[:, None].astype(_F32)
    if not reverse:
        a_next = jnp.concatenate([a32[:, 1:], ones], axis=1)
        h_prev = jnp.concatenate([h0_, h32[:, :-1]], axis=1)
    else:
        a_next = jnp.concatenate([ones, a32[:, :-1]], axis=1)
        h_prev = jnp.concatenate([h32[:, 1:], h0_], axis=1)
    g, _ = core(a_next, dh.astype(_F32), dh_last.astype(_F32), None, not reverse)
    da = g * h_prev
    if reset is not None:
        da = jnp.where(reset[:, :, None], jnp.zeros_like(da), da)
    first = -1 if reverse else 0
    dh0 = a32[:, first] * g[:, first]
    return da.astype(a.dtype), g.astype(h.dtype), dh0.astype(h0.dtype), None


_with_linear_vjp.defvjp(_with_linear_vjp_fwd, _with_linear_vjp_bwd)


@functools.lru_cache(maxsize=None)
def _bind(core: _Core, settings: Tuple[Tuple[str, object], ...]) -> _Core:
    # One object per (core, settings) so the custom_vjp's static argument is stable across calls.
    return functools.partial(core, **dict(settings))


def run_with_linear_vjp(core: _Core, scope: str, a, b, h0, reset, reverse, **settings):
    """``core(a, b, h0, reset, reverse, **settings)`` under the linear-recurrence custom VJP.

    For kernels ``jax.grad`` cannot go through (the Pallas kernels): the backward is
    ``core`` itself run in the other direction. ``settings`` must be hashable.
    """
    bound = _bind(core, tuple(sorted(settings.items())))
    with jax.named_scope(scope):
        return _with_linear_vjp(bound, a, b, _zeros_state(a, h0), reset, bool(reverse))


# ---------------------------------------------------------------------------
# "scan": lax.scan over time-major arrays.
# ---------------------------------------------------------------------------


def _scan_core(a, b, h0, reset, reverse, *, unroll: int):
    out_dtype = b.dtype
    if reset is not None:
        a = jnp.where(reset[:, :, None], jnp.zeros_like(a), a)

    def step(h, ab):
        a_t, b_t = ab
        h = a_t.astype(_F32) * h + b_t.astype(_F32)
        return h, h.astype(out_dtype)

    xs = (jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1))
    h_last, h_tbd = lax.scan(step, h0.astype(_F32), xs, reverse=reverse, unroll=unroll)
    return jnp.swapaxes(h_tbd, 0, 1), h_last


@functools.lru_cache(maxsize=None)
def _scan_core_with_unroll(unroll: int) -> _Core:
    # One object per unroll so the custom_vjp's static argument is stable across calls.
    return functools.partial(_scan_core, unroll=unroll)


def linear_scan_scan(
    a: jax.Array,
    b: jax.Array,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
    *,
    unroll: int = 1,
) -> Tuple[jax.Array, jax.Array]:
    """``lax.scan`` over time (time-major inside), ``unroll`` steps per iteration."""
    core = _scan_core_with_unroll(int(unroll))
    with jax.named_scope("linear_scan_scan"):
        return _with_linear_vjp(core, a, b, _zeros_state(a, h0), reset, bool(reverse))


# ---------------------------------------------------------------------------
# "associative": lax.associative_scan (log-depth, ~2x the work).
# ---------------------------------------------------------------------------


def _combine(earlier, later):
    a_i, b_i = earlier
    a_j, b_j = later
    return a_j * a_i, a_j * b_i + b_j


def _associative_core(a, b, h0, reset, reverse):
    a32 = _masked_a32(a, reset)
    b32 = b.astype(_F32)
    first = -1 if reverse else 0
    # Fold h0 into the first processed step: b_first += a_first * h0.
    b32 = b32.at[:, first].add(a32[:, first] * h0.astype(_F32))
    # The same combine is correct for reverse=True (h_t = a_t h_{t+1} + b_t).
    _, h = lax.associative_scan(_combine, (a32, b32), reverse=reverse, axis=1)
    last = 0 if reverse else -1
    return h.astype(b.dtype), h[:, last]


def linear_scan_associative(
    a: jax.Array,
    b: jax.Array,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
) -> Tuple[jax.Array, jax.Array]:
    """``lax.associative_scan`` with the combine ``(a_j a_i, a_j b_i + b_j)``."""
    with jax.named_scope("linear_scan_associative"):
        return _with_linear_vjp(
            _associative_core, a, b, _zeros_state(a, h0), reset, bool(reverse)
        )


# ---------------------------------------------------------------------------
# "chunked": two vectorised passes over the C positions of every chunk.
#
# Time is reshaped (free, no transpose) to [B, N, C, D]. Pass 1 runs the recurrence
# from zero inside every chunk at once (a fori_loop over the C positions, each step a
# [B, N, D] vector op) keeping only each chunk's local final state and the product of
# its a's. A tiny sequential loop over the N chunk summaries gives every chunk its true
# initial state. Pass 2 re-runs the recurrence inside all chunks from those states and
# writes h. Memory traffic is ~5 arrays (a, b twice; h once) against 3 for an ideal
# single pass, but every step is a large vector op instead of a [B, D] one, so the
# per-iteration overhead that dominates lax.scan on CPU disappears.
# ---------------------------------------------------------------------------


def plan_chunks(num_steps: int, chunk_size: int) -> Tuple[int, int]:
    """Returns ``(C, T_padded)`` for the chunked implementation.

    ``T <= chunk_size`` is one chunk. Otherwise a divisor of ``T`` in
    ``[max(2, chunk_size // 2), 2 * chunk_size]`` closest to ``chunk_size`` is used so
    no padding copy is needed; failing that, ``T`` is padded up to a multiple of
    ``chunk_size`` with identity steps (``a=1, b=0``).
    """
    if num_steps <= chunk_size:
        return num_steps, num_steps
    lo, hi = max(2, chunk_size // 2), 2 * chunk_size
    divisors = [d for d in range(lo, hi + 1) if num_steps % d == 0]
    if divisors:
        best = min(divisors, key=lambda d: (abs(d - chunk_size), -d))
        return best, num_steps
    padded = -(-num_steps // chunk_size) * chunk_size
    return chunk_size, padded


def _take(x4, j):
    """``x4[:, :, j]`` for a traced chunk position ``j``."""
    return lax.dynamic_index_in_dim(x4, j, axis=2, keepdims=False)


def _put(x4, value, j):
    return lax.dynamic_update_index_in_dim(x4, value, j, axis=2)


def _load_a(a4, r3, j):
    a_j = _take(a4, j).astype(_F32)
    if r3 is not None:
        a_j = jnp.where(_take(r3, j)[:, :, None], jnp.zeros_like(a_j), a_j)
    return a_j


def _chunk_summaries(a4, x4, r3, *, order, scale_input, unroll):
    """Pass 1: per-chunk local final state from zero, and product of the chunk's a's.

    With ``scale_input`` the step is ``s = a_j (x_j + s)`` (the cotangent recurrence,
    whose carry is ``a_t g_t``); otherwise ``s = a_j s + x_j``.
    """
    batch, num_chunks, chunk, channels = a4.shape

    def body(i, carry):
        s, p = carry
        j = order(i)
        a_j = _load_a(a4, r3, j)
        x_j = _take(x4, j).astype(_F32)
        s = a_j * (x_j + s) if scale_input else a_j * s + x_j
        return s, p * a_j

    zeros = jnp.zeros((batch, num_chunks, channels), _F32)
    ones = jnp.ones((batch, num_chunks, channels), _F32)
    return lax.fori_loop(0, chunk, body, (zeros, ones), unroll=unroll)


def _chunk_carries(s, p, init, *, order):
    """Sequential loop over the N chunk summaries.

    Returns the carry entering every chunk ``[B, N, D]`` and the carry after the last
    processed chunk ``[B, D]``.
    """
    num_chunks = s.shape[1]

    def body(k, carry):
        c, entering = carry
        kk = order(k)
        entering = lax.dynamic_update_index_in_dim(entering, c, kk, axis=1)
        p_k = lax.dynamic_index_in_dim(p, kk, axis=1, keepdims=False)
        s_k = lax.dynamic_index_in_dim(s, kk, axis=1, keepdims=False)
        return p_k * c + s_k, entering

    final, entering = lax.fori_loop(0, num_chunks, body, (init, jnp.zeros_like(s)))
    return entering, final


def _orders(chunk, num_chunks, backwards):
    if backwards:
        return (lambda i: chunk - 1 - i), (lambda k: num_chunks - 1 - k)
    return (lambda i: i), (lambda k: k)


def _chunked_forward(a4, b4, h0, r3, reverse, unroll):
    batch, num_chunks, chunk, channels = a4.shape
    pos, chunk_order = _orders(chunk, num_chunks, reverse)
    if num_chunks > 1:
        with jax.named_scope("chunk_summaries"):
            s, p = _chunk_summaries(a4, b4, r3, order=pos, scale_input=False, unroll=unroll)
        with jax.named_scope("chunk_carries"):
            inits, h_last = _chunk_carries(s, p, h0, order=chunk_order)
    else:
        inits = h0[:, None]

    out_dtype = b4.dtype

    def body(i, carry):
        h, out = carry
        j = pos(i)
        h = _load_a(a4, r3, j) * h + _take(b4, j).astype(_F32)
        return h, _put(out, h.astype(out_dtype), j)

    with jax.named_scope("chunk_outputs"):
        final, h4 = lax.fori_loop(
            0, chunk, body, (inits, jnp.zeros(a4.shape, out_dtype)), unroll=unroll
        )
    if num_chunks == 1:
        h_last = final[:, 0]
    return h4, h_last, inits


def _chunked_backward(a4, h4, r3, inits, dh4, dh_last, reverse, unroll):
    batch, num_chunks, chunk, channels = a4.shape
    # The cotangent runs against the recurrence.
    pos, chunk_order = _orders(chunk, num_chunks, not reverse)
    if num_chunks > 1:
        with jax.named_scope("chunk_summaries_bwd"):
            s, p = _chunk_summaries(a4, dh4, r3, order=pos, scale_input=True, unroll=unroll)
        with jax.named_scope("chunk_carries_bwd"):
            carries, dh0 = _chunk_carries(s, p, dh_last, order=chunk_order)
    else:
        carries = dh_last[:, None]

    def body(i, carry):
        u, da4, db4 = carry  # u = a_{t+1} g_{t+1}: what flows into g_t from later steps
        j = pos(i)
        g = _take(dh4, j).astype(_F32) + u
        if reverse:
            neighbour, at_edge = jnp.minimum(j + 1, chunk - 1), j == chunk - 1
        else:
            neighbour, at_edge = jnp.maximum(j - 1, 0), j == 0
        h_prev = jnp.where(at_edge, inits, _take(h4, neighbour).astype(_F32))
        da = g * h_prev
        if r3 is not None:
            da = jnp.where(_take(r3, j)[:, :, None], jnp.zeros_like(da), da)
        da4 = _put(da4, da.astype(da4.dtype), j)
        db4 = _put(db4, g.astype(db4.dtype), j)
        return _load_a(a4, r3, j) * g, da4, db4

    with jax.named_scope("chunk_outputs_bwd"):
        final, da4, db4 = lax.fori_loop(
            0,
            chunk,
            body,
            (carries, jnp.zeros(a4.shape, a4.dtype), jnp.zeros(h4.shape, h4.dtype)),
            unroll=unroll,
        )
    if num_chunks == 1:
        dh0 = final[:, 0]
    return da4, db4, dh0


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _chunked_core(a4, b4, h0, r3, reverse, unroll):
    h4, h_last, _ = _chunked_forward(a4, b4, h0, r3, reverse, unroll)
    return h4, h_last


def _chunked_core_fwd(a4, b4, h0, r3, reverse, unroll):
    h4, h_last, inits = _chunked_forward(a4, b4, h0, r3, reverse, unroll)
    return (h4, h_last), (a4, h4, r3, inits, h0)


def _chunked_core_bwd(reverse, unroll, residuals, cotangents):
    a4, h4, r3, inits, h0 = residuals
    dh4, dh_last = cotangents
    da4, db4, dh0 = _chunked_backward(
        a4, h4, r3, inits, dh4, dh_last.astype(_F32), reverse, unroll
    )
    return da4, db4.astype(h4.dtype), dh0.astype(h0.dtype), None


_chunked_core.defvjp(_chunked_core_fwd, _chunked_core_bwd)


def linear_scan_chunked(
    a: jax.Array,
    b: jax.Array,
    h0: Optional[jax.Array] = None,
    reset: Optional[jax.Array] = None,
    reverse: bool = False,
    *,
    chunk_size: int = 64,
    unroll: int = 4,
) -> Tuple[jax.Array, jax.Array]:
    """Two-pass chunked recurrence (see the module notes); custom VJP of the same shape."""
    batch, num_steps, channels = a.shape
    chunk, padded = plan_chunks(num_steps, int(chunk_size))
    h0 = _zeros_state(a, h0)
    if padded != num_steps:
        # Identity steps (a=1, b=0) at the end are harmless both ways: forward they
        # carry h_{T-1} unchanged to the end, reverse they carry h0 unchanged to T-1.
        extra = padded - num_steps
        a = jnp.concatenate([a, jnp.ones((batch, extra, channels), a.dtype)], axis=1)
        b = jnp.concatenate([b, jnp.zeros((batch, extra, channels), b.dtype)], axis=1)
        if reset is not None:
            reset = jnp.concatenate([reset, jnp.zeros((batch, extra), bool)], axis=1)
    num_chunks = padded // chunk
    a4 = a.reshape(batch, num_chunks, chunk, channels)
    b4 = b.reshape(batch, num_chunks, chunk, channels)
    r3 = None if reset is None else reset.reshape(batch, num_chunks, chunk)
    with jax.named_scope("linear_scan_chunked"):
        h4, h_last = _chunked_core(a4, b4, h0, r3, bool(reverse), int(unroll))
    h = h4.reshape(batch, padded, channels)
    if padded != num_steps:
        h = h[:, :num_steps]
    return h, h_last


IMPLEMENTATIONS: Dict[str, Callable[..., Tuple[jax.Array, jax.Array]]] = {
    "scan": linear_scan_scan,
    "associative": linear_scan_associative,
    "chunked": linear_scan_chunked,
}
