"""Per-token loss against position, with the state carried and with it reset every T (spec §6.1).

Rows of ``length + 1`` tokens (documents joined by EOS, one segment) run through the model twice,
on the same tokens:

* **carried**: in chunks through the state contract, the state carried all the way (the model
  reads the whole row, as in deployment);
* **reset**: the state reset to zero every T tokens (T = the training length), so the model never
  sees more context than in training.

Their difference, carried − reset, per position and per log-spaced position bin, is the
length-generalization metric: the rise of the loss beyond T *relative to what the same model
achieves with its context capped at T*. Content cannot fool it (both runs predict the same
tokens); inside the first T tokens it is 0 by construction. A model that length-generalizes has a
difference ≤ 0 beyond T (more context does not hurt); the failure of arXiv 2507.02782 is a
difference > 0. Each bin reports the mean over rows and a 95 % confidence band of the mean
difference (1.96 standard errors over rows), so ≥ 64 rows make it tight.

Axis legend: n rows, t position.
"""

from collections.abc import Mapping, Sequence

import numpy as np

from birdie_jax.analysis.common import (
    AnalysisError, as_sequences, figure, mark_train_len, run_chunks, save_figure, token_nll, write_json)

NAME = "loss_by_position"
Z_95 = 1.96


def log_bins(length: int, bins_per_octave: int = 4) -> list[tuple[int, int]]:
    """Log-spaced [start, stop) position bins covering [0, length): 0, 1, then ~``bins_per_octave`` per doubling."""
    edges = np.unique(np.round(np.geomspace(1, length, max(2, int(np.log2(max(length, 2)) * bins_per_octave) + 1))))
    edges = np.unique(np.concatenate([[0], edges.astype(int), [length]]))
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def row_nll(model, rows: np.ndarray, *, chunk_len: int, reset_every: int | None = None,
            batch_size: int = 8) -> np.ndarray:
    """float64[n t]: −log p(rows[:, i+1] | rows[:, :i+1]) for i < t, the state reset every ``reset_every`` tokens
    (None: carried through the whole row). The reset gives every T-token window its own segment."""
    length = rows.shape[1] - 1
    segments = None if reset_every is None else np.broadcast_to(np.arange(length) // reset_every + 1,
                                                                (rows.shape[0], length))
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        outputs, _ = run_chunks(model, batch[:, :-1], token_nll, chunk_len=chunk_len, extras=batch[:, 1:],
                                segment_ids=None if segments is None else segments[start:start + batch_size])
        out.append(np.concatenate(outputs, axis=1).astype(np.float64))
    return np.concatenate(out)


def _mean_and_band(values: np.ndarray) -> tuple[float, float]:
    """(mean over rows, half-width of its 95 % confidence band) of per-row values float[n]."""
    n = len(values)
    half = Z_95 * float(values.std(ddof=1)) / float(np.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), half


def span_summary(carried: np.ndarray, reset: np.ndarray, start: int, stop: int) -> dict:
    """Mean NLL carried / reset over positions [start, stop) and their difference with its 95 % band."""
    diff, band = _mean_and_band(carried[:, start:stop].mean(1) - reset[:, start:stop].mean(1))
    return {"start": start, "stop": stop, "carried": float(carried[:, start:stop].mean()),
            "reset": float(reset[:, start:stop].mean()), "difference": diff, "band": band}


