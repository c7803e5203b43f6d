"""State-norm growth (spec §6.5): the std of the whole recurrent state against position.

Rows run through the model in chunks of ``every`` tokens; after each chunk the carried state
(every layer's float entries, the short-conv input history excluded by default) is reduced
to its std per row, then averaged over rows. A model trained only from zero states tends to
grow its state past the training length; state passing keeps it stationary.

Axis legend: b rows, t position, l layers.
"""

import functools
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from birdie_jax.analysis.common import (
    AnalysisError, as_sequences, figure, mark_train_len, require_recurrent, run_chunks, save_figure, write_json)

NAME = "state_norm"
EXCLUDE = ("conv",)


def _layer_entries(layer_state: dict, exclude: tuple[str, ...]) -> list:
    return [v for k, v in sorted(layer_state.items()) if k not in exclude and jnp.issubdtype(v.dtype, jnp.floating)]


def state_std(logits, state, extras, *, exclude: tuple[str, ...] = EXCLUDE):
    """(float32[b] std over every selected entry of every layer, float32[b l] std per layer)."""
    del logits, extras
    flat = [[v.reshape(v.shape[0], -1).astype(jnp.float32) for v in _layer_entries(s, exclude)] for s in state]
    per_layer = jnp.stack([jnp.concatenate(layer, axis=1).std(axis=1) for layer in flat], axis=1)
    return jnp.concatenate([v for layer in flat for v in layer], axis=1).std(axis=1), per_layer


def state_norm(model, sequences=None, *, documents: Sequence[str] | None = None, tokenizer=None, train_len: int,
               max_factor: int = 4, every: int | None = None, num_sequences: int = 16,
               exclude: tuple[str, ...] = EXCLUDE, seed: int = 0, out_dir: str | None = None,
               label: str = "model") -> dict:
    """Mean over rows of the state's std after every ``every`` tokens, up to ``max_factor · train_len``.

    Args:
      model: a LanguageModel with a fixed-size state (any recurrent architecture).
      sequences / documents + tokenizer: the rows (see :func:`~birdie_jax.analysis.common.as_sequences`).
      every: positions between measurements (default train_len // 16, at least 1).
      exclude: state entries left out (by key; default the conv input history).
      out_dir: write ``state_norm.json`` and ``.png`` there (None: write nothing).

    Returns:
      {"train_len", "positions": int[k] (tokens consumed), "std": float[k], "per_layer_std": float[k][l], ...}.
    """
    require_recurrent(model, "state-norm")
    every = every or max(1, train_len // 16)
    length = train_len * max_factor
    rows = as_sequences(sequences, documents, tokenizer, num_sequences, length, seed)
    if not any(_layer_entries(s, tuple(exclude)) for s in jax.eval_shape(lambda: model.init_state(1))):
        raise AnalysisError(f"the state has no float entries outside {exclude}")
    outputs, _ = run_chunks(model, rows, functools.partial(state_std, exclude=tuple(exclude)), chunk_len=every)
    positions = [min((i + 1) * every, length) for i in range(len(outputs))]
    result = {"train_len": train_len, "length": length, "num_sequences": len(rows), "label": label,
              "exclude": list(exclude), "positions": positions,
              "std": [float(o[0].mean()) for o in outputs],
              "per_layer_std": [[float(v) for v in o[1].mean(0)] for o in outputs]}
    if out_dir is not None:
        result["files"] = {"json": write_json(out_dir, NAME, result), "png": plot_state_norm({label: result}, out_dir)}
    return result


def plot_state_norm(results: Mapping[str, dict], out_dir: str, name: str = NAME) -> str:
    """State std against position (linear), training length marked; one curve per model."""
    fig, ax = figure()
    for label, r in results.items():
        ax.plot(r["positions"], r["std"], lw=1.5, label=label)
    mark_train_len(ax, next(iter(results.values()))["train_len"])
    ax.set_xlabel("position t")
    ax.set_ylabel("std of all state entries")
    ax.set_title("state norm")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, out_dir, name)
