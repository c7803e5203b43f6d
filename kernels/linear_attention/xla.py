"""Faster XLA forms of (prefix) linear attention; each equals :mod:`.reference`.

- ``quadratic``: the masked kernel matrix A_ij = K(q_i, k_j) with K(q, k) = 1 + s + s²/2,
  s = q·k/√f (= φ(q)·φ(k), jrt.md §1.2) over the whole row, plus A^e for the prefix.
  O(t²) memory; the simplest parallel form.
- ``chunked``: the quadratic form inside chunks of C tokens, a carried (S, z) across chunks
  (``lax.scan``). The non-causal prefix term is a forward pass (j ≤ i, shared with the
  decoder keys) plus a reverse pass (j > i) over the encoder keys. O(t·C) memory.
- ``recurrent``: feature cumsums: the per-position state S_i = Σ φ(k_j)v_jᵀ by the
  project's ``linear_scan`` (a = 1, resets at run starts), O(t·F·p) memory (short rows).

Axis legend: b batch, t time, n chunks, c chunk length, h heads, f key width,
F = 1 + f + f² features, p value width.
"""

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

from ..linear_scan import linear_scan
from .reference import State, segment_runs, taylor_features, zero_state

_F32 = jnp.float32
KeySet = Tuple[jax.Array, jax.Array, jax.Array]  # (k [b t h f], v [b t h p], mask bool[b t])


def kernel_matrix(q: jax.Array, k: jax.Array) -> jax.Array:
    """float32[b h i j] = φ(q_i)·φ(k_j) = 1 + s + s²/2, s = q_i·k_j/√f, for q [b i h f], k [b j h f]."""
    s = jnp.einsum("bihf,bjhf->bhij", q.astype(_F32), k.astype(_F32)) / q.shape[-1] ** 0.5
    return 1.0 + s + 0.5 * s * s


def _key_sets(k, v, valid, k_enc, v_enc, encoder_mask) -> Tuple[KeySet, Optional[KeySet]]:
    decoder = (k, v, valid)
    encoder = None if k_enc is None else (k_enc, v_enc, valid & encoder_mask)
    return decoder, encoder


