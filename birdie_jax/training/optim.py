"""AdamW with warmup + cosine decay, global-norm clipping and a weight-decay mask."""

import jax
import optax

from birdie_jax.config import TrainConfig

# Parameters under these module names never decay: forget gates and RG-LRU parameters
# set memory lengths, and shrinking them towards zero would shorten every memory.
NO_DECAY_MODULES = ("forget_gate", "rg_lru")
NO_DECAY_LEAVES = ("bias", "scale", "a_param")


def learning_rate_schedule(cfg: TrainConfig) -> optax.Schedule:
    warmup = min(cfg.warmup_steps, max(cfg.steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=cfg.learning_rate, warmup_steps=warmup,
        decay_steps=max(cfg.steps, warmup + 1), end_value=cfg.learning_rate * cfg.min_lr_ratio)


def _path_names(path) -> list[str]:
    return [str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path]


def weight_decay_mask(params):
    """True for leaves that decay: matrices outside forget gates / RG-LRU; never norms or biases."""

    def decays(path, leaf) -> bool:
        names = _path_names(path)
        if any(n in NO_DECAY_MODULES for n in names) or names[-1] in NO_DECAY_LEAVES:
            return False
        return getattr(leaf, "ndim", 0) >= 2

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    parts = [optax.clip_by_global_norm(cfg.grad_clip)] if cfg.grad_clip > 0 else []
    parts.append(optax.adamw(learning_rate_schedule(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, mask=weight_decay_mask))
    return optax.chain(*parts)
