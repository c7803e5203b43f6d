"""Effective Remembrance (spec §5): how much the first t tokens still move the prediction at T.

EffRem_T(t) = TV(q(·|x[0:T]), q(·|x[t:T])), TV(q, q′) = ½ Σ_v |q(v) − q′(v)|, where q(·|ctx) is
the next-token distribution after ctx (softmax in float32 over the full vocabulary). 0 means
x[0:t] is effectively forgotten; EffRem_T(0) = 0 by construction. Each suffix x[t:T] is
left-padded to T with padding (segment 0, which every mixer ignores), so all suffixes share
one shape and run in batches through the state contract.

Axis legend: b rows, t position, v vocabulary.
"""

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from birdie_jax.analysis.common import (
    AnalysisError, as_sequences, figure, last_logits, mark_train_len, run_chunks, save_figure, write_json)

NAME = "effrem"


def effrem_grid(context_len: int, num_points: int = 64, num_last: int = 64) -> np.ndarray:
    """int[k]: t on ``num_points`` evenly spaced points of [0, T) plus each of the last ``num_last`` positions."""
    even = np.floor(np.linspace(0, context_len, num_points, endpoint=False)).astype(int)
    last = np.arange(max(0, context_len - num_last), context_len)
    return np.unique(np.concatenate([even, last]))


def total_variation(logits_a: np.ndarray, logits_b: np.ndarray) -> np.ndarray:
    """float[...]: ½ Σ_v |softmax(a) − softmax(b)| over the last axis, in float64 from float32 logits."""
    def softmax(z):
        z = np.asarray(z, np.float64)
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return 0.5 * np.abs(softmax(logits_a) - softmax(logits_b)).sum(-1)


def suffix_rows(sequence: np.ndarray, ts: Sequence[int], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens int[k T], segment_ids int[k T]): row j is x[t_j:T] left-padded with ``pad_id`` (segment 0)."""
    length = len(sequence)
    tokens = np.full((len(ts), length), pad_id, np.int32)
    segments = np.zeros((len(ts), length), np.int32)
    for j, t in enumerate(ts):
        tokens[j, t:] = sequence[t:]
        segments[j, t:] = 1
    return tokens, segments


def effrem_curve(next_logits: Callable[[np.ndarray, np.ndarray], np.ndarray], sequences: np.ndarray,
                 ts: Sequence[int], pad_id: int, batch_size: int = 16) -> np.ndarray:
    """float[n k]: EffRem_T(t) for every sequence (rows of length T) and every t in ``ts``.

    ``next_logits(tokens int[r T], segment_ids int[r T]) -> float[r v]`` gives the logits
    after each row's last token (the definition needs nothing else of the model).
    """
    ts = [int(t) for t in ts]
    if any(not 0 <= t < sequences.shape[1] for t in ts):
        raise AnalysisError(f"every t must lie in [0, {sequences.shape[1]}), got {ts}")
    curves = np.zeros((len(sequences), len(ts)))
    for i, seq in enumerate(sequences):
        tokens, segments = suffix_rows(seq, [0] + ts, pad_id)
        logits = np.concatenate([next_logits(tokens[s:s + batch_size], segments[s:s + batch_size])
                                 for s in range(0, len(tokens), batch_size)])
        curves[i] = total_variation(logits[:1], logits[1:])
    return curves


def effrem(model, sequences=None, *, documents: Sequence[str] | None = None, tokenizer=None, train_len: int,
           context_len: int | None = None, num_sequences: int = 32, num_points: int = 64, num_last: int = 64,
           chunk_len: int | None = None, batch_size: int = 16, seed: int = 0, out_dir: str | None = None,
           label: str = "model") -> dict:
    """EffRem_T(t) averaged over sequences, T = ``context_len`` (default 4× ``train_len``).

    Args:
      model: a LanguageModel; tokenizer supplies the pad id (and encodes ``documents``).
      sequences: int[n ≥ T] token rows, or ``documents`` + ``tokenizer`` to build ``num_sequences``.
      train_len: the training length (marked on the plot; sets the default T and chunk).
      num_points, num_last: the t grid (see :func:`effrem_grid`).
      chunk_len: tokens per forward chunk (default ``train_len``); batch_size: rows per pass.
      out_dir: write ``effrem.json`` and ``effrem.png`` there (None: write nothing).

    Returns:
      {"context_len", "train_len", "t": int[k], "effrem": float[k] (mean), "std": float[k], ...}.
    """
    context_len = context_len or 4 * train_len
    if tokenizer is None:
        raise AnalysisError("effrem needs the tokenizer (its pad id pads the shortened contexts)")
    rows = as_sequences(sequences, documents, tokenizer, num_sequences, context_len, seed)
    ts = effrem_grid(context_len, num_points, num_last)

    def next_logits(tokens, segments):
        outputs, _ = run_chunks(model, tokens, last_logits, chunk_len=chunk_len or train_len, segment_ids=segments)
        return outputs[-1]

    curves = effrem_curve(next_logits, rows, ts, tokenizer.special.pad, batch_size)
    result = {"context_len": context_len, "train_len": train_len, "num_sequences": len(rows), "label": label,
              "t": [int(t) for t in ts], "effrem": [float(v) for v in curves.mean(0)],
              "std": [float(v) for v in curves.std(0)]}
    if out_dir is not None:
        result["files"] = {"json": write_json(out_dir, NAME, result), "png": plot_effrem({label: result}, out_dir)}
    return result


def plot_effrem(results: Mapping[str, dict], out_dir: str, name: str = NAME) -> str:
    """EffRem against t (linear 0..T), log y; one curve per model (t = 0, where it is 0, is not drawn)."""
    fig, ax = figure()
    for label, r in results.items():
        t, e = np.asarray(r["t"]), np.asarray(r["effrem"])
        ax.plot(t[e > 0], e[e > 0], lw=1.5, label=label)
    first = next(iter(results.values()))
    mark_train_len(ax, first["train_len"] if first["train_len"] < first["context_len"] else None)
    ax.set_xlim(0, first["context_len"])
    ax.set_yscale("log")
    ax.set_xlabel("t (tokens dropped from the start)")
    ax.set_ylabel(f"EffRem_T(t), T = {first['context_len']}")
    ax.set_title("effective remembrance")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, out_dir, name)