def loss_by_position(model, sequences=None, *, documents: Sequence[str] | None = None, tokenizer=None,
                     train_len: int, max_factor: int = 16, length: int | None = None, num_sequences: int = 64,
                     chunk_len: int | None = None, batch_size: int = 8, seed: int = 0, out_dir: str | None = None,
                     label: str = "model") -> dict:
    """Mean per-token NLL, carried and reset every T, at each position 0 .. length − 1.

    Args:
      model: a LanguageModel.
      sequences: int[n ≥ length+1] token rows; or give ``documents`` and ``tokenizer`` to build
        ``num_sequences`` rows ([BG] + documents joined by EOS).
      train_len: the training sequence length T (the reset period; marked on the plot).
      length: positions evaluated (default ``max_factor · T``); must be a multiple of T.
      chunk_len: tokens per forward chunk of the carried run (default T).
      batch_size: rows per forward pass.
      out_dir: write ``loss_by_position.json`` and ``.png`` there (None: write nothing).
      label: the curve's name.

    Returns:
      {"train_len", "length", "num_sequences", "nll" (carried) / "nll_reset" / "difference": float[L],
       "bins": [{"start", "stop", "nll", "perplexity", "nll_reset", "difference", "band"}],
       "inside" / "beyond": the same summary over [0, T) and [T, L), "files": {...}}.
    """
    if train_len < 1 or max_factor < 1:
        raise AnalysisError(f"train_len and max_factor must be >= 1, got {train_len}, {max_factor}")
    length = train_len * max_factor if length is None else length
    if length < train_len or length % train_len:
        raise AnalysisError(f"loss-by-position: the length {length} is not a multiple of the training length "
                            f"T={train_len} (the reset-every-T run compares whole T-token windows)")
    rows = as_sequences(sequences, documents, tokenizer, num_sequences, length + 1, seed)
    carried = row_nll(model, rows, chunk_len=chunk_len or train_len, batch_size=batch_size)
    reset = row_nll(model, rows, chunk_len=train_len, reset_every=train_len, batch_size=batch_size)
    bins = []
    for a, b in log_bins(length):
        s = span_summary(carried, reset, a, b)
        bins.append({"start": a, "stop": b, "nll": s["carried"], "perplexity": float(np.exp(s["carried"])),
                     "nll_reset": s["reset"], "difference": s["difference"], "band": s["band"]})
    result = {"train_len": train_len, "length": length, "num_sequences": len(rows), "label": label,
              "nll": carried.mean(0).tolist(), "nll_reset": reset.mean(0).tolist(),
              "difference": (carried - reset).mean(0).tolist(), "bins": bins,
              "inside": span_summary(carried, reset, 0, train_len),
              "beyond": span_summary(carried, reset, train_len, length) if length > train_len else None}
    if out_dir is not None:
        result["files"] = {"json": write_json(out_dir, NAME, result),
                           "png": plot_loss_by_position({label: result}, out_dir)}
    return result


def plot_loss_by_position(results: Mapping[str, dict], out_dir: str, name: str = NAME) -> str:
    """Top: NLL per log-spaced bin, carried (solid) and reset every T (dashed). Bottom: carried − reset with
    its 95 % band. Log x, T marked; one colour per model."""
    fig, (top, bottom) = figure(nrows=2, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for label, r in results.items():
        centres = [(b["start"] + b["stop"] + 1) / 2 for b in r["bins"]]
        line, = top.plot(centres, [b["nll"] for b in r["bins"]], "o-", lw=1.5, ms=3, label=f"{label}: carried")
        top.plot(centres, [b["nll_reset"] for b in r["bins"]], "--", lw=1, color=line.get_color(),
                 label=f"{label}: reset every T")
        diff = np.asarray([b["difference"] for b in r["bins"]])
        band = np.nan_to_num(np.asarray([b["band"] for b in r["bins"]]))
        bottom.plot(centres, diff, "o-", lw=1.5, ms=3, color=line.get_color(), label=label)
        bottom.fill_between(centres, diff - band, diff + band, color=line.get_color(), alpha=0.2)
    train_len = next(iter(results.values()))["train_len"]
    for ax in (top, bottom):
        mark_train_len(ax, train_len)
        ax.set_xscale("log")
        ax.grid(alpha=0.3, which="both")
    bottom.axhline(0.0, color="black", lw=0.8)
    top.set_yscale("log")  # the first positions (little context) sit far above the rest
    top.set_ylabel("NLL (nats per token)")
    top.set_title("loss by position: state carried vs reset every T")
    top.legend(fontsize=7)
    bottom.set_xlabel("token position")
    bottom.set_ylabel("carried − reset (95 % band)")
    return save_figure(fig, out_dir, name)
