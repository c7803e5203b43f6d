"""Hawk ↔ Hugging Face ``RecurrentGemmaForCausalLM`` with every block recurrent.

The two compute the same function when our Hawk has RecurrentGemma's options:
``linear_bias`` (exported as zeros when off), ``rglru_heads`` (1 = dense = one block),
``rglru_reset_multiplier: true``, ``logit_soft_cap``, ``embed_scale: sqrt_d_bf16`` (or any
width whose √d is a bfloat16), tied embeddings, c = 8, tanh-GeLU. RecurrentGemma's RMSNorm
multiplies by 1 + w, ours by the scale s: w = s − 1. Names (ours → HF, layer i):

    embed.embedding                         model.embed_tokens.weight
    final_norm.scale                        model.final_norm.weight            (− 1)
    blocks.i.mixer_norm.scale               model.layers.i.temporal_pre_norm.weight (− 1)
    blocks.i.mlp_norm.scale                 model.layers.i.channel_pre_norm.weight  (− 1)
    blocks.i.mixer.{gate,in,out}_proj       ...temporal_block.linear_{y,x,out}  (kernel transposed)
    blocks.i.mixer.conv.{weight,bias}       ...temporal_block.conv_1d.{weight,bias} (taps reversed)
    blocks.i.mixer.rg_lru.a_param           ...temporal_block.rg_lru.recurrent_param
    blocks.i.mixer.rg_lru.{a,x}_gate        ...rg_lru.{recurrent,input}_gate_{weight,bias} ([h w w], [h w])
    blocks.i.mlp.{gate,up,down}             model.layers.i.mlp_block.{gate,up,down}_proj
"""

import numpy as np

from birdie_jax.config import ModelConfig, round_to_bfloat16
from birdie_jax.convert.layouts import (conv_from_torch, conv_to_torch, linear_from_torch, linear_to_torch,
                                        norm_offset_from_torch, norm_offset_to_torch)
from birdie_jax.errors import CheckpointError

MODEL_TYPE = "recurrent_gemma"
ARCHITECTURE = "RecurrentGemmaForCausalLM"
RGLRU_C = 8.0
ACTIVATION = "gelu_pytorch_tanh"
_LINEARS = {"gate_proj": "linear_y", "in_proj": "linear_x", "out_proj": "linear_out"}
_GATES = {"a_gate": "recurrent_gate", "x_gate": "input_gate"}
_MLP = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}


def export_problems(cfg: ModelConfig) -> list[str]:
    """Every way ``cfg`` differs from what RecurrentGemma computes (empty: exports exactly)."""
    problems = []
    if cfg.bidirectional != "none":
        problems.append(f"model.bidirectional={cfg.bidirectional!r} has no Hugging Face equivalent "
                        "(use --format safetensors and birdie_jax_torch)")
    if cfg.rglru_c != RGLRU_C:
        problems.append(f"model.rglru_c={cfg.rglru_c} (RecurrentGemma: {RGLRU_C})")
    if not cfg.rglru_reset_multiplier:
        problems.append("model.rglru_reset_multiplier=false (RecurrentGemma: true)")
    if cfg.logit_soft_cap is None:
        problems.append("model.logit_soft_cap unset (RecurrentGemma always caps; e.g. 30)")
    if cfg.embedding_scale is None or np.float32(cfg.embedding_scale) != np.float32(round_to_bfloat16(cfg.d_model**0.5)):
        problems.append(f"model.embed_scale={cfg.embed_scale or 'default'} (RecurrentGemma: sqrt_d_bf16)")
    if not cfg.tie_embeddings:
        problems.append("model.tie_embeddings=false (RecurrentGemma ties them)")
    if cfg.mlp != "gelu":
        problems.append(f"model.mlp={cfg.mlp} (RecurrentGemma: gelu)")
    return problems


def to_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], special_ids: dict[str, int]) -> tuple[dict, dict]:
    """(config.json, tensors) of the RecurrentGemma that computes what ``cfg``/``tensors`` do."""
    dtype = "bfloat16" if cfg.param_dtype == "bfloat16" else "float32"
    hf_config = {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "intermediate_size": 2 * cfg.mlp_hidden, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.rglru_heads, "lru_width": cfg.state_dim, "conv1d_width": cfg.conv_width,
        "logits_soft_cap": cfg.logit_soft_cap, "rms_norm_eps": cfg.norm_eps, "hidden_activation": ACTIVATION,
        "block_types": ["recurrent"], "tie_word_embeddings": True, "dtype": dtype,
        "pad_token_id": special_ids.get("[PAD]"), "eos_token_id": special_ids.get("[EOS]"),
        "bos_token_id": special_ids.get("[BG]"),
    }
    out = {"model.embed_tokens.weight": tensors["embed.embedding"],
           "model.final_norm.weight": norm_offset_to_torch(tensors["final_norm.scale"], "final_norm.scale")}
    for i in range(cfg.n_layers):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        rec = hf + "temporal_block."
        for norm, hf_norm in (("mixer_norm", "temporal_pre_norm"), ("mlp_norm", "channel_pre_norm")):
            out[f"{hf}{hf_norm}.weight"] = norm_offset_to_torch(tensors[f"{ours}{norm}.scale"], f"{ours}{norm}.scale")
        linears = {f"{ours}mixer.{k}": rec + v for k, v in _LINEARS.items()}
        linears.update({f"{ours}mlp.{k}": f"{hf}mlp_block.{v}" for k, v in _MLP.items()})
        for name, hf_name in linears.items():
            kernel = tensors[f"{name}.kernel"]
            out[f"{hf_name}.weight"] = linear_to_torch(kernel)
            out[f"{hf_name}.bias"] = tensors.get(f"{name}.bias", np.zeros(kernel.shape[1], kernel.dtype))
        out[rec + "conv_1d.weight"] = conv_to_torch(tensors[f"{ours}mixer.conv.weight"])
        out[rec + "conv_1d.bias"] = tensors[f"{ours}mixer.conv.bias"]
        lru = f"{ours}mixer.rg_lru."
        out[rec + "rg_lru.recurrent_param"] = tensors[lru + "a_param"]
        h, w = cfg.rglru_heads, cfg.state_dim // cfg.rglru_heads
        for gate, hf_gate in _GATES.items():
            out[f"{rec}rg_lru.{hf_gate}_weight"] = tensors[f"{lru}{gate}.kernel"].reshape(h, w, w)
            out[f"{rec}rg_lru.{hf_gate}_bias"] = tensors[f"{lru}{gate}.bias"].reshape(h, w)
    return hf_config, out