def _masked_sum(q, key_sets: Sequence[KeySet], allowed: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """Σ over key sets of A·V and A·1 with A = K(q, k)·allowed·mask_j: ([b i h p], [b i h])."""
    num, den = 0.0, 0.0
    for k, v, mask in key_sets:
        a = kernel_matrix(q, k) * (allowed & mask[:, None, :])[:, None].astype(_F32)
        num = num + jnp.einsum("bhij,bjhp->bihp", a, v.astype(_F32))
        den = den + jnp.swapaxes(a.sum(-1), 1, 2)
    return num, den


def _feature_sums(key_sets: Sequence[KeySet], weight: jax.Array) -> State:
    """(Σ φ(k_j) v_jᵀ, Σ φ(k_j)) over positions j with weight[b j] (and each set's mask)."""
    S, z = 0.0, 0.0
    for k, v, mask in key_sets:
        phi = taylor_features(k) * (mask & weight)[..., None, None]
        S = S + jnp.einsum("bjhF,bjhp->bhFp", phi, v.astype(_F32))
        z = z + phi.sum(1)
    return S, z


def _with_state(phi_q: jax.Array, state: State, applies: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """φ(q_i)·S and φ(q_i)·z where applies[b i], else 0."""
    S, z = state
    num = jnp.einsum("bihF,bhFp->bihp", phi_q, S) * applies[..., None, None]
    den = jnp.einsum("bihF,bhF->bih", phi_q, z) * applies[..., None]
    return num, den


def _finish(num, den, valid, eps, dtype):
    y = num / (den + eps)[..., None] * valid[..., None, None]
    return y.astype(dtype)


def linear_attention_quadratic(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, eps):
    """The whole row as one masked kernel matrix (see the module docstring)."""
    b, t, h, f = q.shape
    valid = segment_ids != 0
    run = segment_runs(segment_ids)
    same = run[:, :, None] == run[:, None, :]
    causal = jnp.tril(jnp.ones((t, t), bool))[None]
    decoder, encoder = _key_sets(k, v, valid, k_enc, v_enc, encoder_mask)
    num, den = _masked_sum(q, [decoder], same & causal)
    last_run = run == run[:, -1:]
    final = _feature_sums([decoder], last_run)
    if encoder is not None:
        enc_num, enc_den = _masked_sum(q, [encoder], same)
        num, den = num + enc_num, den + enc_den
        enc_final = _feature_sums([encoder], last_run)
        final = (final[0] + enc_final[0], final[1] + enc_final[1])
    if initial_state is not None:
        state = tuple(s.astype(_F32) for s in initial_state)
        first_run = run == 0
        init_num, init_den = _with_state(taylor_features(q), state, first_run)
        num, den = num + init_num, den + init_den
        keep = (run[:, -1] == 0).astype(_F32)
        final = (final[0] + keep[:, None, None, None] * state[0], final[1] + keep[:, None, None] * state[1])
    return _finish(num, den, valid, eps, v.dtype), final


def _chunk(x: jax.Array, c: int) -> jax.Array:
    """[b t ...] → [n b c ...] (time-major chunks for ``lax.scan``)."""
    b, t = x.shape[:2]
    return jnp.swapaxes(x.reshape(b, t // c, c, *x.shape[2:]), 0, 1)


def _unchunk(x: jax.Array) -> jax.Array:
    n, b, c = x.shape[:3]
    return jnp.swapaxes(x, 0, 1).reshape(b, n * c, *x.shape[3:])


def _chunked_pass(q, key_sets: Sequence[KeySet], run, state: State, chunk: int, reverse: bool):
    """Σ_j K(q_i, k_j)·[v_j, 1] over j of i's run with j ≤ i (forward) or j > i (reverse).

    Inside a chunk the kernel matrix; across chunks a carried (S, z) of the run at the
    chunk's end (forward: its last token; reverse: its first), applied to the tokens of
    that run. Returns (num [b t h p], den [b t h], state after the last chunk processed).
    """
    c = chunk
    order = jnp.triu(jnp.ones((c, c), bool), 1) if reverse else jnp.tril(jnp.ones((c, c), bool))
    xs = (_chunk(q, c), _chunk(run, c), [tuple(_chunk(a, c) for a in ks) for ks in key_sets])
    carry_run = run[:, -1] if reverse else run[:, 0]

    def body(carry, chunk_xs):
        S, z, carry_run = carry
        q_c, run_c, sets_c = chunk_xs
        allowed = (run_c[:, :, None] == run_c[:, None, :]) & order[None]
        num, den = _masked_sum(q_c, sets_c, allowed)
        init_num, init_den = _with_state(taylor_features(q_c), (S, z), run_c == carry_run[:, None])
        end_run = run_c[:, 0] if reverse else run_c[:, -1]
        keep = (end_run == carry_run).astype(_F32)
        add_S, add_z = _feature_sums(sets_c, run_c == end_run[:, None])
        S = keep[:, None, None, None] * S + add_S
        z = keep[:, None, None] * z + add_z
        return (S, z, end_run), (num + init_num, den + init_den)

    (S, z, _), (num, den) = lax.scan(body, (*state, carry_run), xs, reverse=reverse)
    return _unchunk(num), _unchunk(den), (S, z)


def linear_attention_chunked(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, eps, chunk_size):
    """Chunks of ``chunk_size`` tokens (the row is padded with masked tokens of its last run)."""
    b, t, h, f = q.shape
    c = min(int(chunk_size), t)
    pad = (-t) % c
    valid = segment_ids != 0
    run = segment_runs(segment_ids)

    def padded(x, value=0):
        return jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2), constant_values=value)

    run_p = jnp.concatenate([run, jnp.repeat(run[:, -1:], pad, axis=1)], axis=1)
    valid_p = padded(valid, False)
    q_p, k_p, v_p = padded(q), padded(k), padded(v)
    enc = (None, None, None) if k_enc is None else (padded(k_enc), padded(v_enc), padded(encoder_mask, False))
    decoder, encoder = _key_sets(k_p, v_p, valid_p, *enc)
    state = zero_state(b, h, f, v.shape[-1]) if initial_state is None else tuple(s.astype(_F32) for s in initial_state)
    forward_sets = [decoder] if encoder is None else [decoder, encoder]
    num, den, final = _chunked_pass(q_p, forward_sets, run_p, state, c, reverse=False)
    if encoder is not None:
        rev_num, rev_den, _ = _chunked_pass(q_p, [encoder], run_p, zero_state(b, h, f, v.shape[-1]), c, reverse=True)
        num, den = num + rev_num, den + rev_den
    return _finish(num[:, :t], den[:, :t], valid, eps, v.dtype), final


def _outer_with_ones(phi: jax.Array, v: jax.Array) -> jax.Array:
    """float32[b t h F (p+1)]: φ(k) ⊗ [v, 1] (the last column carries z)."""
    v1 = jnp.concatenate([v.astype(_F32), jnp.ones(v.shape[:-1] + (1,), _F32)], axis=-1)
    return phi[..., :, None] * v1[..., None, :]


def linear_attention_recurrent(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, initial_state, eps,
                               scan_implementation=None):
    """Feature cumsums S_i (per position) by ``linear_scan`` with a = 1 and resets at run starts."""
    b, t, h, f = q.shape
    p = v.shape[-1]
    valid = segment_ids != 0
    run = segment_runs(segment_ids)
    starts = jnp.concatenate([jnp.zeros((b, 1), bool), run[:, 1:] != run[:, :-1]], axis=1)
    ends = jnp.concatenate([run[:, 1:] != run[:, :-1], jnp.ones((b, 1), bool)], axis=1)
    contrib = _outer_with_ones(taylor_features(k) * valid[..., None, None], v)
    enc = None
    if k_enc is not None:
        enc = _outer_with_ones(taylor_features(k_enc) * (valid & encoder_mask)[..., None, None], v_enc)
        contrib = contrib + enc
    F = contrib.shape[3]
    flat = contrib.reshape(b, t, -1)
    h0 = None
    if initial_state is not None:
        S0, z0 = (s.astype(_F32) for s in initial_state)
        h0 = jnp.concatenate([S0, z0[..., None]], axis=-1).reshape(b, -1)
    ones = jnp.ones_like(flat)
    states, last = linear_scan(ones, flat, h0=h0, reset=starts, implementation=scan_implementation)
    if enc is not None:  # encoder keys after i in i's run: reverse inclusive sums minus position i itself
        enc_flat = enc.reshape(b, t, -1)
        after, _ = linear_scan(ones, enc_flat, reset=ends, reverse=True, implementation=scan_implementation)
        states = states + after - enc_flat
    states = states.reshape(b, t, h, F, p + 1)
    out = jnp.einsum("bthF,bthFp->bthp", taylor_features(q), states)
    last = last.reshape(b, h, F, p + 1)
    return _finish(out[..., :p], out[..., p], valid, eps, v.dtype), (last[..., :p], last[..., p])
