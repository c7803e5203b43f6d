"""birdie_jax_torch: PyTorch modules loaded from a safetensors export compute our logits (fp32,
1e-4) on packed rows with padding and prefix masks — bidirectional layers, the JRT-RNN / Based
hybrid and Griffin included — generate the same greedy prefix-LM continuations, and never import JAX."""

import ast
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_lm, tiny_model_config
from flax import nnx

torch = pytest.importorskip("torch", reason="the PyTorch modules need the torch extra (pip install -e .[torch])")

import birdie_jax_torch  # noqa: E402
from birdie_jax.convert import export  # noqa: E402
from birdie_jax.generation import generate  # noqa: E402
from birdie_jax.inference import LoadedRun  # noqa: E402
from birdie_jax.models import LanguageModel  # noqa: E402
from birdie_jax.tokenizer import build_tokenizer  # noqa: E402

BYTES = build_tokenizer("byte")
TOL = 1e-4
# Two rows: three packed samples then padding; one sample with a long prefix.
SEGMENTS = np.array([[1] * 5 + [2] * 6 + [3] * 2 + [0] * 3, [1] * 16])
PREFIX = np.array([[1, 1, 0, 0, 0] + [1, 1, 1, 0, 0, 0] + [0, 0] + [0] * 3, [1] * 7 + [0] * 9], bool)
# Bidirectional settings cover causal layers too ("alternate": odd layers are causal).
SETTINGS = [("gated_ssm", "alternate"), ("hawk", "all"), ("transformer", "alternate"), ("mamba2", "none"),
            ("hawk_recurrentgemma", "alternate"), ("jrt_hybrid", "none"), ("griffin", "none")]
# JRT-RNN / Based layers (issue 11) with every other hybrid mixer, a SwiGLU MLP and a short window.
JRT_LAYERS = ("gated_conv+mlp", "pla+mlp", "swa+mlp", "based", "gated_ssm_plus+mlp")


def _model(arch: str, bidirectional: str) -> LanguageModel:
    if arch == "hawk_recurrentgemma":  # block-diagonal gates, biases, β reset, soft cap, bf16 embedding scale
        cfg = tiny_model_config("hawk", vocab_size=384, bidirectional=bidirectional, rglru_heads=3, linear_bias=True,
                                rglru_reset_multiplier=True, logit_soft_cap=5.0, embed_scale="sqrt_d_bf16")
        return LanguageModel(cfg, rngs=nnx.Rngs(params=7))
    if arch == "griffin":  # RecurrentGemma's local multi-query attention between Hawk layers
        cfg = tiny_model_config("hybrid", vocab_size=384, layers=("hawk+mlp", "swa+mlp"), n_layers=2, swa_window=3,
                                n_kv_heads=1, rotary_fraction=0.5, attention_out_bias=True, rglru_heads=2,
                                linear_bias=True, rglru_reset_multiplier=True, logit_soft_cap=5.0, mlp="gelu")
        return LanguageModel(cfg, rngs=nnx.Rngs(params=4))
    if arch == "jrt_hybrid":
        cfg = tiny_model_config("hybrid", vocab_size=384, layers=JRT_LAYERS, n_layers=5, mlp="swiglu", la_feature_dim=4,
                                swa_window=3, embed_scale=False, norm_eps=1e-5)
        return LanguageModel(cfg, rngs=nnx.Rngs(params=2))
    return tiny_lm(arch, bidirectional)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """(arch, bidirectional) → (our model, the PyTorch model loaded from its safetensors export)."""
    root = tmp_path_factory.mktemp("torch")
    out = {}
    for arch, bidirectional in SETTINGS:
        model = _model(arch, bidirectional)
        folder = export(LoadedRun(None, BYTES, model, 0), str(root / f"{arch}_{bidirectional}"))
        out[arch, bidirectional] = (model, birdie_jax_torch.from_safetensors(folder))
    return out


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_torch_logits_match_on_packed_prefix_rows(pairs, arch, bidirectional):
    model, torch_model = pairs[arch, bidirectional]
    tokens = np.random.default_rng(0).integers(0, 256, SEGMENTS.shape)
    ours = np.asarray(model(jnp.asarray(tokens), jnp.asarray(SEGMENTS), jnp.asarray(PREFIX)))
    with torch.no_grad():
        theirs = torch_model(torch.tensor(tokens), torch.tensor(SEGMENTS), torch.tensor(PREFIX)).numpy()
    assert np.abs(ours - theirs)[SEGMENTS > 0].max() < TOL


@pytest.mark.parametrize("arch, bidirectional", [("hawk", "all"), ("transformer", "alternate"),
                                                 ("jrt_hybrid", "none")])
def test_prefix_lm_greedy_generation_is_identical(pairs, arch, bidirectional):
    model, torch_model = pairs[arch, bidirectional]
    prompt = np.frombuffer(b"Birds sing", np.uint8).astype(np.int32)
    ours = generate(model, [prompt], 16, tokenizer=BYTES, prompt_as_prefix=True).tokens[0]
    assert len(ours) >= 4 and torch_model.generate(prompt.tolist(), 16, as_prefix=True) == ours.tolist()


def test_package_never_imports_jax():
    root = os.path.dirname(birdie_jax_torch.__file__)
    allowed = {"torch", "safetensors", "json", "os", "birdie_jax_torch"}
    for name in os.listdir(root):
        if name.endswith(".py"):
            tree = ast.parse(open(os.path.join(root, name), encoding="utf-8").read())
            for node in ast.walk(tree):
                modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                           else [node.module] if isinstance(node, ast.ImportFrom) else [])
                for module in modules:
                    assert module.split(".")[0] in allowed, f"{name} imports {module}"


def test_from_safetensors_refuses_other_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        birdie_jax_torch.from_safetensors(str(tmp_path))
    (tmp_path / "config.json").write_text('{"model_type": "mamba2"}')
    with pytest.raises(ValueError, match="not written by birdie-jax export"):
        birdie_jax_torch.from_safetensors(str(tmp_path))
    shutil.rmtree(tmp_path)
