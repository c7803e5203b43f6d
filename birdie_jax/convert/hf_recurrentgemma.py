"""Hawk and Griffin ↔ Hugging Face ``RecurrentGemmaForCausalLM``.

RecurrentGemma's blocks are ``recurrent`` (our ``hawk`` mixer) or ``attention`` (our ``swa``
mixer with RecurrentGemma's options), each followed by the gated MLP: an all-recurrent
model is our ``hawk`` architecture, a Griffin model our ``hybrid`` with ``layers`` naming
``hawk+mlp`` / ``swa+mlp`` per block. The two compute the same function when our model has
RecurrentGemma's options: ``linear_bias`` (exported as zeros when off), ``rglru_heads``
(1 = dense = one block), ``rglru_reset_multiplier: true``, ``logit_soft_cap``,
``embed_scale: sqrt_d_bf16`` (or any width whose √d is a bfloat16), tied embeddings, c = 8,
tanh-GeLU; for attention blocks ``n_kv_heads`` (num_key_value_heads), ``rotary_fraction``
(partial_rotary_factor), ``rope_base`` (rope_theta), ``attention_out_bias`` (exported as
zeros when off), head_dim = d_model // num_heads, num_heads = rglru_heads (HF has one
num_attention_heads for both) and ``swa_window`` = attention_window_size − 1 (HF's window
counts the current token, ours the tokens before it). RecurrentGemma's RMSNorm multiplies by
1 + w, ours by the scale s: w = s − 1. Names (ours → HF, layer i):

    embed.embedding                         model.embed_tokens.weight
    final_norm.scale                        model.final_norm.weight            (− 1)
    blocks.i.mixer_norm.scale               model.layers.i.temporal_pre_norm.weight (− 1)
    blocks.i.mlp_norm.scale                 model.layers.i.channel_pre_norm.weight  (− 1)
    blocks.i.mixer.{gate,in,out}_proj       ...temporal_block.linear_{y,x,out}  (kernel transposed)
    blocks.i.mixer.conv.{weight,bias}       ...temporal_block.conv_1d.{weight,bias} (taps reversed)
    blocks.i.mixer.rg_lru.a_param           ...temporal_block.rg_lru.recurrent_param
    blocks.i.mixer.rg_lru.{a,x}_gate        ...rg_lru.{recurrent,input}_gate_{weight,bias} ([h w w], [h w])
    blocks.i.mixer.qkv_proj.kernel          ...temporal_block.{q,k,v}_proj.weight (columns q | k | v, transposed)
    blocks.i.mixer.out_proj.{kernel,bias}   ...temporal_block.o_proj.{weight,bias}
    blocks.i.mlp.{gate,up,down}             model.layers.i.mlp_block.{gate,up,down}_proj
"""

import numpy as np

from birdie_jax.config import ModelConfig, round_to_bfloat16
from birdie_jax.convert.layouts import (conv_from_torch, conv_to_torch, linear_from_torch, linear_to_torch,
                                        norm_offset_from_torch, norm_offset_to_torch)
from birdie_jax.errors import CheckpointError, ConfigError

MODEL_TYPE = "recurrent_gemma"
ARCHITECTURE = "RecurrentGemmaForCausalLM"
RGLRU_C = 8.0
ACTIVATION = "gelu_pytorch_tanh"
_LINEARS = {"gate_proj": "linear_y", "in_proj": "linear_x", "out_proj": "linear_out"}
_GATES = {"a_gate": "recurrent_gate", "x_gate": "input_gate"}
_MLP = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
# RecurrentGemma block type ↔ our mixer (every block has an MLP).
BLOCK_MIXERS = {"recurrent": "hawk", "attention": "swa"}
_BLOCK_TYPES = {mixer: block for block, mixer in BLOCK_MIXERS.items()}
ROPE_TYPE = "default"


