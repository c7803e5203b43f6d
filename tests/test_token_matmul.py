"""Token projections run as one 2-D matmul: same values and gradients as the per-token formula."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.models.token_matmul import TokenLinear, tied_logits

TOL = 1e-5


def _close(actual, expected, what):
    actual, expected = np.asarray(actual), np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(actual - expected).max()) <= TOL * scale, what


def test_token_linear_and_tied_logits_match_the_formula_in_values_and_gradients():
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.randn(2, 5, 6), jnp.float32)
    table = jnp.asarray(rng.randn(7, 6), jnp.float32)
    w_out = jnp.asarray(rng.randn(2, 5, 4), jnp.float32)
    w_logits = jnp.asarray(rng.randn(2, 5, 7), jnp.float32)
    layer = TokenLinear(6, 4, use_bias=True, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(layer)

    def loss(params, x, table):
        y = nnx.merge(graphdef, params)(x)
        return jnp.sum(y * w_out) + jnp.sum(tied_logits(x, table) * w_logits)

    def oracle(params, x, table):  # y[b, t, o] = Σ_d x[b, t, d] W[d, o] + bias[o], token by token
        kernel, bias = params["kernel"][...], params["bias"][...]
        y = jnp.stack([jnp.stack([x[b, t] @ kernel + bias for t in range(x.shape[1])]) for b in range(x.shape[0])])
        logits = jnp.stack([jnp.stack([table @ x[b, t] for t in range(x.shape[1])]) for b in range(x.shape[0])])
        return jnp.sum(y * w_out) + jnp.sum(logits * w_logits)

    with jax.default_matmul_precision("highest"):
        value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, x, table)
        ref, ref_grads = jax.jit(jax.value_and_grad(oracle, argnums=(0, 1, 2)))(params, x, table)
    _close(value, ref, "value")
    for (path, g), r in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(ref_grads), strict=True):
        _close(g, r, f"d/d{jax.tree_util.keystr(path)}")
    assert layer(x[0, 0]).shape == (4,) and layer(x[0]).shape == (5, 4)  # 1-D and 2-D inputs unchanged
