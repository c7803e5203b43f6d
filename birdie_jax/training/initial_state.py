"""Initial-state interventions for recurrent training (arXiv 2507.02782, spec §3).

Every recurrent mixer takes an initial state and returns its final state, so all four
interventions are functions of the model's state pytree (a list with one dict per layer):

* ``random_noise``: recurrent leaves ~ N(0, σ), conv buffers zero;
* ``fitted_noise``: recurrent leaves ~ N(mean, std) per layer and head, the statistics
  fitted online (Chan's parallel update, float32) to the final states seen in training;
* ``state_passing``: row i starts from ``stop_gradient`` of row i's final state of the
  previous batch (optionally reset to zero per row with ``reset_prob``);
* ``tbtt``: the same carry, fed by a data pipeline whose rows continue their documents
  from batch to batch; a row whose first token starts a new document starts from zero.

Recurrent leaves are the ``"rnn"`` (Gated SSM, Hawk: [b n], one head) and ``"ssm"``
(Mamba-2: [b h p n], per head) entries; ``"conv"`` entries are short-convolution buffers.
The carried state and the statistics live in the train state, so Orbax checkpoints them
and a resumed run continues bit-identically.
"""

from typing import Any

import jax
import jax.numpy as jnp

from birdie_jax.config import InitialStateConfig
from birdie_jax.errors import ConfigError

RECURRENT_KEYS = ("rnn", "ssm")
CONV_KEY = "conv"

State = list[dict[str, jax.Array]]


def check_supported(kind: str, zero_state: State, architecture: str) -> None:
    """Interventions need recurrent layers; an attention cache has no state to intervene on."""
    if kind == "zero":
        return
    if not all(any(k in layer for k in RECURRENT_KEYS) for layer in zero_state):
        raise ConfigError(f"initial_state={kind} needs recurrent layers (gated_ssm, hawk, mamba2); "
                          f"model.architecture={architecture} has none")


def _heads(leaf: jax.Array) -> int:
    """Heads of a recurrent leaf: axis 1 of a [b h p n] state, else one."""
    return leaf.shape[1] if leaf.ndim == 4 else 1


def _per_head(values: jax.Array, leaf: jax.Array) -> jax.Array:
    """Broadcasts a per-head vector [h] against a recurrent leaf."""
    return values.reshape((1, -1) + (1,) * (leaf.ndim - 2)) if leaf.ndim == 4 else values.reshape((1,) * leaf.ndim)


def init_statistics(zero_state: State) -> State:
    """Empty running statistics {count, mean[h], m2[h]} per layer (recurrent leaf)."""
    out = []
    for layer in zero_state:
        key = next(k for k in RECURRENT_KEYS if k in layer)
        h = _heads(layer[key])
        out.append({"count": jnp.zeros((), jnp.float32), "mean": jnp.zeros((h,), jnp.float32),
                    "m2": jnp.zeros((h,), jnp.float32)})
    return out


