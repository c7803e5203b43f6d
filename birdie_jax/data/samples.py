"""The per-document sample stage of the pipeline: tokens -> sample_transform -> layout.

It runs in the consumer's thread (in each worker with ``num_workers > 0``), right when
the packer asks for the next document, so a *live* transform whose parameters change
between training steps (a :class:`~birdie_jax.objectives.Mixture` whose probabilities
the controller sets) affects exactly the documents read after the change.

**Live transforms.** A transform with a ``snapshot()`` method is live: ``snapshot()``
returns its current parameters as a JSON-able value, and it accepts
``transform(tokens, rng, snapshot=value)`` to run with given parameters. The stage's
state holds the snapshot in force when the state was taken (for the packer: the one
the document it is in the middle of was made with); after ``set_state`` the next
document is made with that snapshot, later ones with the live parameters. So a
restored iterator rebuilds its open document exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain
import numpy as np

from birdie_jax.data.layout import layout_sample

Sample = dict[str, np.ndarray]
SampleTransform = Callable[..., Sequence[tuple]]


def is_live(transform: Any) -> bool:
    """True if ``transform`` has live parameters (a ``snapshot()`` method)."""
    return callable(getattr(transform, "snapshot", None))


def document_samples(
    index: int,
    tokens: np.ndarray,
    *,
    transform: SampleTransform,
    seed: int,
    seq_len: int,
    bg_id: int,
    snapshot: Any = None,
) -> tuple[Sample, ...]:
    """Stream element ``index`` (tokens [n], EOS included) -> its laid-out samples.

    The transform gets ``np.random.default_rng([seed, index])`` and returns (prefix, labels)
    pairs, (prefix, labels, arm_id) triples, or those plus ``label_mask`` (bool[N] or None)
    and then ``prefix_targets`` (MLM targets [P] or None); each must fit ``seq_len``
    (ValueError otherwise).
    """
    rng = np.random.default_rng([seed, index])
    pieces = transform(tokens, rng) if snapshot is None else transform(tokens, rng, snapshot=snapshot)
    samples = []
    for piece in pieces:
        prefix, labels = piece[0], piece[1]
        arm_id = int(piece[2]) if len(piece) > 2 else -1
        sample = layout_sample(prefix, labels, bg_id=bg_id, arm_id=arm_id,
                               label_mask=piece[3] if len(piece) > 3 else None,
                               prefix_targets=piece[4] if len(piece) > 4 else None)  # MLM targets (jrt mixture)
        n = sample["inputs"].shape[0]
        if n > seq_len:
            raise ValueError(
                f"sample_transform returned a sample of {n} tokens (prefix {n - len(labels)} "
                f"+ labels {len(labels)}), longer than seq_len={seq_len} (document {index})"
            )
        samples.append(sample)
    return tuple(samples)


class _SampleIterator(grain.DatasetIterator):
    """(index, tokens) elements -> tuples of laid-out samples; state {"parent", "snapshot"}."""

    def __init__(self, parent: grain.DatasetIterator, kw: dict[str, Any]):
        super().__init__(parent)
        self._kw = kw
        self._live = is_live(kw["transform"])
        self._pinned: Any = None  # snapshot for the next document (after set_state)

    def _snapshot(self) -> Any:
        if self._pinned is not None:
            return self._pinned
        return self._kw["transform"].snapshot() if self._live else None

    def __next__(self) -> tuple[Sample, ...]:
        index, tokens = next(self._parent)
        snapshot = self._snapshot()
        self._pinned = None
        return document_samples(index, tokens, snapshot=snapshot, **self._kw)

    def get_state(self) -> dict[str, Any]:
        return {"parent": self._parent.get_state(), "snapshot": self._snapshot()}

    def set_state(self, state: dict[str, Any]) -> None:
        if not (isinstance(state, dict) and "snapshot" in state):  # saved before this stage existed
            state = {"parent": state, "snapshot": None}
        self._parent.set_state(state["parent"])
        self._pinned = state["snapshot"] if self._live else None


class SampleIterDataset(grain.IterDataset):
    """IterDataset of per-document sample tuples over (index, tokens) elements."""

    def __init__(self, parent: grain.IterDataset, *, transform: SampleTransform, seed: int, seq_len: int,
                 bg_id: int):
        super().__init__(parent)
        self._kw = dict(transform=transform, seed=int(seed), seq_len=int(seq_len), bg_id=int(bg_id))

    def __iter__(self) -> _SampleIterator:
        return _SampleIterator(self._parent.__iter__(), self._kw)

    def __str__(self) -> str:
        return "SampleIterDataset()"
