"""Span corruption shared by infilling and autoencoding (spec §2.5).

A text of length L is corrupted at rate r with mean span μ as follows:

* n_m = max(1, round(r·L)) tokens are masked,
* in k = clamp(round(n_m/μ), 1, L − n_m + 1) spans;
* the n_m masked tokens are split into k positive span lengths (a uniform random
  composition) and the L − n_m unmasked tokens into k + 1 gaps, the k − 1 inner gaps
  of at least one token (so no two spans touch) and the two outer gaps possibly empty.

The text then reads ``gap_0 span_1 gap_1 … span_k gap_k``. Every count is exact, so the
realised rate is the nominal one up to rounding (public v1 started spans stochastically
and fell below nominal). ``round`` is round-half-up throughout (:func:`round_half_up`),
so the numbers do not depend on Python's banker's rounding.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def round_half_up(x: float) -> int:
    """Nearest integer, halves rounded up (2.5 -> 3); the "round" of the spec."""
    return int(math.floor(x + 0.5))


def num_masked(length: int, rate: float) -> int:
    """n_m = max(1, round(rate·length)), never more than length (length >= 1)."""
    return min(length, max(1, round_half_up(rate * length)))


def num_spans(length: int, n_masked: int, mean_span: float) -> int:
    """k = clamp(round(n_m/μ), 1, L − n_m + 1): as many spans as fit with gaps of >= 1 between them."""
    return max(1, min(round_half_up(n_masked / mean_span), length - n_masked + 1))


def random_composition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random split of ``total`` into ``parts`` positive integers: int64 [parts].

    Needs 1 <= parts <= total. The cut points are a uniform (parts − 1)-subset of 1..total−1.
    """
    if not 1 <= parts <= total:
        raise ValueError(f"cannot split {total} into {parts} positive parts")
    cuts = np.sort(rng.choice(total - 1, parts - 1, replace=False)) + 1 if parts > 1 else np.zeros(0, np.int64)
    return np.diff(np.concatenate([[0], cuts, [total]])).astype(np.int64)


def random_weak_composition(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random split of ``total`` >= 0 into ``parts`` >= 1 non-negative integers: int64 [parts].

    Stars and bars: the parts − 1 bars are a uniform subset of the total + parts − 1 slots.
    """
    bars = np.sort(rng.choice(total + parts - 1, parts - 1, replace=False)) if parts > 1 else np.zeros(0, np.int64)
    return (np.diff(np.concatenate([[-1], bars, [total + parts - 1]])) - 1).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class Corruption:
    """Where the spans of one corrupted text are: ``starts`` [k] and ``lengths`` [k] (int64).

    Spans are sorted, non-empty and separated by at least one unmasked token.
    """

    length: int
    starts: np.ndarray
    lengths: np.ndarray

    @property
    def num_spans(self) -> int:
        return int(self.starts.shape[0])

    @property
    def num_masked(self) -> int:
        return int(self.lengths.sum())

    @property
    def ends(self) -> np.ndarray:
        """One past the last token of each span: int64 [k]."""
        return self.starts + self.lengths

    def mask(self) -> np.ndarray:
        """bool [L]: True on masked tokens."""
        marks = np.zeros(self.length + 1, np.int64)
        np.add.at(marks, self.starts, 1)
        np.add.at(marks, self.ends, -1)
        return np.cumsum(marks[:-1]) > 0


def corrupt_spans(length: int, rate: float, mean_span: float, rng: np.random.Generator) -> Corruption:
    """Draws the spans of a text of ``length`` >= 1 tokens (see the module docstring)."""
    if length < 1:
        raise ValueError(f"cannot corrupt an empty text (length {length})")
    n_m = num_masked(length, rate)
    k = num_spans(length, n_m, mean_span)
    span_lengths = random_composition(n_m, k, rng)
    gaps = random_weak_composition(length - n_m - (k - 1), k + 1, rng)
    gaps[1:-1] += 1  # inner gaps hold >= 1 token
    # span j starts after gap_0 .. gap_j and span_1 .. span_{j-1}
    starts = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(span_lengths[:-1])])
    return Corruption(length=length, starts=starts.astype(np.int64), lengths=span_lengths)
