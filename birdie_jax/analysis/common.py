"""Shared pieces of the analysis tools: long rows through the state contract, data, output files.

Long contexts are processed in chunks: ``model(chunk, state=state, return_state=True)``
carries every layer's state from one chunk to the next, so memory is bounded by the chunk
length (plus the KV cache of an attention model). Each chunk is reduced inside ``jit`` (to
per-token losses, last logits or state statistics) so the [b t v] logits never leave it.

Axis legend: b batch (rows), t time, v vocabulary.
"""

import functools
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.errors import BirdieError
from birdie_jax.generation import Sampling, decode, left_pad, prompt_layout
from birdie_jax.models.model import check_token_ids, state_size
from birdie_jax.prompt_format import AUTO, paradigm_id, resolve_format


class AnalysisError(BirdieError, ValueError):
    """An analysis was asked for something it cannot do (bad lengths, model kind, empty data)."""


# --------------------------------------------------------------------------- chunked forward


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_chunk(graphdef, reduce, params, tokens, segments, prefix, extras, state, fresh, restart):
    """One chunk: rows flagged ``restart`` start from ``fresh``; returns (reduce(...), new state)."""

    def pick(s, f):
        return jnp.where(restart.reshape((-1,) + (1,) * (s.ndim - 1)), f, s)

    state = jax.tree.map(pick, state, fresh)
    model = nnx.merge(graphdef, params)
    logits, state = model(tokens, segments, prefix, state=state, return_state=True)
    return reduce(logits, state, extras), state


def run_chunks(model, tokens: np.ndarray, reduce: Callable, *, chunk_len: int, segment_ids: np.ndarray | None = None,
               prefix_mask: np.ndarray | None = None, extras: Any = None, cache_len: int | None = None):
    """Runs rows tokens int[b t] chunk by chunk through the state contract.

    Args:
      model: a :class:`~birdie_jax.models.LanguageModel`.
      tokens: int[b t]; segment_ids: int[b t] (None: one document per row, 0 = padding);
        prefix_mask: bool[b t] or None.
      reduce: ``reduce(logits float32[b c v], state, extras_chunk) -> pytree``, a hashable
        function (module level or ``functools.partial``); runs inside ``jit``.
      chunk_len: tokens per chunk (the last chunk may be shorter).
      extras: pytree of [b t ...] arrays sliced along time with the tokens (e.g. targets).
      cache_len: attention cache length (default: t).

    Returns:
      (list of per-chunk ``reduce`` outputs as numpy, state after the last token).

    A carried state belongs to the document that ends the previous chunk: a row whose next
    chunk starts a different segment restarts from a fresh state, exactly as one pass would.
    """
    tokens = np.asarray(tokens, np.int32)
    check_token_ids(tokens, model.cfg.vocab_size)
    b, t = tokens.shape
    if chunk_len < 1:
        raise AnalysisError(f"chunk length must be >= 1, got {chunk_len}")
    segments = np.ones((b, t), np.int32) if segment_ids is None else np.asarray(segment_ids, np.int32)
    prefix = np.zeros((b, t), bool) if prefix_mask is None else np.asarray(prefix_mask, bool)
    graphdef, params = nnx.split(model)
    fresh = model.init_state(b, cache_len or t)
    state, outputs = fresh, []
    for start in range(0, t, chunk_len):
        stop = min(start + chunk_len, t)
        restart = np.zeros(b, bool) if start == 0 else segments[:, start] != segments[:, start - 1]
        chunk_extras = jax.tree.map(lambda e, start=start, stop=stop: jnp.asarray(e[:, start:stop]), extras)
        out, state = _run_chunk(graphdef, reduce, params, jnp.asarray(tokens[:, start:stop]),
                                jnp.asarray(segments[:, start:stop]), jnp.asarray(prefix[:, start:stop]),
                                chunk_extras, state, fresh, jnp.asarray(restart))
        outputs.append(jax.tree.map(np.asarray, out))
    return outputs, state


def token_nll(logits, state, targets):
    """float32[b c]: −log p(target) at every position of a chunk."""
    del state
    logprobs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logprobs, targets[..., None], axis=-1)[..., 0]


def last_logits(logits, state, extras):
    """float32[b v]: the chunk's last-position logits."""
    del state, extras
    return logits[:, -1].astype(jnp.float32)


def require_recurrent(model, what: str) -> None:
    """Raises AnalysisError unless the model's state has a fixed size (no growing KV cache)."""
    if state_size(model, cache_len=16) != state_size(model, cache_len=1024):
        raise AnalysisError(f"{what} needs a recurrent model with a fixed-size state; "
                            f"{model.cfg.architecture} keeps a cache that grows with the context")


# --------------------------------------------------------------------------- generation