def export_problems(cfg: ModelConfig) -> list[str]:
    """Every way ``cfg`` differs from what RecurrentGemma computes (empty: exports exactly)."""
    problems = []
    if cfg.bidirectional != "none":
        problems.append(f"model.bidirectional={cfg.bidirectional!r} has no Hugging Face equivalent "
                        "(use --format safetensors and birdie_jax_torch)")
    mixers = [cfg.layer_mixer(i) for i in range(cfg.n_layers)]
    for i, mixer in enumerate(mixers):
        if mixer not in _BLOCK_TYPES or not cfg.layer_has_mlp(i):
            problems.append(f"layer {i} is {mixer}{'+mlp' if cfg.layer_has_mlp(i) else ''} (RecurrentGemma blocks: "
                            "hawk+mlp, swa+mlp)")
            break
    if "hawk" not in mixers:
        problems.append("no hawk layer (birdie_jax converts RecurrentGemma models with recurrent blocks)")
    else:
        if cfg.rglru_c != RGLRU_C:
            problems.append(f"model.rglru_c={cfg.rglru_c} (RecurrentGemma: {RGLRU_C})")
        if not cfg.rglru_reset_multiplier:
            problems.append("model.rglru_reset_multiplier=false (RecurrentGemma: true)")
    if "swa" in mixers:
        problems += _attention_problems(cfg, "hawk" in mixers)
    if cfg.logit_soft_cap is None:
        problems.append("model.logit_soft_cap unset (RecurrentGemma always caps; e.g. 30)")
    if cfg.embedding_scale is None or np.float32(cfg.embedding_scale) != np.float32(round_to_bfloat16(cfg.d_model**0.5)):
        problems.append(f"model.embed_scale={cfg.embed_scale or 'default'} (RecurrentGemma: sqrt_d_bf16)")
    if not cfg.tie_embeddings:
        problems.append("model.tie_embeddings=false (RecurrentGemma ties them)")
    if cfg.mlp != "gelu":
        problems.append(f"model.mlp={cfg.mlp} (RecurrentGemma: gelu)")
    return problems


def _attention_problems(cfg: ModelConfig, has_recurrent: bool) -> list[str]:
    """How the ``swa`` layers differ from RecurrentGemma's local attention."""
    problems = []
    if cfg.head_dim != cfg.d_model // cfg.num_heads:
        problems.append(f"model.head_dim={cfg.head_dim} (RecurrentGemma: d_model // num_heads = "
                        f"{cfg.d_model // cfg.num_heads})")
    if has_recurrent and cfg.rglru_heads != cfg.num_heads:
        problems.append(f"model.rglru_heads={cfg.rglru_heads} differs from model.num_heads={cfg.num_heads} "
                        "(RecurrentGemma has one num_attention_heads for both)")
    return problems


def _layer_types(cfg: ModelConfig) -> list[str]:
    return [_BLOCK_TYPES[cfg.layer_mixer(i)] for i in range(cfg.n_layers)]


def to_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], special_ids: dict[str, int]) -> tuple[dict, dict]:
    """(config.json, tensors) of the RecurrentGemma that computes what ``cfg``/``tensors`` do."""
    dtype = "bfloat16" if cfg.param_dtype == "bfloat16" else "float32"
    layer_types = _layer_types(cfg)
    hf_config = {
        "architectures": [ARCHITECTURE], "model_type": MODEL_TYPE, "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model, "intermediate_size": 2 * cfg.mlp_hidden, "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.rglru_heads, "lru_width": cfg.state_dim, "conv1d_width": cfg.conv_width,
        "logits_soft_cap": cfg.logit_soft_cap, "rms_norm_eps": cfg.norm_eps, "hidden_activation": ACTIVATION,
        "block_types": ["recurrent"], "tie_word_embeddings": True, "dtype": dtype,
        "pad_token_id": special_ids.get("[PAD]"), "eos_token_id": special_ids.get("[EOS]"),
        "bos_token_id": special_ids.get("[BG]"),
    }
    if "attention" in layer_types:
        hf_config.update({
            "block_types": layer_types, "num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.kv_heads,
            "attention_window_size": cfg.swa_window + 1, "attention_bias": False,
            "rope_parameters": {"rope_type": ROPE_TYPE, "rope_theta": cfg.rope_base,
                                "partial_rotary_factor": cfg.rotary_fraction}})
    out = {"model.embed_tokens.weight": tensors["embed.embedding"],
           "model.final_norm.weight": norm_offset_to_torch(tensors["final_norm.scale"], "final_norm.scale")}
    for i, layer_type in enumerate(layer_types):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        block = hf + "temporal_block."
        for norm, hf_norm in (("mixer_norm", "temporal_pre_norm"), ("mlp_norm", "channel_pre_norm")):
            out[f"{hf}{hf_norm}.weight"] = norm_offset_to_torch(tensors[f"{ours}{norm}.scale"], f"{ours}{norm}.scale")
        linears = {f"{ours}mlp.{k}": f"{hf}mlp_block.{v}" for k, v in _MLP.items()}
        if layer_type == "attention":
            linears[f"{ours}mixer.out_proj"] = block + "o_proj"
            q, k, v = np.split(tensors[f"{ours}mixer.qkv_proj.kernel"], _qkv_split(cfg), axis=1)
            out.update({f"{block}{name}_proj.weight": linear_to_torch(w) for name, w in zip("qkv", (q, k, v))})
        else:
            linears.update({f"{ours}mixer.{k}": block + v for k, v in _LINEARS.items()})
            out.update(_recurrent_to_hf(cfg, tensors, f"{ours}mixer.", block))
        for name, hf_name in linears.items():
            kernel = tensors[f"{name}.kernel"]
            out[f"{hf_name}.weight"] = linear_to_torch(kernel)
            out[f"{hf_name}.bias"] = tensors.get(f"{name}.bias", np.zeros(kernel.shape[1], kernel.dtype))
    return hf_config, out


