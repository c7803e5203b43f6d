"""The causal conv's hand-written VJP (birdie_jax/models/conv_taps.py) against autodiff of a loop re-derived here.

Oracle: y[b, t] = bias + Σ_j [seg(t − j) == seg(t)]·w[j]·x(t − j), where x(t − j) for t − j < 0
is the carried state's entry (belonging to the row's first segment), then SiLU(y) when asked;
written as a per-token Python loop over plain jnp ops, differentiated by JAX's autodiff.
Values and the gradients of x, the state, the taps and the bias, with packed documents.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from birdie_jax.models.conv_taps import conv_taps

TOL = 1e-5
WIDTH, CHANNELS = 4, 5
SEGMENTS = np.array([[1, 1, 1, 2, 2, 3, 3, 3, 3, 3, 4],
                     [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], np.int32)


def _oracle(x, state, seg, weight, bias, silu):
    b, t, _ = x.shape
    rows = []
    for r in range(b):
        outs = []
        for i in range(t):
            acc = bias
            for j in range(WIDTH):
                src = i - j
                if src >= 0:
                    same, value = seg[r, src] == seg[r, i], x[r, src]
                else:  # the carried entries continue the row's first segment
                    same, value = seg[r, 0] == seg[r, i], state[r, WIDTH - 1 + src]
                if same:
                    acc = acc + weight[j] * value
            outs.append(acc * jax.nn.sigmoid(acc) if silu else acc)
        rows.append(jnp.stack(outs))
    return jnp.stack(rows)


def _ours(x, state, seg, weight, bias, silu):
    history = jnp.concatenate([state, x], axis=1)
    seg_hist = jnp.concatenate([jnp.repeat(seg[:, :1], WIDTH - 1, axis=1), seg], axis=1)
    return conv_taps(history, seg_hist, seg, weight, bias, silu=silu)


def _close(actual, expected, what):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = max(1.0, float(np.max(np.abs(expected))))
    err = float(np.max(np.abs(actual - expected)))
    assert err <= TOL * scale, f"{what}: max |error| {err:.3g} > {TOL} × {scale:.3g}"


@pytest.mark.parametrize("silu", [False, True])
def test_conv_taps_values_and_gradients(silu):
    rng = np.random.RandomState(0)
    b, t = SEGMENTS.shape
    x = jnp.asarray(rng.randn(b, t, CHANNELS), jnp.float32)
    state = jnp.asarray(rng.randn(b, WIDTH - 1, CHANNELS), jnp.float32)
    weight = jnp.asarray(rng.randn(WIDTH, CHANNELS), jnp.float32)
    bias = jnp.asarray(rng.randn(CHANNELS), jnp.float32)
    upstream = jnp.asarray(rng.randn(b, t, CHANNELS), jnp.float32)
    seg = jnp.asarray(SEGMENTS)

    _close(_ours(x, state, seg, weight, bias, silu), _oracle(x, state, SEGMENTS, weight, bias, silu), "values")

    def loss(fn):
        return lambda *args: jnp.sum(fn(args[0], args[1], seg if fn is _ours else SEGMENTS, *args[2:], silu) * upstream)

    got = jax.grad(loss(_ours), argnums=(0, 1, 2, 3))(x, state, weight, bias)
    want = jax.grad(loss(_oracle), argnums=(0, 1, 2, 3))(x, state, weight, bias)
    for name, g, w in zip(["x", "state", "weight", "bias"], got, want):
        _close(g, w, f"d {name}")