def greedy_continue(model, tokenizer, prompts: Sequence[np.ndarray], max_new_tokens: int, *, chunk_len: int,
                    prompt_as_prefix: bool | None = None, paradigm: str | None = AUTO,
                    batch_size: int = 8) -> list[np.ndarray]:
    """Greedy continuations of token-id prompts, laid out as ``birdie_jax.generation.generate`` does.

    The prompt is prefilled in chunks of ``chunk_len`` through the state contract (one chunk
    when the model has bidirectional layers, whose reverse scans need the whole prefix), then
    decoded with ``birdie_jax.generation.decode``. Each returned row stops after EOS.
    """
    special = tokenizer.special
    fmt = resolve_format(model, prompt_as_prefix, paradigm)
    token = paradigm_id(fmt.paradigm, special)
    sampling = Sampling(stop_ids=(special.eos,))
    graphdef, params = nnx.split(model)
    rows = []
    for start in range(0, len(prompts), batch_size):
        laid_out = [prompt_layout(np.asarray(p, np.int32), special.bg, fmt.as_prefix, token)
                    for p in prompts[start:start + batch_size]]
        longest = max(len(r) for r, _ in laid_out)
        chunk = longest if model.cfg.bidirectional != "none" else min(chunk_len, longest)
        length = -(-longest // chunk) * chunk  # equal chunks: one compilation
        tokens, segments, prefix = left_pad([r for r, _ in laid_out], [m for _, m in laid_out], special.pad, length)
        outputs, state = run_chunks(model, tokens, last_logits, chunk_len=chunk, segment_ids=segments,
                                    prefix_mask=prefix, cache_len=length + max_new_tokens)
        out, _, _ = decode(graphdef, params, jnp.asarray(outputs[-1]), state, jax.random.key(0), max_new_tokens,
                           sampling, special.pad, False)
        for row in np.asarray(out):
            stops = np.flatnonzero(row == special.eos)
            rows.append(row[: stops[0] + 1] if len(stops) else row)
    return rows


# --------------------------------------------------------------------------- data


def document_sequences(documents: Sequence[str], tokenizer, num_sequences: int, length: int,
                       seed: int = 0) -> np.ndarray:
    """int32[num_sequences length]: [BG] then documents joined by EOS, each row from another start.

    The corpus order is shuffled once with ``seed``; row i starts at a different document
    and cycles through the corpus if it is shorter than ``length`` (spec §6.1: sequences made
    by concatenating documents with EOS).
    """
    if not documents:
        raise AnalysisError("no documents to build evaluation sequences from")
    if num_sequences < 1 or length < 1:
        raise AnalysisError(f"need num_sequences >= 1 and length >= 1, got {num_sequences}, {length}")
    order = np.random.default_rng(seed).permutation(len(documents))
    eos = tokenizer.special.eos
    encoded = [np.concatenate([tokenizer.encode(documents[i]), [eos]]).astype(np.int32) for i in order]
    if sum(len(e) for e in encoded) <= 1:
        raise AnalysisError("the documents hold no text")
    rows = np.empty((num_sequences, length), np.int32)
    for r in range(num_sequences):
        pieces, total, d = [np.asarray([tokenizer.special.bg], np.int32)], 1, r * len(encoded) // num_sequences
        while total < length:
            pieces.append(encoded[d % len(encoded)])
            total += len(pieces[-1])
            d += 1
        rows[r] = np.concatenate(pieces)[:length]
    return rows


def as_sequences(sequences, documents, tokenizer, num_sequences: int, length: int, seed: int) -> np.ndarray:
    """Given token rows int[b ≥length] (cut to ``length``) or documents + tokenizer (built)."""
    if sequences is not None:
        rows = np.asarray(sequences)
        if rows.ndim != 2 or not np.issubdtype(rows.dtype, np.integer):
            raise AnalysisError(f"sequences must be int[rows, time] token ids, got {rows.dtype} {rows.shape}")
        if rows.shape[1] < length:
            raise AnalysisError(f"sequences have {rows.shape[1]} tokens; this analysis needs {length}")
        return rows[:, :length].astype(np.int32)
    if documents is None or tokenizer is None:
        raise AnalysisError("give either token sequences or documents with a tokenizer")
    return document_sequences(documents, tokenizer, num_sequences, length, seed)


# --------------------------------------------------------------------------- output


def write_json(out_dir: str, name: str, payload: dict) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)
    return path


def figure(**subplots):
    """A new (fig, ax) with the project's size, on the headless Agg backend (``subplots``: extra
    ``plt.subplots`` arguments, e.g. ``nrows``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt.subplots(**{"figsize": (7, 4.5), "dpi": 110, **subplots})


def save_figure(fig, out_dir: str, name: str) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.png")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def mark_train_len(ax, train_len: int | None) -> None:
    if train_len:
        ax.axvline(train_len, color="grey", ls="--", lw=1, label=f"training length {train_len}")