def _qkv_split(cfg: ModelConfig) -> list[int]:
    """Column offsets of k and v in our ``qkv_proj`` kernel (q | k | v)."""
    q_width, kv_width = cfg.num_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    return [q_width, q_width + kv_width]


def _recurrent_to_hf(cfg: ModelConfig, tensors: dict[str, np.ndarray], mixer: str, block: str) -> dict:
    """A recurrent block's conv and RG-LRU tensors under HF's names."""
    out = {block + "conv_1d.weight": conv_to_torch(tensors[mixer + "conv.weight"]),
           block + "conv_1d.bias": tensors[mixer + "conv.bias"],
           block + "rg_lru.recurrent_param": tensors[mixer + "rg_lru.a_param"]}
    h, w = cfg.rglru_heads, cfg.state_dim // cfg.rglru_heads
    for gate, hf_gate in _GATES.items():
        out[f"{block}rg_lru.{hf_gate}_weight"] = tensors[f"{mixer}rg_lru.{gate}.kernel"].reshape(h, w, w)
        out[f"{block}rg_lru.{hf_gate}_bias"] = tensors[f"{mixer}rg_lru.{gate}.bias"].reshape(h, w)
    return out


def config_from_hf(hf: dict, where: str) -> ModelConfig:
    """Our config for a RecurrentGemma config.json: Hawk when every block is recurrent, else a
    hybrid of ``hawk+mlp`` and ``swa+mlp`` layers (Griffin)."""
    n_layers = int(hf.get("num_hidden_layers", 26))
    block_types = list(hf.get("block_types", ["recurrent", "recurrent", "attention"]))[:n_layers]
    unknown = [b for b in block_types if b not in BLOCK_MIXERS]
    if unknown or not block_types:
        raise CheckpointError(f"{where}: block_types {block_types} (birdie_jax maps {', '.join(BLOCK_MIXERS)})")
    if "recurrent" not in block_types:
        raise CheckpointError(f"{where}: every block is attention; birdie_jax imports RecurrentGemma models with "
                              "recurrent blocks (Hawk, Griffin)")
    if hf.get("hidden_activation", ACTIVATION) != ACTIVATION:
        raise CheckpointError(f"{where}: hidden_activation {hf.get('hidden_activation')!r} has no equivalent "
                              f"(birdie_jax: {ACTIVATION})")
    if not hf.get("tie_word_embeddings", True):
        raise CheckpointError(f"{where}: untied embeddings have no equivalent in birdie_jax's RecurrentGemma import")
    d = int(hf.get("hidden_size", 2560))
    mlp_hidden = int(hf.get("intermediate_size", 3 * d)) // 2
    width = int(hf.get("lru_width") or d)
    heads = int(hf.get("num_attention_heads", 10))
    fields = dict(
        architecture="hawk", vocab_size=int(hf.get("vocab_size", 256000)), d_model=d, n_layers=n_layers,
        state_dim=width, mlp_expansion=mlp_hidden / d, mlp_multiple=8 if mlp_hidden % 8 == 0 else 1, conv_width=int(hf.get("conv1d_width", 4)), rglru_c=RGLRU_C,
        tie_embeddings=True, param_dtype="float32", embed_scale="sqrt_d_bf16",
        logit_soft_cap=float(hf.get("logits_soft_cap", 30.0)), norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        linear_bias=True, rglru_heads=heads, rglru_reset_multiplier=True)
    if "attention" in block_types:
        fields.update(architecture="hybrid", layers=tuple(f"{BLOCK_MIXERS[b]}+mlp" for b in block_types),
                      **_attention_fields(hf, d, heads, where))
    try:
        cfg = ModelConfig(**fields)
    except ConfigError as e:
        raise CheckpointError(f"{where}: {e}") from None
    if cfg.mlp_hidden != mlp_hidden:
        raise CheckpointError(f"{where}: MLP width {mlp_hidden} cannot be expressed as model.mlp_expansion")
    return cfg


