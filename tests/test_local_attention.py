"""The ``swa`` mixer with RecurrentGemma's local-attention options (``n_kv_heads``,
``rotary_fraction``, ``attention_out_bias``): values and gradients equal a sequential
re-derivation on packed rows with padding, and the state contract holds (one-token steps and
a carried state equal one full pass with a window shorter than the row)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.errors import ConfigError
from birdie_jax.models.sliding_window import SlidingWindowAttention

BASE = 10_000.0
# Three packed documents, then padding; one document longer than the window.
SEGMENTS = np.array([[1] * 4 + [2] * 7 + [3] * 2 + [0] * 2])
GRIFFIN = dict(architecture="hybrid", layers=("hawk+mlp", "swa+mlp"), vocab_size=64, d_model=32, n_layers=2,
               state_dim=32, num_heads=4, head_dim=8, swa_window=3, rope_base=BASE)
# RecurrentGemma's (one K/V head) and a grouped form (query heads 0, 1 read K/V head 0; 2, 3 read head 1).
CASES = {"multi_query": dict(n_kv_heads=1, rotary_fraction=0.5, attention_out_bias=True),
         "grouped": dict(n_kv_heads=2, rotary_fraction=0.75, attention_out_bias=True)}


def _mixer(case: str) -> SlidingWindowAttention:
    cfg = ModelConfig(**GRIFFIN, **CASES[case])
    mixer = SlidingWindowAttention(cfg, nnx.Rngs(params=3))
    if cfg.attention_out_bias:  # a non-zero bias, so that it matters
        mixer.out_proj.bias.set_value(jax.random.normal(jax.random.key(9), mixer.out_proj.bias.shape))
    return mixer


def _rotate(vec, position, turned: int):
    """RoPE re-derived (vec [t heads p], position [t 1]): channel i < turned/2 pairs with i + turned/2, angle position·base^(−2i/turned)."""
    half = turned // 2
    angle = position[..., None] * BASE ** (-2.0 * np.arange(half) / turned)
    a, b = vec[..., :half], vec[..., half:turned]
    return jnp.concatenate([a * jnp.cos(angle) - b * jnp.sin(angle), b * jnp.cos(angle) + a * jnp.sin(angle),
                            vec[..., turned:]], -1)


def _reference(params: dict, x, segments: np.ndarray, cfg: ModelConfig):
    """Sequential local attention: query i of head j reads keys of kv head j // (h/g) at earlier
    positions of its document no more than swa_window back (padding reads only itself)."""
    h, g, p = cfg.num_heads, cfg.n_kv_heads, cfg.head_dim
    turned = int(p * cfg.rotary_fraction)
    kv_of_head = np.arange(h) // (h // g)
    rows = []
    for r in range(x.shape[0]):
        positions = []
        for i, s in enumerate(segments[r]):
            positions.append(0 if i == 0 or s != segments[r][i - 1] else positions[-1] + 1)
        qkv = x[r] @ params["qkv"]
        where = np.asarray(positions)[:, None]  # [t 1]
        q_all = _rotate(qkv[:, :h * p].reshape(-1, h, p), where, turned)
        k_all = _rotate(qkv[:, h * p:(h + g) * p].reshape(-1, g, p), where, turned)[:, kv_of_head]  # [t h p]
        v_all = qkv[:, (h + g) * p:].reshape(-1, g, p)[:, kv_of_head]
        outputs = []
        for i in range(x.shape[1]):
            visible = np.asarray([j for j in range(i + 1) if j == i or (
                segments[r][j] == segments[r][i] != 0 and positions[i] - positions[j] <= cfg.swa_window)])
            weights = jax.nn.softmax(jnp.einsum("hp,nhp->hn", q_all[i], k_all[visible]) / np.sqrt(p), axis=-1)
            heads = jnp.einsum("hn,nhp->hp", weights, v_all[visible])
            outputs.append(heads.reshape(-1) @ params["out"] + params.get("bias", 0.0))
        rows.append(jnp.stack(outputs))
    return jnp.stack(rows)


def _reference_params(state) -> dict:
    pure = nnx.to_pure_dict(state)
    params = {"qkv": pure["qkv_proj"]["kernel"], "out": pure["out_proj"]["kernel"]}
    if "bias" in pure["out_proj"]:
        params["bias"] = pure["out_proj"]["bias"]
    return params


@pytest.mark.parametrize("case", ["grouped"])  # one K/V head is the grouped form's simplest case
def test_values_and_gradients_equal_the_sequential_reference(case):
    mixer = _mixer(case)
    cfg = mixer.cfg
    graphdef, state = nnx.split(mixer)
    x = jax.random.normal(jax.random.key(1), (*SEGMENTS.shape, cfg.d_model))
    weights = jax.random.normal(jax.random.key(2), x.shape) * (SEGMENTS > 0)[..., None]  # loss on real tokens
    assert _reference_params(state)["qkv"].shape == (cfg.d_model, (cfg.num_heads + 2 * cfg.n_kv_heads) * cfg.head_dim)

    def ours(state, x):
        return nnx.merge(graphdef, state)(x, segment_ids=jnp.asarray(SEGMENTS))[0]

    def theirs(state, x):
        return _reference(_reference_params(state), x, SEGMENTS, cfg)

    def loss(forward):
        def weighted(state, x):
            y = forward(state, x)
            return jnp.sum(y * weights), y
        return jax.jit(jax.value_and_grad(weighted, argnums=(0, 1), has_aux=True))

    (_, y_ours), grad_ours = loss(ours)(state, x)
    (_, y_ref), grad_ref = loss(theirs)(state, x)
    real = SEGMENTS > 0
    np.testing.assert_allclose(np.asarray(y_ours)[real], np.asarray(y_ref)[real], atol=1e-5, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(nnx.to_pure_dict(grad_ours[0])) + [grad_ours[1]],
                    jax.tree.leaves(nnx.to_pure_dict(grad_ref[0])) + [grad_ref[1]]):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["multi_query"])
def test_steps_and_carried_state_equal_one_pass(case):
    mixer = _mixer(case)
    graphdef, params = nnx.split(mixer)
    forward = jax.jit(lambda x, seg, st: nnx.merge(graphdef, params)(x, segment_ids=seg, state=st))
    step = jax.jit(lambda x, st: nnx.merge(graphdef, params).step(x, st))
    t = 11  # longer than the window of 3 + the current token
    x = jax.random.normal(jax.random.key(4), (2, t, mixer.cfg.d_model))
    ones = jnp.ones((2, t), jnp.int32)
    full, _ = forward(x, ones, None)
    assert mixer.init_state(2)["k"].shape == (2, mixer.cfg.swa_window, mixer.cfg.n_kv_heads, mixer.cfg.head_dim)
    first, state = forward(x[:, :6], ones[:, :6], None)
    second, _ = forward(x[:, 6:], ones[:, 6:], state)  # initial state in, final state out
    np.testing.assert_allclose(np.concatenate([first, second], 1), full, atol=1e-5)
    state = mixer.init_state(2)
    for i in range(t):
        y, state = step(x[:, i], state)
        np.testing.assert_allclose(y, full[:, i], atol=1e-5)


@pytest.mark.parametrize("overrides, message", [
    (dict(n_kv_heads=3), "model.n_kv_heads=3 must divide model.num_heads=4"),
    (dict(rotary_fraction=0.3), "must be even and > 0"),
    (dict(rotary_fraction=1.5), "model.rotary_fraction must be in \\(0, 1\\]"),
    (dict(layers=("hawk+mlp",), attention_out_bias=True), "model.attention_out_bias only apply to swa layers"),
])
def test_bad_local_attention_options_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**{**GRIFFIN, "head_dim": 10, **overrides})


def test_defaults_leave_the_layer_as_before():
    cfg = ModelConfig(**GRIFFIN)
    assert (cfg.kv_heads, cfg.rotary_dim, cfg.attention_out_bias) == (4, 8, False)
    mixer = SlidingWindowAttention(cfg, nnx.Rngs(params=0))
    assert mixer.qkv_proj.kernel.shape == (32, 3 * 32) and mixer.out_proj.bias is None
