"""``birdie-jax export``: a run's model as a safetensors folder or a Hugging Face folder.

``safetensors`` (any architecture): ``model.safetensors`` with every parameter under its
dotted name (see :mod:`birdie_jax.convert.params`), ``config.json`` (format, model config,
tokenizer with every reserved special id) and the tokenizer file. ``hf``: a folder that
``transformers`` loads with ``from_pretrained`` — Hawk and Griffin (a hybrid of ``hawk+mlp``
and ``swa+mlp`` layers) as ``RecurrentGemmaForCausalLM``, Mamba-2 as ``Mamba2ForCausalLM`` —
plus ``birdie_jax.json`` (our config and tokenizer, so that importing it back restores the
same model). The folder appears only when complete.
"""

import dataclasses

from birdie_jax.config import ModelConfig
from birdie_jax.convert import files, hf_mamba2, hf_recurrentgemma
from birdie_jax.convert import tokenizers as tokenizer_files
from birdie_jax.convert.params import named_parameters
from birdie_jax.errors import CheckpointError

FORMATS = ("safetensors", "hf")
NATIVE_FORMAT = "birdie_jax"
FORMAT_VERSION = 1
SIDECAR_FILE = "birdie_jax.json"
HF_CONVERTERS = {"hawk": hf_recurrentgemma, "hybrid": hf_recurrentgemma, "mamba2": hf_mamba2}


def hf_converter(cfg: ModelConfig):
    """The module that maps ``cfg`` to Hugging Face; CheckpointError naming every mismatch."""
    converter = HF_CONVERTERS.get(cfg.architecture)
    if converter is None:
        raise CheckpointError(f"{cfg.architecture} has no Hugging Face equivalent; export it with --format "
                              "safetensors and load it with birdie_jax_torch")
    problems = converter.export_problems(cfg)
    if problems:
        raise CheckpointError(f"this {cfg.architecture} model does not convert exactly to {converter.ARCHITECTURE}: "
                              + "; ".join(problems))
    return converter


def derived_shapes(cfg: ModelConfig) -> dict:
    """Values the model computes from its config, written out so that readers (birdie_jax_torch)
    need not re-derive them."""
    layers = range(cfg.n_layers)
    return {"mlp_hidden": cfg.mlp_hidden, "embedding_scale": cfg.embedding_scale, "norm_eps": cfg.norm_eps,
            "layer_mixers": [cfg.layer_mixer(i) for i in layers], "layer_mlps": [cfg.layer_has_mlp(i) for i in layers],
            "bidirectional_layers": [cfg.layer_is_bidirectional(i) for i in layers]}


def export(checkpoint, out: str, format: str = "safetensors", step: int | None = None) -> str:
    """Writes the model of ``checkpoint`` (a run folder or a loaded run) to the new folder ``out``.

    Args:
      checkpoint: a run folder (or its ``checkpoints/``), or a :class:`~birdie_jax.inference.LoadedRun`.
      out: the folder to create (must not exist).
      format: ``safetensors`` (any architecture) or ``hf`` (Hawk, Griffin, Mamba-2).
      step: checkpoint step (default: latest).

    Returns the folder written.
    """
    if format not in FORMATS:
        raise CheckpointError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    files.check_output_folder(out)
    if isinstance(checkpoint, str):
        from birdie_jax.inference import load_checkpoint  # noqa: PLC0415 — loads JAX and Orbax

        run = load_checkpoint(checkpoint, step)
    else:
        run = checkpoint
    cfg, tokenizer = run.model.cfg, run.tokenizer
    converter = hf_converter(cfg) if format == "hf" else None
    tensors = named_parameters(run.model)
    record = {"format": NATIVE_FORMAT, "format_version": FORMAT_VERSION, "step": int(run.step),
              "model": dataclasses.asdict(cfg), "derived": derived_shapes(cfg),
              "tokenizer": tokenizer_files.describe(tokenizer)}
    if converter is not None:
        hf_config, hf_tensors = converter.to_hf(cfg, tensors, record["tokenizer"]["special_ids"])
    with files.output_folder(out) as tmp:
        tokenizer_files.copy_file(tokenizer, tmp)
        if converter is None:
            record["parameters"] = {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in tensors.items()}
            files.write_tensors(f"{tmp}/{files.WEIGHTS_FILE}", tensors, {"format": NATIVE_FORMAT})
            files.write_json(f"{tmp}/{files.CONFIG_FILE}", record)
        else:
            files.write_tensors(f"{tmp}/{files.WEIGHTS_FILE}", hf_tensors, {"format": "pt"})
            files.write_json(f"{tmp}/{files.CONFIG_FILE}", hf_config)
            files.write_json(f"{tmp}/{SIDECAR_FILE}", record)
    return out
