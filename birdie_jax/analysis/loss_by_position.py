"""Per-token loss against position, up to k× the training length (spec §6.1).

Rows of ``max_factor · train_len + 1`` tokens (documents joined by EOS, one segment) run
through the model in chunks; the NLL of every position is averaged over rows, then over
log-spaced position bins (perplexity = exp(mean NLL) per bin). A model that
length-generalizes keeps a flat curve past the training length T.

Axis legend: b rows, t position.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from birdie_jax.analysis.common import (
    AnalysisError, as_sequences, figure, mark_train_len, run_chunks, save_figure, token_nll, write_json)

NAME = "loss_by_position"


def log_bins(length: int, bins_per_octave: int = 4) -> list[tuple[int, int]]:
    """Log-spaced [start, stop) position bins covering [0, length): 0, 1, then ~``bins_per_octave`` per doubling."""
    edges = np.unique(np.round(np.geomspace(1, length, max(2, int(np.log2(max(length, 2)) * bins_per_octave) + 1))))
    edges = np.unique(np.concatenate([[0], edges.astype(int), [length]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def loss_by_position(model, sequences=None, *, documents: Sequence[str] | None = None, tokenizer=None,
                     train_len: int, max_factor: int = 16, num_sequences: int = 8, chunk_len: int | None = None,
                     batch_size: int = 8, seed: int = 0, out_dir: str | None = None, label: str = "model") -> dict:
    """Mean per-token NLL at each position 0 .. max_factor·train_len − 1.

    Args:
      model: a LanguageModel.
      sequences: int[b ≥ L+1] token rows (L = max_factor·train_len); or give ``documents``
        and ``tokenizer`` to build ``num_sequences`` rows ([BG] + documents joined by EOS).
      train_len: the training sequence length T (marked on the plot).
      max_factor: evaluate to this multiple of T.
      chunk_len: tokens per forward chunk (default T).
      batch_size: rows per forward pass.
      out_dir: write ``loss_by_position.json`` and ``.png`` there (None: write nothing).
      label: the curve's name.

    Returns:
      {"train_len", "length", "num_sequences", "nll": float[L] (mean over rows),
       "bins": [{"start", "stop", "nll", "perplexity"}], "files": {...}}.
    """
    if train_len < 1 or max_factor < 1:
        raise AnalysisError(f"train_len and max_factor must be >= 1, got {train_len}, {max_factor}")
    length = train_len * max_factor
    rows = as_sequences(sequences, documents, tokenizer, num_sequences, length + 1, seed)
    total = np.zeros(length, np.float64)
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        outputs, _ = run_chunks(model, batch[:, :-1], token_nll, chunk_len=chunk_len or train_len,
                                extras=batch[:, 1:])
        total += np.concatenate(outputs, axis=1).sum(0)
    nll = total / len(rows)
    bins = [{"start": a, "stop": b, "nll": float(nll[a:b].mean()), "perplexity": float(np.exp(nll[a:b].mean()))}
            for a, b in log_bins(length)]
    result = {"train_len": train_len, "length": length, "num_sequences": len(rows), "label": label,
              "nll": [float(v) for v in nll], "bins": bins}
    if out_dir is not None:
        result["files"] = {"json": write_json(out_dir, NAME, result),
                           "png": plot_loss_by_position({label: result}, out_dir)}
    return result


def plot_loss_by_position(results: Mapping[str, dict], out_dir: str, name: str = NAME) -> str:
    """Perplexity per log-spaced bin (and the raw per-position NLL, faint) against position, log x."""
    fig, ax = figure()
    for label, r in results.items():
        positions = np.arange(1, r["length"] + 1)
        line, = ax.plot([(b["start"] + b["stop"] + 1) / 2 for b in r["bins"]], [b["perplexity"] for b in r["bins"]],
                        "o-", lw=1.5, ms=3, label=label)
        ax.plot(positions, np.exp(r["nll"]), lw=0.5, alpha=0.25, color=line.get_color())
    mark_train_len(ax, next(iter(results.values()))["train_len"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("token position")
    ax.set_ylabel("perplexity (exp mean NLL)")
    ax.set_title("loss by position")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, out_dir, name)
