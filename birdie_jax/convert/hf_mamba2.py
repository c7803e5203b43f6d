"""Mamba-2 ↔ Hugging Face ``Mamba2ForCausalLM``.

Exact when the embeddings are unscaled (``embed_scale`` none, the Mamba-2 default) and
there is one group (HF's PyTorch path normalises the gated output over all of d_inner,
ours — like mamba_ssm — per group, so only ``mamba_groups: 1`` matches). One epsilon serves
the block, final and gated norms on both sides. Names (ours → HF, layer i):

    embed.embedding                  backbone.embeddings.weight
    head.kernel (untied only)        lm_head.weight                      (transposed)
    final_norm.scale                 backbone.norm_f.weight
    blocks.i.mixer_norm.scale        backbone.layers.i.norm.weight
    blocks.i.mixer.in_proj.kernel    backbone.layers.i.mixer.in_proj.weight (transposed)
    blocks.i.mixer.conv.{weight,bias}  ...mixer.conv1d.{weight,bias}     (taps reversed)
    blocks.i.mixer.{A_log,dt_bias,D} ...mixer.{A_log,dt_bias,D}
    blocks.i.mixer.norm.scale        ...mixer.norm.weight
    blocks.i.mixer.out_proj.kernel   ...mixer.out_proj.weight            (transposed)
"""

import math

import numpy as np

from birdie_jax.config import ModelConfig
from birdie_jax.convert.layouts import conv_from_torch, conv_to_torch, linear_from_torch, linear_to_torch
from birdie_jax.errors import CheckpointError

MODEL_TYPE = "mamba2"
ARCHITECTURE = "Mamba2ForCausalLM"
_SAME = ("A_log", "dt_bias", "D")


def export_problems(cfg: ModelConfig) -> list[str]:
    """Every way ``cfg`` differs from what HF's Mamba2 computes (empty: exports exactly)."""
    problems = []
    if cfg.embedding_scale is not None:
        problems.append(f"model.embed_scale={cfg.embed_scale} (Mamba-2 does not scale its embeddings: none)")
    if cfg.mamba_groups != 1:
        problems.append(f"model.mamba_groups={cfg.mamba_groups} (HF's PyTorch Mamba2 normalises over all groups "
                        "at once; only 1 group converts exactly)")
    if cfg.logit_soft_cap is not None:
        problems.append(f"model.logit_soft_cap={cfg.logit_soft_cap} (Mamba-2 has no soft cap)")
    return problems


def to_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], special_ids: dict[str, int]) -> tuple[dict, dict]:
    d_inner = cfg.mamba_expand * cfg.d_model
    hf_config = {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "num_hidden_layers": cfg.n_layers, "expand": cfg.mamba_expand,
        "head_dim": cfg.mamba_head_dim, "num_heads": d_inner // cfg.mamba_head_dim, "state_size": cfg.mamba_d_state,
        "n_groups": cfg.mamba_groups, "conv_kernel": cfg.conv_width, "chunk_size": cfg.mamba_chunk,
        "layer_norm_epsilon": cfg.norm_eps, "use_bias": False, "use_conv_bias": True, "hidden_act": "silu",
        "residual_in_fp32": True, "tie_word_embeddings": cfg.tie_embeddings,
        "dtype": "bfloat16" if cfg.param_dtype == "bfloat16" else "float32",
        "pad_token_id": special_ids.get("[PAD]"), "eos_token_id": special_ids.get("[EOS]"),
        "bos_token_id": special_ids.get("[BG]"),
    }
    out = {"backbone.embeddings.weight": tensors["embed.embedding"],
           "backbone.norm_f.weight": tensors["final_norm.scale"]}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = linear_to_torch(tensors["head.kernel"])
    for i in range(cfg.n_layers):
        ours, mixer = f"blocks.{i}.", f"backbone.layers.{i}.mixer."
        out[f"backbone.layers.{i}.norm.weight"] = tensors[f"{ours}mixer_norm.scale"]
        out[mixer + "in_proj.weight"] = linear_to_torch(tensors[f"{ours}mixer.in_proj.kernel"])
        out[mixer + "out_proj.weight"] = linear_to_torch(tensors[f"{ours}mixer.out_proj.kernel"])
        out[mixer + "conv1d.weight"] = conv_to_torch(tensors[f"{ours}mixer.conv.weight"])
        out[mixer + "conv1d.bias"] = tensors[f"{ours}mixer.conv.bias"]
        out[mixer + "norm.weight"] = tensors[f"{ours}mixer.norm.scale"]
        for name in _SAME:
            out[mixer + name] = tensors[f"{ours}mixer.{name}"]
    return hf_config, out


