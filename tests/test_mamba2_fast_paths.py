"""Issue 18's Mamba-2 fast paths against oracles re-derived here (values and gradients).

- ``gated_rms_norm`` (hand-written VJP) against autodiff of RMSNorm(y ⊙ SiLU(z))·scale;
- the chunked SSD at a chunk of at most 64 (segment sums by the [q, q²] 0/1 matrix) and
  above 64 (the row form), and with more chunks than the inter-chunk scan unrolls at once,
  with resets and an initial state, against a token-by-token loop.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from birdie_jax.kernels.ssd import ssd
from birdie_jax.models.gated_rms_norm import gated_rms_norm

TOL = 1e-5


def _close(actual, expected, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(actual - expected)))
    assert err <= TOL * scale, f"{what}: max |error| {err:.3g} > {TOL} × {scale:.3g}"


def _norm_oracle(y, z, scale, groups, eps):
    gated = y * (z / (1.0 + jnp.exp(-z)))
    g = gated.reshape(*gated.shape[:-1], groups, -1)
    normed = g / jnp.sqrt(jnp.mean(g**2, axis=-1, keepdims=True) + eps)
    return normed.reshape(gated.shape) * scale


@pytest.mark.parametrize("groups", [1, 2])
def test_gated_rms_norm_values_and_gradients(groups):
    rng = np.random.RandomState(0)
    y, z, w = (jnp.asarray(rng.randn(2, 5, 8), jnp.float32) for _ in range(3))
    scale = jnp.asarray(1.0 + 0.1 * rng.randn(8), jnp.float32)

    def loss(fn):
        return lambda y, z, s: jnp.sum(w * fn(y, z, s, groups, 1e-5))

    _close(gated_rms_norm(y, z, scale, groups, 1e-5), _norm_oracle(y, z, scale, groups, 1e-5), "values")
    grads = jax.grad(loss(gated_rms_norm), argnums=(0, 1, 2))(y, z, scale)
    expected = jax.grad(loss(_norm_oracle), argnums=(0, 1, 2))(y, z, scale)
    for name, g, e in zip(("dy", "dz", "dscale"), grads, expected):
        _close(g, e, name)
    assert gated_rms_norm(y.astype(jnp.bfloat16), z.astype(jnp.bfloat16), scale, groups, 1e-5).dtype == jnp.bfloat16


def _ssd_loop(x, dt, A, B, C, D, h0, reset):
    """h_t = exp(dt_t A)·h_{t−1}·[no reset at t] + dt_t x_t B_tᵀ; y_t = h_t C_t + D x_t (one group)."""

    def step(h, inputs):
        x_t, dt_t, b_t, c_t, r_t = inputs  # [b h p], [b h], [b n], [b n], [b]
        keep = jnp.where(r_t, 0.0, 1.0)[:, None, None, None]
        h = keep * jnp.exp(dt_t * A)[..., None, None] * h + (dt_t[..., None] * x_t)[..., None] * b_t[:, None, None, :]
        return h, jnp.einsum("bhpn,bn->bhp", h, c_t) + D[:, None] * x_t

    seq = (jnp.moveaxis(x, 1, 0), jnp.moveaxis(dt, 1, 0), jnp.moveaxis(B[:, :, 0], 1, 0),
           jnp.moveaxis(C[:, :, 0], 1, 0), jnp.moveaxis(reset, 1, 0))
    final, ys = jax.lax.scan(step, h0, seq)
    return jnp.moveaxis(ys, 0, 1), final


# 0/1-matrix segment sums; the row form; 19 chunks (the scan unrolls 16 per iteration)
@pytest.mark.parametrize("chunk,length", [(8, 19), (72, 80), (2, 37)])
def test_chunked_ssd_equals_loop_in_values_and_gradients(chunk, length):
    rng = np.random.RandomState(1)
    batch, heads, width, size = 2, 2, 3, 4
    f32 = lambda *s: jnp.asarray(rng.randn(*s), jnp.float32)  # noqa: E731
    args = {"x": f32(batch, length, heads, width),
            "dt": jnp.asarray(np.log1p(np.exp(rng.randn(batch, length, heads) - 1.0)), jnp.float32),
            "A": jnp.asarray(-np.exp(rng.rand(heads)), jnp.float32), "B": f32(batch, length, 1, size),
            "C": f32(batch, length, 1, size), "D": f32(heads), "h0": f32(batch, heads, width, size)}
    reset = np.zeros((batch, length), bool)
    reset[0, 5] = reset[0, length - 3] = reset[1, chunk // 2] = True
    reset = jnp.asarray(reset)
    wy, wf = f32(batch, length, heads, width), f32(batch, heads, width, size)

    def chunked(a):
        y, final = ssd(a["x"], a["dt"], a["A"], a["B"], a["C"], D=a["D"], initial_state=a["h0"], reset=reset,
                       chunk_size=chunk, implementation="chunked")
        return jnp.sum(wy * y) + jnp.sum(wf * final), (y, final)

    def loop(a):
        y, final = _ssd_loop(a["x"], a["dt"], a["A"], a["B"], a["C"], a["D"], a["h0"], reset)
        return jnp.sum(wy * y) + jnp.sum(wf * final), (y, final)

    (_, (y, final)), grads = jax.jit(jax.value_and_grad(chunked, has_aux=True))(args)
    (_, (y_ref, final_ref)), grads_ref = jax.jit(jax.value_and_grad(loop, has_aux=True))(args)
    _close(y, y_ref, "y")
    _close(final, final_ref, "final state")
    for name in args:
        _close(grads[name], grads_ref[name], f"d/d{name}")