def config_from_hf(hf: dict, where: str) -> ModelConfig:
    """Our Hawk config for a RecurrentGemma config.json (every block must be recurrent)."""
    n_layers = int(hf.get("num_hidden_layers", 26))
    block_types = list(hf.get("block_types", ["recurrent", "recurrent", "attention"]))
    layer_types = (block_types * n_layers)[:n_layers]
    if "attention" in layer_types:
        raise CheckpointError(
            f"{where}: layer {layer_types.index('attention')} is a local-attention block (Griffin); birdie_jax "
            "imports RecurrentGemma models whose blocks are all recurrent (Hawk)")
    if hf.get("hidden_activation", ACTIVATION) != ACTIVATION:
        raise CheckpointError(f"{where}: hidden_activation {hf.get('hidden_activation')!r} has no equivalent "
                              f"(birdie_jax: {ACTIVATION})")
    if not hf.get("tie_word_embeddings", True):
        raise CheckpointError(f"{where}: untied embeddings have no equivalent in birdie_jax's Hawk import")
    d = int(hf.get("hidden_size", 2560))
    mlp_hidden = int(hf.get("intermediate_size", 3 * d)) // 2
    width = int(hf.get("lru_width") or d)
    cfg = ModelConfig(
        architecture="hawk", vocab_size=int(hf.get("vocab_size", 256000)), d_model=d, n_layers=n_layers,
        state_dim=width, mlp_expansion=mlp_hidden / d, mlp_multiple=8 if mlp_hidden % 8 == 0 else 1, conv_width=int(hf.get("conv1d_width", 4)), rglru_c=RGLRU_C,
        tie_embeddings=True, param_dtype="float32", embed_scale="sqrt_d_bf16",
        logit_soft_cap=float(hf.get("logits_soft_cap", 30.0)), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        linear_bias=True, rglru_heads=int(hf.get("num_attention_heads", 10)), rglru_reset_multiplier=True)
    if cfg.mlp_hidden != mlp_hidden:
        raise CheckpointError(f"{where}: MLP width {mlp_hidden} cannot be expressed as model.mlp_expansion")
    return cfg


def tensors_from_hf(cfg: ModelConfig, hf: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Our tensors (names of :mod:`birdie_jax.convert.params`) from RecurrentGemma's."""
    hf = dict(hf)
    hf.pop("lm_head.weight", None)  # tied to the embedding

    def take(name: str) -> np.ndarray:
        if name not in hf:
            raise CheckpointError(f"{where}: tensor {name!r} is missing")
        return hf.pop(name)

    out = {"embed.embedding": take("model.embed_tokens.weight"),
           "final_norm.scale": norm_offset_from_torch(take("model.final_norm.weight"))}
    for i in range(cfg.n_layers):
        ours, hf_layer = f"blocks.{i}.", f"model.layers.{i}."
        rec = hf_layer + "temporal_block."
        out[f"{ours}mixer_norm.scale"] = norm_offset_from_torch(take(hf_layer + "temporal_pre_norm.weight"))
        out[f"{ours}mlp_norm.scale"] = norm_offset_from_torch(take(hf_layer + "channel_pre_norm.weight"))
        linears = {f"{ours}mixer.{k}": rec + v for k, v in _LINEARS.items()}
        linears.update({f"{ours}mlp.{k}": f"{hf_layer}mlp_block.{v}" for k, v in _MLP.items()})
        for name, hf_name in linears.items():
            out[f"{name}.kernel"] = linear_from_torch(take(hf_name + ".weight"))
            bias = take(hf_name + ".bias")
            if cfg.linear_bias:
                out[f"{name}.bias"] = bias
            elif np.any(bias):
                raise CheckpointError(f"{where}: {hf_name}.bias is not zero but model.linear_bias is false")
        out[f"{ours}mixer.conv.weight"] = conv_from_torch(take(rec + "conv_1d.weight"))
        out[f"{ours}mixer.conv.bias"] = take(rec + "conv_1d.bias")
        lru = f"{ours}mixer.rg_lru."
        out[lru + "a_param"] = take(rec + "rg_lru.recurrent_param")
        for gate, hf_gate in _GATES.items():
            weight, bias = take(f"{rec}rg_lru.{hf_gate}_weight"), take(f"{rec}rg_lru.{hf_gate}_bias")
            if cfg.rglru_heads == 1:
                weight, bias = weight.reshape(weight.shape[-2:]), bias.reshape(-1)
            out[f"{lru}{gate}.kernel"], out[f"{lru}{gate}.bias"] = weight, bias
    if hf:
        raise CheckpointError(f"{where}: tensor {sorted(hf)[0]!r} has no place in a Hawk model")
    return out

