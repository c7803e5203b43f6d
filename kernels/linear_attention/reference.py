"""Sequential fp32 oracle for (prefix) linear attention with the Based Taylor feature map.

Per head, at position i of packed row (jrt.md §1.1, §1.3):

    y_i = φ(q_i)·[E_i + S_i] / (φ(q_i)·[e_i + z_i] + eps)

- S_i = Σ φ(k_j) v_jᵀ and z_i = Σ φ(k_j) over valid j ≤ i of i's run (causal decoder term);
- E_i, e_i: the same sums of φ(k_enc,j) v_enc,jᵀ over *every* valid encoder position j of
  i's run, before or after i (the non-causal prefix term of PLA);
- φ(x) = [1, x / f^{1/4}, vec(x⊗x) / (√2·√f)], so φ(q)·φ(k) = 1 + s + s²/2, s = q·k/√f.

A *run* is a maximal stretch of equal segment ids; segment id 0 marks padding, whose keys
are masked after the feature map (they add nothing) and whose outputs are 0. The initial
state (S, z) enters at the first token and belongs to the row's first run; the final state
is the last run's S + E and z + e (what decoding continues from, jrt.md §1.4). This is the
definition every faster form is tested against. Never optimise it.

Axis legend: b batch, t time, h heads, f key/query width, F = 1 + f + f² features,
p value width.
"""

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

_F32 = jnp.float32
State = Tuple[jax.Array, jax.Array]  # (S float32[b h F p], z float32[b h F])


def num_features(f: int) -> int:
    """Dimension of the Taylor feature map of f-wide inputs: 1 + f + f² (273 for f = 16)."""
    return 1 + f + f * f


def taylor_features(x: jax.Array) -> jax.Array:
    """φ(x) [..., 1 + f + f²] of x [..., f]: [1, x/f^{1/4}, vec(x⊗x)/(√2·√f)], in float32 (float64 stays)."""
    x = x.astype(jnp.promote_types(x.dtype, _F32))
    f = x.shape[-1]
    outer = (x[..., :, None] * x[..., None, :]).reshape(*x.shape[:-1], f * f)
    one = jnp.ones(x.shape[:-1] + (1,), x.dtype)
    return jnp.concatenate([one, x / f**0.25, outer / (2.0**0.5 * f**0.5)], axis=-1)


def segment_runs(segment_ids: jax.Array) -> jax.Array:
    """int32[b t]: index of the run (maximal stretch of equal segment ids) holding each token."""
    changed = segment_ids[:, 1:] != segment_ids[:, :-1]
    starts = jnp.concatenate([jnp.zeros((segment_ids.shape[0], 1), bool), changed], axis=1)
    return jnp.cumsum(starts, axis=1, dtype=jnp.int32)


def zero_state(batch: int, heads: int, f: int, p: int) -> State:
    F = num_features(f)
    return jnp.zeros((batch, heads, F, p), _F32), jnp.zeros((batch, heads, F), _F32)


def linear_attention_step(q: jax.Array, k: jax.Array, v: jax.Array, state: State,
                          eps: float = 1e-12) -> Tuple[jax.Array, State]:
    """One decoding token (jrt.md Eq. 2): q, k [b h f], v [b h p] → (y [b h p], new state).

    The state takes the current token first (S += φ(k)vᵀ, z += φ(k)), then
    y = φ(q)·S / (φ(q)·z + eps), in float32; y in the dtype of v.
    """
    S, z = state
    phi_q, phi_k = taylor_features(q), taylor_features(k)
    S = S + phi_k[..., :, None] * v.astype(_F32)[..., None, :]
    z = z + phi_k
    num = jnp.einsum("bhF,bhFp->bhp", phi_q, S)
    den = jnp.einsum("bhF,bhF->bh", phi_q, z)
    return (num / (den + eps)[..., None]).astype(v.dtype), (S, z)


def linear_attention_reference(q, k, v, k_enc=None, v_enc=None, encoder_mask=None, segment_ids=None,
                               initial_state: Optional[State] = None, eps: float = 1e-12):
    """The definition above, one token per ``lax.scan`` step.

    Args:
      q, k: [b t h f]; v: [b t h p]; k_enc [b t h f], v_enc [b t h p] and encoder_mask
      bool[b t] (the prefix positions) or None (plain causal linear attention);
      segment_ids int[b t] (0 = padding) or None; initial_state (S, z) or None.

    Returns:
      (y [b t h p] in the dtype of v, final state (S, z) in float32).
    """
    b, t, h, f = q.shape
    p = v.shape[-1]
    if segment_ids is None:
        segment_ids = jnp.ones((b, t), jnp.int32)
    valid = segment_ids != 0
    run = segment_runs(segment_ids)
    start = jnp.concatenate([jnp.zeros((b, 1), bool), run[:, 1:] != run[:, :-1]], axis=1)
    phi_q = taylor_features(q)
    phi_k = taylor_features(k) * valid[..., None, None]
    v32 = v.astype(_F32)
    F = phi_q.shape[-1]
    if k_enc is None:
        enc_S = jnp.zeros((b, t, h, F, p), _F32)
        enc_z = jnp.zeros((b, t, h, F), _F32)
    else:
        phi_e = taylor_features(k_enc) * (valid & encoder_mask)[..., None, None]
        same_run = (run[:, :, None] == run[:, None, :]).astype(_F32)  # [b i j]
        enc_S = jnp.einsum("bij,bjhF,bjhp->bihFp", same_run, phi_e, v_enc.astype(_F32))
        enc_z = jnp.einsum("bij,bjhF->bihF", same_run, phi_e)
    S, z = zero_state(b, h, f, p) if initial_state is None else tuple(s.astype(_F32) for s in initial_state)

    def step(carry, xs):
        S, z = carry
        phi_q_t, phi_k_t, v_t, start_t, enc_S_t, enc_z_t = xs
        S = jnp.where(start_t[:, None, None, None], 0.0, S) + phi_k_t[..., :, None] * v_t[..., None, :]
        z = jnp.where(start_t[:, None, None], 0.0, z) + phi_k_t
        num = jnp.einsum("bhF,bhFp->bhp", phi_q_t, S + enc_S_t)
        den = jnp.einsum("bhF,bhF->bh", phi_q_t, z + enc_z_t)
        return (S, z), num / (den + eps)[..., None]

    xs = tuple(jnp.swapaxes(x, 0, 1) for x in (phi_q, phi_k, v32, start, enc_S, enc_z))
    (S, z), y = lax.scan(step, (S, z), xs)
    y = jnp.swapaxes(y, 0, 1) * valid[..., None, None]
    return y.astype(v.dtype), (S + enc_S[:, -1], z + enc_z[:, -1])
