"""Per-layer mixer patterns (``model.architecture: hybrid``, ``model.layers``), MLP kinds and init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_model_config
from flax import nnx

from birdie_jax.config import ModelConfig, load_config
from birdie_jax.errors import ConfigError
from birdie_jax.models import LanguageModel


def _mixer_names(model):
    return [type(block.mixer).__name__ for block in model.blocks]


def test_pattern_names_each_layer_and_repeats():
    cfg = tiny_model_config("hybrid", n_layers=5, layers=("hawk+mlp", "transformer"))
    model = nnx.eval_shape(lambda: LanguageModel(cfg, rngs=nnx.Rngs(0)))
    assert _mixer_names(model) == ["HawkMixer", "Attention"] * 2 + ["HawkMixer"]
    assert [block.mlp is not None for block in model.blocks] == [True, False, True, False, True]


@pytest.mark.parametrize("overrides, message", [
    (dict(layers=("hawk", "lstm+mlp")), r"model.layers\[1\]: unknown mixer 'lstm\+mlp'"),
    (dict(layers=("hawk+gelu",)), r"model.layers\[0\]: unknown mixer 'hawk\+gelu'"),
    (dict(layers=None), "architecture=hybrid needs model.layers"),
    (dict(layers=("hawk",) * 3, n_layers=2), "names 3 layers, more than model.n_layers=2"),
    (dict(layers=("mamba2", "hawk"), bidirectional="all"), "layer 0 bidirectional, but its mixer mamba2 has no bidirectional"),
])
def test_bad_patterns_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny_model_config("hybrid", **{"layers": ("hawk",), **overrides})


def test_layers_need_the_hybrid_architecture():
    with pytest.raises(ConfigError, match="model.layers is set, so model.architecture must be hybrid"):
        ModelConfig(architecture="hawk", layers=("hawk",))


def test_pattern_from_an_override_string():
    cfg = load_config("hawk_tiny", "model.architecture=hybrid", "model.layers=[hawk+mlp, gated_ssm]")
    assert cfg.model.layers == ("hawk+mlp", "gated_ssm")


def test_swiglu_second_half_is_the_gate():
    cfg = tiny_model_config("hybrid", layers=("gated_ssm+mlp",), mlp="swiglu", mlp_expansion=2, mlp_multiple=32)
    model = LanguageModel(cfg, rngs=nnx.Rngs(0))
    mlp = model.blocks[0].mlp
    hidden = cfg.mlp_hidden
    assert hidden == 64 and mlp.fc1.kernel[...].shape == (32, 2 * hidden)
    x = jax.random.normal(jax.random.key(1), (3, 32))
    h = x @ mlp.fc1.kernel[...]
    y, gate = h[:, :hidden], h[:, hidden:]
    expected = (gate * jax.nn.sigmoid(gate) * y) @ mlp.fc2.kernel[...]
    np.testing.assert_allclose(mlp(x), expected, atol=1e-5, rtol=1e-5)


def test_normal_init_scales_residual_outputs():
    cfg = tiny_model_config("hybrid", layers=("gated_ssm+mlp",), mlp="swiglu", init="normal", d_model=256,
                            n_layers=8, state_dim=256)
    model = LanguageModel(cfg, rngs=nnx.Rngs(0))
    block = model.blocks[0]
    assert float(jnp.std(block.mlp.fc1.kernel[...])) == pytest.approx(0.02, rel=0.05)
    assert float(jnp.std(block.mlp.fc2.kernel[...])) == pytest.approx(0.02 / 4, rel=0.05)
    assert float(jnp.std(block.mixer.out_proj.kernel[...])) == pytest.approx(0.02 / 4, rel=0.05)
