"""Multi-query associative recall (MQAR, Zoology; spec ``jrt.md`` §5.1).

An example of length T holds n key–value pairs ``k1 v1 … kn vn`` followed by a query
region where each key appears once more; the model must predict the key's value right
after it. Keys are distinct ids in [1, V/2), values distinct ids in [V/2, V); query slots
follow the power law p(g) ∝ (g+1)^(a−1) (queries cluster early); every other position of
the query region is a uniform random filler in [0, V).

Two forms of the same example:

* **Zoology form** (:func:`mqar_example`, :func:`mqar_batch`): ``inputs`` int32[T] and
  ``labels`` int32[T] where ``labels[t]`` is the value to predict *at* position t (the
  position holding a query key), −100 elsewhere — train with cross-entropy on
  ``model(inputs)`` ignoring −100.
* **Sequence form** (:func:`mqar_sequence`): the T+1 tokens ``inputs + [last label]`` and a
  bool[T+1] mask of the tokens that carry loss (the values after query keys) — what the
  ``data.corpus: mqar`` source feeds through the normal pipeline (``[BG] + sequence``).

Metric: per example, the share of labelled positions where argmax == label; reported per
(T, n) slice (:func:`mqar_accuracy`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from birdie_jax.data.layout import IGNORE_ID
from birdie_jax.errors import DataError

#: Zoology's power-law exponent for query placement.
ALPHA = 0.01


@dataclasses.dataclass(frozen=True)
class MQARSlice:
    """One (T, n) setting of MQAR over a vocabulary of V ids."""

    seq_len: int = 64
    num_pairs: int = 4
    vocab_size: int = 256
    alpha: float = ALPHA

    def __post_init__(self):
        check_mqar(self.seq_len, self.num_pairs, self.vocab_size)

    @property
    def name(self) -> str:
        return f"T={self.seq_len},n={self.num_pairs}"


def check_mqar(seq_len: int, num_pairs: int, vocab_size: int) -> None:
    """DataError unless T is even, 4n ≤ T, V > T and n keys fit in [1, V/2) (spec constraints)."""
    if seq_len < 4 or seq_len % 2:
        raise DataError(f"MQAR seq_len must be an even number >= 4, got {seq_len}")
    if num_pairs < 1 or 4 * num_pairs > seq_len:
        raise DataError(f"MQAR needs 1 <= num_pairs <= seq_len/4 = {seq_len // 4}, got {num_pairs}")
    if vocab_size <= seq_len:
        raise DataError(f"MQAR vocab_size must exceed seq_len ({seq_len}), got {vocab_size}")
    if vocab_size // 2 - 1 < num_pairs:
        raise DataError(f"MQAR vocab_size={vocab_size} holds fewer than {num_pairs} distinct keys in [1, V/2)")


def query_slot_probabilities(num_slots: int, alpha: float = ALPHA) -> np.ndarray:
    """float64[num_slots]: p(g) ∝ (g+1)^(alpha−1), g = 0 .. num_slots−1."""
    p = alpha * np.arange(1, num_slots + 1, dtype=np.float64) ** (alpha - 1)
    return p / p.sum()


def mqar_example(rng: np.random.Generator, seq_len: int = 64, num_pairs: int = 4, vocab_size: int = 256,
                 alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """One example in Zoology form: (inputs int32[T], labels int32[T], −100 where no loss)."""
    check_mqar(seq_len, num_pairs, vocab_size)
    half = vocab_size // 2
    keys = rng.choice(np.arange(1, half), num_pairs, replace=False)
    values = rng.choice(np.arange(half, vocab_size), num_pairs, replace=False)
    context = 2 * num_pairs
    num_slots = (seq_len - context) // 2
    slots = rng.choice(num_slots, num_pairs, replace=False, p=query_slot_probabilities(num_slots, alpha))
    sequence = np.zeros(seq_len + 1, np.int64)
    sequence[0:context:2], sequence[1:context:2] = keys, values
    sequence[context + 2 * slots] = keys
    labels = np.full(seq_len + 1, IGNORE_ID, np.int64)
    labels[context + 2 * slots + 1] = values
    inputs, labels = sequence[:-1], labels[1:]
    fill = rng.integers(0, vocab_size, size=seq_len)
    inputs = np.where(inputs == 0, fill, inputs)
    return inputs.astype(np.int32), labels.astype(np.int32)


def mqar_batch(num_examples: int, seed: int, seq_len: int = 64, num_pairs: int = 4, vocab_size: int = 256,
               alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """(inputs int32[N T], labels int32[N T]): example i drawn from ``default_rng([seed, T, n, i])``,
    so any example can be regenerated alone and slices of one seed are independent."""
    rows = [mqar_example(np.random.default_rng([seed, seq_len, num_pairs, i]), seq_len, num_pairs, vocab_size,
                         alpha) for i in range(num_examples)]
    if not rows:
        raise DataError(f"MQAR needs num_examples >= 1, got {num_examples}")
    return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])


def mqar_sequence(inputs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zoology form → (sequence int32[T+1], loss mask bool[T+1]) for next-token training:
    position t+1 of the sequence carries the label of input position t."""
    inputs, labels = np.asarray(inputs, np.int32), np.asarray(labels, np.int32)
    last = labels[-1] if labels[-1] != IGNORE_ID else 0
    sequence = np.concatenate([inputs, [last]]).astype(np.int32)
    mask = np.concatenate([[False], labels != IGNORE_ID])
    sequence[1:][mask[1:]] = labels[mask[1:]]
    return sequence, mask


def mqar_accuracy(predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """float64[N]: per example, the share of labelled positions where prediction == label.

    predictions, labels: int[N T] (predictions = argmax of the logits at each position).
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    mask = labels != IGNORE_ID
    if not mask.any(axis=-1).all():
        raise DataError("every MQAR example needs at least one labelled position")
    return ((predictions == labels) & mask).sum(-1) / mask.sum(-1)


DEFAULT_SLICES = ((64, 4), (128, 8))


def evaluate_mqar(ev, *, num_examples: int = 64, seed: int = 0, slices=DEFAULT_SLICES, vocab_size: int = 256,
                  **_) -> dict:
    """Accuracy per (T, n) slice. The k–v context is the prompt (a prefix for prefix-trained
    models) and the query region is teacher-forced; only the values after query keys count."""
    table = []
    for seq_len, num_pairs in slices:
        inputs, labels = mqar_batch(num_examples, seed, int(seq_len), int(num_pairs), vocab_size)
        context = 2 * int(num_pairs)
        sequences = [mqar_sequence(x, y) for x, y in zip(inputs, labels)]
        scores = ev.loglik([s[:context] for s, _ in sequences], [s[context:] for s, _ in sequences],
                           [m[context:] for _, m in sequences], desc=f"mqar T={seq_len} n={num_pairs}")
        accuracy = scores.num_correct / scores.num_tokens
        table.append({"seq_len": int(seq_len), "num_pairs": int(num_pairs), "accuracy": float(accuracy.mean()),
                      "chance": 1.0 / (vocab_size - vocab_size // 2)})
    return {"slices": table, "accuracy": float(np.mean([r["accuracy"] for r in table])), "vocab_size": vocab_size}


def plot_mqar(result: dict, ax) -> None:
    names = [f"T={r['seq_len']}\nn={r['num_pairs']}" for r in result["slices"]]
    ax.bar(names, [r["accuracy"] for r in result["slices"]], color="tab:blue")
    ax.axhline(result["slices"][0]["chance"], color="grey", ls="--", lw=1, label="chance")
    ax.set_ylabel("accuracy")
    ax.set_title("MQAR accuracy by (T, n)")
