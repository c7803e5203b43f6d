"""Post-training from a pretrained run (``init_from``, arXiv 2507.02782 §4): adopt its model,
load its parameters and noise statistics, or fit the statistics when it has none."""

import dataclasses

import jax

from birdie_jax.config import Config, ModelConfig, config_from_dict
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.data.stream_rows import StreamRows
from birdie_jax.training import initial_state as interventions
from birdie_jax.training.carry import real_text_state
from birdie_jax.training.checkpoint import Checkpointer, find_checkpoint_dir
from birdie_jax.training.step import batch_loss


#: Model fields a post-training recipe may change: they leave every parameter's shape alone.
RECIPE_MODEL_FIELDS = ("rope_scaling", "max_len")


def adopt_source_model(cfg: Config) -> Config:
    """Post-training (``init_from``): the model and tokenizer are the source checkpoint's, so a
    recipe config (configs/lengthgen/*.yaml) applies to any pretrained run."""
    source = Checkpointer(find_checkpoint_dir(cfg.init_from), read_only=True)
    try:
        meta = source.read_meta()
    finally:
        source.close()
    source_cfg = config_from_dict(meta["config"], where=f"{cfg.init_from} (saved config)")
    default = ModelConfig()
    # Fields that change no parameter shape may be set by the recipe (e.g. RoPE scaling to a longer context).
    recipe = {f: getattr(cfg.model, f) for f in RECIPE_MODEL_FIELDS if getattr(cfg.model, f) != getattr(default, f)}
    return dataclasses.replace(cfg, model=dataclasses.replace(source_cfg.model, **recipe), data=dataclasses.replace(
        cfg.data, tokenizer=source_cfg.data.tokenizer, num_sentinels=source_cfg.data.num_sentinels))


def initialise_from(cfg: Config, model, extras: dict):
    """Post-training: start from another run's parameters and, when it fitted them, its noise
    statistics. The optimizer, step and data start afresh."""
    from birdie_jax.inference import load_checkpoint  # noqa: PLC0415 — avoids an import cycle

    source = load_checkpoint(cfg.init_from)
    if "stats" in extras and "stats" in source.extras:
        extras = {**extras, "stats": source.extras["stats"]}
    return source.model, extras


def calibrate_statistics(cfg: Config, tokenizer, documents, graphdef, params, stats):
    """Fits the noise statistics on zero-state forward passes over training batches (spec §3.2), laid out
    as training lays them out; only states of real text count (:mod:`birdie_jax.training.carry`)."""
    shape = dict(seq_len=cfg.data.seq_len, batch_size=cfg.data.batch_size, seed=cfg.seed + 1, shuffle=True)
    batches = StreamRows(documents, tokenizer, **shape) if cfg.data.packing == "stream" else \
        make_batch_iterator(documents, tokenizer, **shape)
    min_fraction = cfg.initial_state.min_carry_fraction

    @jax.jit
    def fold(stats, batch):
        _, aux = batch_loss(graphdef, params, batch, return_state=True)
        state, rows = real_text_state(graphdef, params, batch, aux["final_state"], min_fraction)
        return interventions.update_statistics(stats, state, rows)

    for _ in range(cfg.initial_state.calibration_batches):
        batch = {k: jax.numpy.asarray(v) for k, v in next(batches).items() if k != "continues"}
        stats = fold(stats, batch)
    return stats
