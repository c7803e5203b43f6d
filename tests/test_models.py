"""The sequence-mixer contract and the model around it, for every architecture."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ALL_ARCHITECTURES, CONTRACT_MODELS, tiny_model_config
from flax import nnx

from birdie_jax.errors import DataError
from birdie_jax.models import LanguageModel, count_parameters, state_size
from birdie_jax.models.conv import CausalConv1D
from birdie_jax.models.hawk import sqrt_bounded_grad
from birdie_jax.models.layers import positions_from_segments
from birdie_jax.training.optim import weight_decay_mask

B, T = 2, 12
SEGMENTS = np.array([[1] * 4 + [2] * 5 + [3] * 3, [1] * 12], np.int32)  # row 0 packs three documents


def _tokens(seed=0):
    return jnp.asarray(np.random.RandomState(seed).randint(0, 128, (B, T)), jnp.int32)


def _params(model):
    return nnx.split(model)[1]


def _fresh_state(model):
    return model.init_state(B, 64)


@pytest.fixture(scope="module")
def jitted_call(tiny_models):
    """Per architecture: jitted (params, tokens, segment_ids) -> logits, the model's plain call.
    Jitted, a new sequence length compiles the model once, not each of its operations."""
    out = {}
    for arch, model in tiny_models.items():
        def call(params, tokens, segment_ids, graphdef=nnx.graphdef(model)):
            return nnx.merge(graphdef, params)(tokens, segment_ids)

        out[arch] = jax.jit(call)
    return out


@pytest.mark.parametrize("arch", CONTRACT_MODELS)
def test_full_sequence_equals_step_by_step(arch, tiny_models, jitted_forward):
    model = tiny_models[arch]
    forward, step = jitted_forward[arch]
    tokens = _tokens()
    ones = jnp.ones((B, T), jnp.int32)
    full, full_state = forward(_params(model), tokens, ones, _fresh_state(model))
    state = _fresh_state(model)
    stepped = []
    for t in range(T):
        logits, state = step(_params(model), tokens[:, t], state)
        stepped.append(logits)
    np.testing.assert_allclose(np.stack(stepped, 1), full, atol=1e-5, rtol=1e-5)
    chex.assert_trees_all_close(state, full_state, atol=1e-5, rtol=1e-5)  # same structure, every leaf


@pytest.mark.parametrize("arch", CONTRACT_MODELS)
def test_packed_document_equals_document_alone(arch, tiny_models, jitted_call):
    model, call = tiny_models[arch], jitted_call[arch]
    tokens = _tokens(1)
    packed = call(_params(model), tokens, jnp.asarray(SEGMENTS))
    for start, stop in [(0, 4), (4, 9), (9, 12)]:
        alone = call(_params(model), tokens[:1, start:stop], None)
        np.testing.assert_allclose(packed[0, start:stop], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", CONTRACT_MODELS)
def test_other_documents_do_not_change_outputs(arch, tiny_models, jitted_call):
    model, call = tiny_models[arch], jitted_call[arch]
    tokens = _tokens(2)
    changed = tokens.at[0, 0:4].set((tokens[0, 0:4] + 7) % 128).at[0, 9:].set(5)
    a = call(_params(model), tokens, jnp.asarray(SEGMENTS))
    b = call(_params(model), changed, jnp.asarray(SEGMENTS))
    np.testing.assert_array_equal(a[0, 4:9], b[0, 4:9])


@pytest.mark.parametrize("arch", CONTRACT_MODELS)
def test_two_halves_with_carried_state_equal_one_pass(arch, tiny_models, jitted_forward):
    model = tiny_models[arch]
    forward, _ = jitted_forward[arch]
    tokens = _tokens(3)
    segs = jnp.asarray(SEGMENTS)
    one, one_state = forward(_params(model), tokens, segs, _fresh_state(model))
    # The carried state enters at the chunk's first token, which therefore continues a document.
    for cut in (3, 5, 10):  # inside the first, second (one token after its start) and third document
        first, state = forward(_params(model), tokens[:, :cut], segs[:, :cut], _fresh_state(model))
        second, state = forward(_params(model), tokens[:, cut:], segs[:, cut:], state)
        np.testing.assert_allclose(jnp.concatenate([first, second], 1), one, atol=1e-5, rtol=1e-5)
        chex.assert_trees_all_close(state, one_state, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["gated_ssm", "hawk", "mamba2"])
def test_recurrent_state_is_constant_size(arch, tiny_models):
    model = tiny_models[arch]
    short = state_size(model, cache_len=16)
    long = state_size(model, cache_len=4096)
    assert short == long > 0


def test_state_sizes_and_parameter_counts(tiny_models):
    n, layers, width = 24, 2, 4
    assert state_size(tiny_models["gated_ssm"]) == layers * n
    assert state_size(tiny_models["hawk"]) == layers * (n + (width - 1) * n)
    assert state_size(tiny_models["transformer"], cache_len=10) == layers * 2 * 10 * 2 * 16
    heads, head_dim, d_state, conv_dim = 64 // 8, 8, 8, 64 + 2 * 8  # d_inner = 2·32, one group
    assert state_size(tiny_models["mamba2"]) == layers * (heads * head_dim * d_state + (width - 1) * conv_dim)
    for model in tiny_models.values():
        assert count_parameters(model) > 128 * 32


def test_sqrt_bounded_gradient():
    grad = jax.grad(lambda x: sqrt_bounded_grad(x))
    assert float(grad(0.0)) == pytest.approx(1000.0)
    assert float(grad(1.0)) == pytest.approx(0.5)
    assert float(sqrt_bounded_grad(0.25)) == pytest.approx(0.5)


def test_segment_masked_conv_equals_each_sample_separately():
    conv = CausalConv1D(tiny_model_config("hawk"), 6, nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, T, 6))
    packed, _ = conv(x, jnp.asarray(SEGMENTS[:1]), None)
    for start, stop in [(0, 4), (4, 9), (9, 12)]:
        alone, _ = conv(x[:, start:stop], jnp.ones((1, stop - start), jnp.int32), None)
        np.testing.assert_allclose(packed[:, start:stop], alone, atol=1e-6)


def test_positions_restart_per_segment():
    pos = positions_from_segments(jnp.asarray(SEGMENTS))
    np.testing.assert_array_equal(pos[0], [0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(pos[1], np.arange(12))


def test_weight_decay_mask_spares_gates_norms_biases(tiny_models):
    for arch, model in tiny_models.items():
        mask = weight_decay_mask(_params(model))
        flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
        for path, decays in flat.items():
            if any(k in path for k in ("forget_gate", "rg_lru", "scale", "bias")):
                assert not decays, path
        assert any(flat.values())
        if arch == "gated_ssm":
            assert any("forget_gate" in p for p in flat)
        if arch == "hawk":
            assert any("a_param" in p for p in flat)
        if arch == "mamba2":
            for name in ("A_log", "dt_bias", "'D'"):
                assert any(name in p for p in flat) and not any(decays for p, decays in flat.items() if name in p)


def test_out_of_vocabulary_token_is_a_clear_error(tiny_models):
    with pytest.raises(DataError, match="token id 500"):
        tiny_models["hawk"](jnp.asarray([[1, 500]]))


@pytest.mark.parametrize("arch", ALL_ARCHITECTURES)
def test_bfloat16_compute_keeps_float32_logits_and_recurrence(arch):
    model = LanguageModel(tiny_model_config(arch, dtype="bfloat16"), rngs=nnx.Rngs(0))
    logits, state = model(_tokens(), return_state=True)
    assert logits.dtype == jnp.float32 and bool(jnp.isfinite(logits).all())
    # Same float32 parameters, float32 compute: bf16 rounding moves the logits by at most ~3 % of
    # their largest magnitude here (measured 1.3-2.8 %); a wrong computation moves them by > 100 %.
    exact = LanguageModel(tiny_model_config(arch), rngs=nnx.Rngs(0))
    chex.assert_trees_all_equal(nnx.state(model, nnx.Param), nnx.state(exact, nnx.Param))
    want = np.asarray(exact(_tokens()))
    assert np.abs(np.asarray(logits) - want).max() <= 0.06 * np.abs(want).max()
    if arch != "transformer":
        key = "ssm" if arch == "mamba2" else "rnn"
        assert all(s[key].dtype == jnp.float32 for s in state)