def _attention_fields(hf: dict, d: int, heads: int, where: str) -> dict:
    """Our ``swa`` options for RecurrentGemma's local attention blocks (rope in ``rope_parameters``, or
    top-level ``rope_theta`` / ``partial_rotary_factor`` as the released checkpoints' config.json has them)."""
    if hf.get("attention_bias", False):
        raise CheckpointError(f"{where}: attention_bias=true (biases on q/k/v) has no equivalent in birdie_jax's "
                              "swa layers")
    rope = dict(hf.get("rope_parameters") or {})
    if rope.get("rope_type", ROPE_TYPE) != ROPE_TYPE:
        raise CheckpointError(f"{where}: rope_type {rope['rope_type']!r} has no equivalent (birdie_jax: {ROPE_TYPE})")
    fraction = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 0.5))
    window = int(hf.get("attention_window_size", 2048))
    if window < 2:
        raise CheckpointError(f"{where}: attention_window_size={window} (birdie_jax's swa layers see at least one "
                              "token before the current one)")
    return dict(num_heads=heads, head_dim=d // heads, n_kv_heads=int(hf.get("num_key_value_heads") or heads),
                rotary_fraction=float(fraction), rope_base=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
                swa_window=window - 1, attention_out_bias=True)


def tensors_from_hf(cfg: ModelConfig, hf: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
    """Our tensors (names of :mod:`birdie_jax.convert.params`) from RecurrentGemma's."""
    hf = dict(hf)
    hf.pop("lm_head.weight", None)  # tied to the embedding

    def take(name: str) -> np.ndarray:
        if name not in hf:
            raise CheckpointError(f"{where}: tensor {name!r} is missing")
        return hf.pop(name)

    def take_bias(name: str, hf_name: str, kept: bool) -> None:
        bias = take(hf_name + ".bias")
        if kept:
            out[f"{name}.bias"] = bias
        elif np.any(bias):
            raise CheckpointError(f"{where}: {hf_name}.bias is not zero but this model has no bias there")

    out = {"embed.embedding": take("model.embed_tokens.weight"),
           "final_norm.scale": norm_offset_from_torch(take("model.final_norm.weight"))}
    for i in range(cfg.n_layers):
        ours, hf_layer = f"blocks.{i}.", f"model.layers.{i}."
        block = hf_layer + "temporal_block."
        out[f"{ours}mixer_norm.scale"] = norm_offset_from_torch(take(hf_layer + "temporal_pre_norm.weight"))
        out[f"{ours}mlp_norm.scale"] = norm_offset_from_torch(take(hf_layer + "channel_pre_norm.weight"))
        linears = {f"{ours}mlp.{k}": f"{hf_layer}mlp_block.{v}" for k, v in _MLP.items()}
        if cfg.layer_mixer(i) == "swa":
            out[f"{ours}mixer.qkv_proj.kernel"] = np.concatenate(
                [linear_from_torch(take(f"{block}{name}_proj.weight")) for name in "qkv"], axis=1)
            out[f"{ours}mixer.out_proj.kernel"] = linear_from_torch(take(block + "o_proj.weight"))
            take_bias(f"{ours}mixer.out_proj", block + "o_proj", cfg.attention_out_bias)
        else:
            linears.update({f"{ours}mixer.{k}": block + v for k, v in _LINEARS.items()})
            out.update(_recurrent_from_hf(cfg, take, f"{ours}mixer.", block))
        for name, hf_name in linears.items():
            out[f"{name}.kernel"] = linear_from_torch(take(hf_name + ".weight"))
            take_bias(name, hf_name, cfg.linear_bias)
    if hf:
        raise CheckpointError(f"{where}: tensor {sorted(hf)[0]!r} has no place in this {cfg.architecture} model")
    return out


def _recurrent_from_hf(cfg: ModelConfig, take, mixer: str, block: str) -> dict[str, np.ndarray]:
    """A recurrent block's conv and RG-LRU tensors under our names."""
    out = {mixer + "conv.weight": conv_from_torch(take(block + "conv_1d.weight")),
           mixer + "conv.bias": take(block + "conv_1d.bias"),
           mixer + "rg_lru.a_param": take(block + "rg_lru.recurrent_param")}
    for gate, hf_gate in _GATES.items():
        weight, bias = take(f"{block}rg_lru.{hf_gate}_weight"), take(f"{block}rg_lru.{hf_gate}_bias")
        if cfg.rglru_heads == 1:
            weight, bias = weight.reshape(weight.shape[-2:]), bias.reshape(-1)
        out[f"{mixer}rg_lru.{gate}.kernel"], out[f"{mixer}rg_lru.{gate}.bias"] = weight, bias
    return out
