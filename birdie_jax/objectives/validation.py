"""Held-out validation batches per arm (spec §6.8).

For each arm, a fixed list of batches built once from the validation documents (in
order, fixed seed) holding only that arm's samples, in the training batch format
(same fields, same seq_len, paradigm tokens as in training), so the loss and greedy
accuracy of every configuration can be measured at every evaluation on the same data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from birdie_jax.data.packing import Row, padding_row
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.errors import DataError
from birdie_jax.objectives.arms import Arm
from birdie_jax.objectives.mixture import Mixture
from birdie_jax.tokenizer import Tokenizer


@dataclasses.dataclass(frozen=True)
class SingleArmTransform:
    """Sample transform using one arm of a mixture for the whole document; NTP fallback
    samples (text too short for the arm) are dropped, so only that arm's samples remain."""

    mixture: Mixture
    arm_index: int

    def __call__(self, tokens: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray, int]]:
        return self.mixture.document_samples(tokens, rng, arm_index=self.arm_index, keep_fallback=False)


def _as_mixture(mixture_or_arms: Mixture | Sequence[Arm], tokenizer: Tokenizer, seq_len: int) -> Mixture:
    if isinstance(mixture_or_arms, Mixture):
        return mixture_or_arms
    arms = list(mixture_or_arms)
    return Mixture("validation", arms, np.full(len(arms), 1.0 / max(len(arms), 1)),
                   special=tokenizer.special, seq_len=seq_len)


def make_validation_sets(
    documents: Sequence[str],
    tokenizer: Tokenizer,
    mixture_or_arms: Mixture | Sequence[Arm],
    *,
    seq_len: int,
    rows_per_arm: int,
    seed: int,
    batch_size: int | None = None,
) -> dict[str, list[Row]]:
    """{arm name: batches} with ``rows_per_arm`` rows per arm, each batch {field: [batch_size, seq_len]}.

    ``batch_size`` defaults to ``rows_per_arm`` (one batch per arm); rows past
    ``rows_per_arm`` in the last batch are padding. A Mixture's paradigm settings and arm
    ids are used; a plain list of arms gets class paradigm tokens (append probability 0.5).
    The documents are read in order, cycling if needed. DataError if no document is long
    enough for some arm.
    """
    if rows_per_arm < 1:
        raise ValueError(f"rows_per_arm must be >= 1, got {rows_per_arm}")
    if not documents:
        raise DataError("no validation documents: cannot build per-arm validation sets")
    batch_size = rows_per_arm if batch_size is None else int(batch_size)
    mixture = _as_mixture(mixture_or_arms, tokenizer, seq_len)
    num_batches = math.ceil(rows_per_arm / batch_size)
    out: dict[str, list[Row]] = {}
    for i, name in enumerate(mixture.arm_names):
        transform = SingleArmTransform(mixture, i)
        _check_some_sample(documents, tokenizer, transform, name, seed)
        it = make_batch_iterator(documents, tokenizer, seq_len=seq_len, batch_size=batch_size, seed=seed,
                                 sample_transform=transform, shuffle=False, num_epochs=None)
        batches = [next(it) for _ in range(num_batches)]
        extra = num_batches * batch_size - rows_per_arm
        if extra:
            pad = padding_row(seq_len, tokenizer.special.pad)
            for k, v in batches[-1].items():
                v[batch_size - extra:] = pad[k]
        out[name] = batches
    return out


def _check_some_sample(documents: Sequence[str], tokenizer: Tokenizer, transform: Any, name: str, seed: int) -> None:
    """DataError unless some document yields a sample of the arm (the stream would never end)."""
    eos = np.asarray([tokenizer.special.eos], np.int32)
    for index, text in enumerate(documents):
        tokens = np.concatenate([tokenizer.encode(text), eos])
        if transform(tokens, np.random.default_rng([seed, index])):
            return
    raise DataError(f"no validation document is long enough for arm {name!r} "
                    f"({len(documents)} documents, longest {max(len(d) for d in documents)} characters)")