def update_statistics(stats: State, final_state: State, rows: jax.Array | None = None) -> State:
    """Merges the batch's final states into the running statistics (Chan et al.).

    ``rows`` bool[b] selects the rows whose states count (None: all); a batch without any
    leaves the statistics unchanged.
    """
    out = []
    for s, layer in zip(stats, final_state):
        key = next(k for k in RECURRENT_KEYS if k in layer)
        x = layer[key].astype(jnp.float32)
        axes = tuple(i for i in range(x.ndim) if not (x.ndim == 4 and i == 1))
        w = jnp.ones(x.shape[0], jnp.float32) if rows is None else rows.astype(jnp.float32)
        w = jnp.broadcast_to(w.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
        n_b = w.sum(axis=axes).reshape(-1)
        safe = jnp.maximum(n_b, 1.0)
        mean_b = (w * x).sum(axis=axes).reshape(-1) / safe
        m2_b = (w * (x - _per_head(mean_b, x)) ** 2).sum(axis=axes).reshape(-1)
        n = s["count"] + n_b
        delta = mean_b - s["mean"]
        share = n_b / jnp.maximum(n, 1.0)
        out.append({"count": n[0], "mean": s["mean"] + delta * share,
                    "m2": s["m2"] + m2_b + delta**2 * s["count"] * share})
    return out


def statistics_std(stats: State) -> list[jax.Array]:
    """Per-layer, per-head standard deviations of the fitted statistics."""
    return [jnp.sqrt(s["m2"] / jnp.maximum(s["count"], 1.0)) for s in stats]


def _noise_state(zero_state: State, key: jax.Array, mean_std) -> State:
    """Recurrent leaves ~ N(mean, std) (mean/std per layer, broadcast per head); conv zero."""
    out = []
    for i, layer in enumerate(zero_state):
        key, sub = jax.random.split(key)
        new = dict(layer)
        for k in RECURRENT_KEYS:
            if k in layer:
                mean, std = mean_std(i, layer[k])
                new[k] = mean + std * jax.random.normal(sub, layer[k].shape, jnp.float32)
        out.append(new)
    return out


def _where_rows(keep: jax.Array, state: State, zero_state: State, carry_conv: bool) -> State:
    """Per row: the carried state where keep [b] is True, else zeros (conv per carry_conv)."""
    out = []
    for layer, zero in zip(state, zero_state):
        new = {}
        for k, v in layer.items():
            if k == CONV_KEY and not carry_conv:
                new[k] = zero[k]
                continue
            mask = keep.reshape((-1,) + (1,) * (v.ndim - 1))
            new[k] = jnp.where(mask, v, zero[k]).astype(zero[k].dtype)
        out.append(new)
    return out


def initial_state(cfg: InitialStateConfig, zero_state: State, extras: dict[str, Any], key: jax.Array,
                  batch: dict[str, jax.Array]) -> State | None:
    """The state each row of ``batch`` starts from (None: zeros, the plain forward)."""
    kind = cfg.kind
    if kind == "zero":
        return None
    if kind == "random_noise":
        return _noise_state(zero_state, key, lambda i, leaf: (0.0, cfg.noise_std))
    if kind == "fitted_noise":
        stds = statistics_std(extras["stats"])
        return _noise_state(zero_state, key, lambda i, leaf: (_per_head(extras["stats"][i]["mean"], leaf),
                                                             _per_head(stds[i], leaf)))
    batch_size = jax.tree.leaves(zero_state)[0].shape[0]
    if kind == "state_passing":
        keep = jax.random.uniform(key, (batch_size,)) >= cfg.reset_prob
    else:  # tbtt: rows whose first token continues the previous chunk's document
        keep = batch["continues"].astype(bool)
    return _where_rows(keep, extras["carry"], zero_state, cfg.carry_conv_state)


def init_extras(cfg: InitialStateConfig, zero_state: State) -> dict[str, Any]:
    """The train-state entries an intervention keeps: carried states and/or statistics."""
    extras: dict[str, Any] = {}
    if cfg.kind in ("state_passing", "tbtt"):
        extras["carry"] = zero_state
    if cfg.kind == "fitted_noise":
        extras["stats"] = init_statistics(zero_state)
    return extras


def update_extras(cfg: InitialStateConfig, extras: dict[str, Any], final_state: State,
                  rows: jax.Array | None = None) -> dict[str, Any]:
    """After a step: carry the (gradient-stopped) final state; fold it into the statistics.

    ``rows`` bool[b] marks the rows whose final state qualifies (see :mod:`birdie_jax.training.carry`;
    None: all). A row that does not keeps its previous carry (``carry_fallback=previous``) or
    carries zeros, and adds nothing to the statistics.
    """
    final_state = jax.lax.stop_gradient(final_state)
    new = dict(extras)
    if "carry" in extras:
        carry = jax.tree.map(lambda f, c: f.astype(c.dtype), final_state, extras["carry"])
        if rows is not None:
            fallback = extras["carry"] if cfg.carry_fallback == "previous" else jax.tree.map(
                jnp.zeros_like, extras["carry"])
            carry = jax.tree.map(lambda f, p: jnp.where(rows.reshape((-1,) + (1,) * (f.ndim - 1)), f, p),
                                 carry, fallback)
        new["carry"] = carry
    if "stats" in extras and not cfg.freeze_stats:
        new["stats"] = update_statistics(extras["stats"], final_state, rows)
    return new
