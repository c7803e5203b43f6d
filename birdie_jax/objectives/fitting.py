"""Fitting one sample of an arm into one row (spec §2, §6.2).

:func:`fit_sample` takes the unconsumed text of a document and an arm and returns one
sample that fits a row, plus how many text tokens it used; the caller hands the rest
of the text back to the stream (a fresh arm is drawn for it).

1. **Length.** L ~ U{min_len..max_len} of the arm, capped by the text available. NTP,
   PLM and length-less infilling (UL2) take L = min(available, budget).
2. **Row fit.** ``budget`` is the number of laid-out tokens the sample may take (the row
   length, minus one if a paradigm token will be added). If |prefix| + |labels| >
   budget, the sample is rebuilt from the first L' = min(L − 1, floor(L·budget/total))
   tokens, until it fits (each rebuild draws afresh from the same rng).
3. **Fallback.** If the text is too short for the objective (a builder returns None:
   PLM below 8 tokens, selective copying with no span placeable, deshuffling /
   infilling / autoencoding below 2 tokens) or the row leaves no room for it, the
   sample is an NTP sample of the first min(available, budget) tokens, flagged
   ``fallback``. So a sample always has >= 1 label and consumes >= 1 token: no crash,
   no empty sample, no lost text.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from birdie_jax.objectives.arms import Arm, InfillArm, NTPArm, PLMArm
from birdie_jax.objectives.objectives import build, build_ntp
from birdie_jax.tokenizer import SpecialTokens


@dataclasses.dataclass(frozen=True)
class FittedSample:
    """One sample: ``prefix`` [P] and ``labels`` [N >= 1] int32 with P + N <= budget, made from
    the first ``consumed`` >= 1 text tokens; ``fallback`` is True for an NTP fallback sample."""

    prefix: np.ndarray
    labels: np.ndarray
    consumed: int
    fallback: bool


def fills_row(arm: Arm) -> bool:
    """True for arms without length control (L = as much as fits the row)."""
    return isinstance(arm, (NTPArm, PLMArm)) or (isinstance(arm, InfillArm) and arm.min_len is None)


def draw_length(arm: Arm, available: int, budget: int, rng: np.random.Generator) -> int:
    """L for one sample: the arm's U{min_len..max_len} (or the budget), capped by ``available``."""
    if fills_row(arm):
        return min(available, budget)
    return min(available, int(rng.integers(arm.min_len, arm.max_len + 1)))


def fit_sample(tokens: np.ndarray, arm: Arm, rng: np.random.Generator, *, special: SpecialTokens,
               budget: int) -> FittedSample:
    """One sample of ``arm`` from the start of ``tokens`` (int32 [n >= 1]) within ``budget`` >= 1
    laid-out tokens (see the module docstring)."""
    n = int(tokens.shape[0])
    if n < 1 or budget < 1:
        raise ValueError(f"fit_sample needs text (got {n} tokens) and a budget >= 1 (got {budget})")
    length = draw_length(arm, n, budget, rng)
    while length >= 1:
        pair = build(tokens[:length], arm, rng, special=special)
        if pair is None:
            break
        total = pair[0].shape[0] + pair[1].shape[0]
        if total <= budget:
            return FittedSample(pair[0], pair[1], length, fallback=False)
        length = min(length - 1, length * budget // total)
    length = min(n, budget)
    prefix, labels = build_ntp(tokens[:length])
    return FittedSample(prefix, labels, length, fallback=not isinstance(arm, NTPArm))