def _json_float(value) -> float:
    """A float from config.json, where transformers writes infinity as ``{"__float__": "Infinity"}``."""
    return float(value["__float__"]) if isinstance(value, dict) and "__float__" in value else float(value)


def config_from_hf(hf: dict, where: str) -> ModelConfig:
    """Our Mamba-2 config for a Mamba2 config.json; refuses what has no exact equivalent."""
    if hf.get("use_bias", False):
        raise CheckpointError(f"{where}: use_bias=true (biases on in_proj/out_proj) has no equivalent in birdie_jax")
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"{where}: hidden_act {hf.get('hidden_act')!r} has no equivalent (birdie_jax: silu)")
    limit = [_json_float(v) for v in hf.get("time_step_limit", (0.0, math.inf))]
    if limit != [0.0, math.inf]:
        raise CheckpointError(f"{where}: time_step_limit {limit} has no equivalent (birdie_jax: no dt clamp)")
    groups = int(hf.get("n_groups", 8))
    if groups != 1:
        raise CheckpointError(f"{where}: n_groups={groups}; HF's PyTorch Mamba2 normalises over all groups at once "
                              "and birdie_jax per group, so only n_groups=1 converts exactly")
    d = int(hf.get("hidden_size", 4096))
    expand = hf.get("expand", 2)
    if int(expand) != expand:
        raise CheckpointError(f"{where}: expand={expand} is not an integer (model.mamba_expand)")
    head_dim = int(hf.get("head_dim", 64))
    if int(hf.get("num_heads", 128)) * head_dim != int(expand) * d:
        raise CheckpointError(f"{where}: num_heads·head_dim ≠ expand·hidden_size")
    return ModelConfig(
        architecture="mamba2", vocab_size=int(hf.get("vocab_size", 32768)), d_model=d,
        n_layers=int(hf.get("num_hidden_layers", 64)), mamba_expand=int(expand), mamba_head_dim=head_dim,
        mamba_d_state=int(hf.get("state_size", 128)), mamba_groups=groups, conv_width=int(hf.get("conv_kernel", 4)),
        mamba_chunk=int(hf.get("chunk_size", 256)), norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), embed_scale="none", param_dtype="float32")


def tensors_from_hf(cfg: ModelConfig, hf: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    hf = dict(hf)

    def take(name: str) -> np.ndarray:
        if name not in hf:
            raise CheckpointError(f"{where}: tensor {name!r} is missing")
        return hf.pop(name)

    out = {"embed.embedding": take("backbone.embeddings.weight"), "final_norm.scale": take("backbone.norm_f.weight")}
    head = hf.pop("lm_head.weight", None)
    if not cfg.tie_embeddings:
        if head is None:
            raise CheckpointError(f"{where}: tensor 'lm_head.weight' is missing (tie_word_embeddings is false)")
        out["head.kernel"] = linear_from_torch(head)
    for i in range(cfg.n_layers):
        ours, mixer = f"blocks.{i}.", f"backbone.layers.{i}.mixer."
        out[f"{ours}mixer_norm.scale"] = take(f"backbone.layers.{i}.norm.weight")
        out[f"{ours}mixer.in_proj.kernel"] = linear_from_torch(take(mixer + "in_proj.weight"))
        out[f"{ours}mixer.out_proj.kernel"] = linear_from_torch(take(mixer + "out_proj.weight"))
        out[f"{ours}mixer.conv.weight"] = conv_from_torch(take(mixer + "conv1d.weight"))
        conv_bias = hf.pop(mixer + "conv1d.bias", None)  # use_conv_bias: false → zeros
        out[f"{ours}mixer.conv.bias"] = (np.zeros(out[f"{ours}mixer.conv.weight"].shape[1], np.float32)
                                         if conv_bias is None else conv_bias)
        out[f"{ours}mixer.norm.scale"] = take(mixer + "norm.weight")
        for name in _SAME:
            out[f"{ours}mixer.{name}"] = take(mixer + name)
    if hf:
        raise CheckpointError(f"{where}: tensor {sorted(hf)[0]!r} has no place in a Mamba-2 model")
    return out
