"""``birdie-jax import``: a safetensors or Hugging Face folder as a run folder.

The run folder holds one checkpoint (step 0, fresh optimizer) and ``config.yaml``, so
``train --init_from``, ``generate``, ``eval`` and ``analyze`` take it like any trained run.
The tokenizer is the folder's own (``birdie_jax.json`` / config.json record, else its
``tokenizer.json`` or ``tokenizer.model``, else bytes) unless one is given; when its
vocabulary with the reserved special ids is larger than the model's, the embedding (and
head) gain zero rows for the new ids. The folder appears only when complete.
"""

import dataclasses
import json
import os

import numpy as np

from birdie_jax.config import Config, DataConfig, ModelConfig, TrainConfig, config_from_dict, config_to_yaml
from birdie_jax.convert import files, hf_mamba2, hf_recurrentgemma
from birdie_jax.convert import tokenizers as tokenizer_files
from birdie_jax.convert.export import NATIVE_FORMAT, SIDECAR_FILE
from birdie_jax.errors import BirdieError, CheckpointError

SOURCES = ("auto", "safetensors", "hf")
HF_MODEL_TYPES = {hf_recurrentgemma.MODEL_TYPE: hf_recurrentgemma, hf_mamba2.MODEL_TYPE: hf_mamba2}


@dataclasses.dataclass
class ConvertedModel:
    """A model read from a folder: config, tensors by our names, and the tokenizer record (or None)."""

    config: ModelConfig
    tensors: dict[str, np.ndarray]
    tokenizer: dict | None


def _model_config(record: dict, where: str) -> ModelConfig:
    if not isinstance(record.get("model"), dict):
        raise CheckpointError(f"{where} has no 'model' section")
    try:
        return config_from_dict({"model": record["model"]}, where=where).model
    except BirdieError as e:
        raise CheckpointError(str(e)) from None


def read_folder(folder: str, source: str = "auto") -> ConvertedModel:
    """Reads a birdie_jax safetensors folder or a Hugging Face RecurrentGemma/Mamba2 folder."""
    if source not in SOURCES:
        raise CheckpointError(f"unknown import source {source!r}; use one of {', '.join(SOURCES)}")
    config = files.read_config_json(folder)
    where = os.path.join(folder, files.CONFIG_FILE)
    kind = "safetensors" if config.get("format") == NATIVE_FORMAT else "hf" if "model_type" in config else None
    if kind is None:
        raise CheckpointError(f"{where} is neither a birdie_jax safetensors config (format: {NATIVE_FORMAT}) nor a "
                              "Hugging Face config (model_type)")
    if source != "auto" and source != kind:
        raise CheckpointError(f"{folder} is a {kind} folder, not {source}")
    if kind == "safetensors":
        return ConvertedModel(_model_config(config, where), files.read_tensors(folder), config.get("tokenizer"))
    converter = HF_MODEL_TYPES.get(config["model_type"])
    if converter is None:
        raise CheckpointError(f"{where}: model_type {config['model_type']!r} has no birdie_jax equivalent "
                              f"(importable: {', '.join(HF_MODEL_TYPES)})")
    sidecar_path = os.path.join(folder, SIDECAR_FILE)
    sidecar = None
    if os.path.isfile(sidecar_path):
        with open(sidecar_path, encoding="utf-8") as f:
            sidecar = json.load(f)
        cfg = _model_config(sidecar, sidecar_path)
    else:
        cfg = converter.config_from_hf(config, where)
    tensors = converter.tensors_from_hf(cfg, files.read_tensors(folder), folder)
    return ConvertedModel(cfg, tensors, None if sidecar is None else sidecar.get("tokenizer"))


def _grow_vocabulary(model: ConvertedModel, vocab_size: int) -> ConvertedModel:
    """Zero embedding/head rows for ids past the model's vocabulary (the tokenizer's special ids)."""
    extra = vocab_size - model.config.vocab_size
    tensors = dict(model.tensors)
    tensors["embed.embedding"] = np.pad(tensors["embed.embedding"], ((0, extra), (0, 0)))
    if "head.kernel" in tensors:
        tensors["head.kernel"] = np.pad(tensors["head.kernel"], ((0, 0), (0, extra)))
    return dataclasses.replace(model, config=dataclasses.replace(model.config, vocab_size=vocab_size), tensors=tensors)


def import_checkpoint(source: str, out: str, from_: str = "auto", *, tokenizer: str | None = None,
                      num_sentinels: int | None = None, seed: int = 0) -> str:
    """Turns the folder ``source`` into the new run folder ``out``; returns ``out``.

    Args:
      source: a folder written by :func:`birdie_jax.export` or a Hugging Face folder
        (RecurrentGemma: Hawk or Griffin; Mamba2) holding config.json and safetensors.
      out: the run folder to create (must not exist).
      from_: ``auto``, ``safetensors`` or ``hf``.
      tokenizer: a tokenizer spec (``byte``, a tokenizers JSON or SentencePiece file) instead of the folder's.
      num_sentinels: size of the sentinel pool (default: the folder's, else 100).
      seed: the run's seed (its optimizer starts fresh).
    """
    from flax import nnx  # noqa: PLC0415 — JAX only once the input has been read

    from birdie_jax.convert.params import load_parameters
    from birdie_jax.models import build_model
    from birdie_jax.tokenizer import build_tokenizer
    from birdie_jax.training.checkpoint import Checkpointer
    from birdie_jax.training.initial_state import init_extras
    from birdie_jax.training.optim import make_optimizer
    from birdie_jax.training.step import init_train_state

    files.check_output_folder(out)
    model = read_folder(source, from_)
    if tokenizer is None:
        spec, sentinels = tokenizer_files.find(source, model.tokenizer, num_sentinels)
    else:
        spec, sentinels = tokenizer, num_sentinels or 100
    tok = build_tokenizer(spec, num_sentinels=sentinels)
    if tok.vocab_size > model.config.vocab_size:
        model = _grow_vocabulary(model, tok.vocab_size)
    lm = load_parameters(build_model(model.config, seed=seed), model.tensors, source)
    out = os.path.abspath(out)
    final_spec = spec if spec == "byte" else os.path.join(out, os.path.basename(tokenizer_files.describe(tok)["file"]))
    cfg = Config(name=os.path.basename(out), seed=seed, model=model.config,
                 data=DataConfig(tokenizer=final_spec, num_sentinels=sentinels), train=TrainConfig(run_dir=out))
    tok_record = {**tok.to_dict(), "spec": final_spec}
    with files.output_folder(out) as tmp:
        tokenizer_files.copy_file(tok, tmp)
        with open(os.path.join(tmp, "config.yaml"), "w", encoding="utf-8") as f:
            f.write(config_to_yaml(cfg))
        params = nnx.split(lm)[1]  # the layout load_checkpoint restores into
        extras = init_extras(cfg.initial_state, lm.init_state(cfg.data.batch_size))
        state = init_train_state(params, make_optimizer(cfg.train), seed, extras)
        checkpointer = Checkpointer(os.path.join(tmp, "checkpoints"), keep=1)
        try:
            checkpointer.save(0, state, None, {"config": cfg.to_dict(), "tokenizer": tok_record, "imported_from":
                                               os.path.abspath(source)})
        finally:
            checkpointer.close()
    return out
