"""Greedy in-order packing of laid-out samples into fixed-length rows (spec §5.2).

The parent yields, per document, a tuple of samples made by
:func:`birdie_jax.data.layout.layout_sample` (dicts of ``inputs``/``targets``/
``region``, each [n]). Samples are taken in order and appended to the open row
while they fit; the first sample that does not fit closes the row (padded) and
opens the next one ("next fit": no reordering, so the stream is easy to reason
about and to restore). No token is dropped or duplicated.

Row fields, all [seq_len] int32: ``inputs``, ``targets`` (IGNORE = -100 = no loss),
``segment_ids`` (1, 2, ... per sample; 0 = padding), ``positions`` (0, 1, ... per
segment; 0 on padding), ``region`` (2 on padding) and ``arm_ids`` (the sample's
objective configuration, see :func:`~birdie_jax.data.layout.layout_sample`; -1 on
padding and for samples without one).

Checkpoint state is ``{"parent": <parent state before the document holding the
next unconsumed sample>, "skip": <samples of that document already packed>}``: a
restored iterator re-reads that document and continues exactly where it stopped.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import grain
import numpy as np

from birdie_jax.data.layout import IGNORE_ID, REGION_CAUSAL

Sample = dict[str, np.ndarray]
Row = dict[str, np.ndarray]
ROW_FIELDS = ("inputs", "targets", "segment_ids", "positions", "region", "arm_ids")


def padding_row(seq_len: int, pad_id: int) -> Row:
    """An all-padding row: {field: [seq_len] int32}."""
    return {
        "inputs": np.full(seq_len, pad_id, np.int32),
        "targets": np.full(seq_len, IGNORE_ID, np.int32),
        "segment_ids": np.zeros(seq_len, np.int32),
        "positions": np.zeros(seq_len, np.int32),
        "region": np.full(seq_len, REGION_CAUSAL, np.int32),
        "arm_ids": np.full(seq_len, -1, np.int32),
    }


def pack_row(samples: Sequence[Sample], seq_len: int, pad_id: int) -> Row:
    """Concatenate samples (total length <= seq_len) into one padded row."""
    row = padding_row(seq_len, pad_id)
    start = 0
    for seg, sample in enumerate(samples, start=1):
        n = sample["inputs"].shape[0]
        end = start + n
        row["inputs"][start:end] = sample["inputs"]
        row["targets"][start:end] = sample["targets"]
        row["region"][start:end] = sample["region"]
        row["arm_ids"][start:end] = sample.get("arm_ids", -1)
        row["segment_ids"][start:end] = seg
        row["positions"][start:end] = np.arange(n, dtype=np.int32)
        start = end
    if start > seq_len:
        raise ValueError(f"samples of {start} tokens do not fit a row of {seq_len}")
    return row


def stack_rows(rows: Sequence[Row], *, batch_size: int, seq_len: int, pad_id: int) -> Row:
    """Rows -> batch {field: [batch_size, seq_len] int32}; a short last batch gets padding rows."""
    rows = list(rows)
    while len(rows) < batch_size:
        rows.append(padding_row(seq_len, pad_id))
    return {k: np.stack([r[k] for r in rows]) for k in ROW_FIELDS}


class _PackIterator(grain.DatasetIterator):
    """Next-fit packer over a stream of per-document sample tuples."""

    def __init__(self, parent: grain.DatasetIterator, seq_len: int, pad_id: int):
        super().__init__(parent)
        self._seq_len = seq_len
        self._pad_id = pad_id
        self._doc: Sequence[Sample] | None = None  # document being consumed
        self._doc_state: Any = None  # parent state before self._doc was read
        self._k = 0  # index of the next unconsumed sample in self._doc
        self._skip = 0  # samples to skip in the next document read (after set_state)

    def _peek(self) -> Sample | None:
        """The next unconsumed sample (loading documents as needed), or None at the end."""
        while self._doc is None or self._k >= len(self._doc):
            state = self._parent.get_state()
            try:
                doc = next(self._parent)
            except StopIteration:
                self._doc, self._k = None, 0
                return None
            self._doc, self._doc_state = doc, state
            self._k, self._skip = self._skip, 0
        return self._doc[self._k]

    def __next__(self) -> Row:
        samples: list[Sample] = []
        used = 0
        while used < self._seq_len:
            sample = self._peek()
            if sample is None:
                break
            n = sample["inputs"].shape[0]
            if n > self._seq_len:
                raise ValueError(f"a sample of {n} tokens does not fit a row of {self._seq_len}")
            if used + n > self._seq_len:
                break
            samples.append(sample)
            used += n
            self._k += 1
        if not samples:
            raise StopIteration
        return pack_row(samples, self._seq_len, self._pad_id)

    def get_state(self) -> dict[str, Any]:
        if self._doc is not None and self._k < len(self._doc):
            return {"parent": copy.deepcopy(self._doc_state), "skip": self._k}
        return {"parent": self._parent.get_state(), "skip": self._skip}

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state["parent"])
        self._doc, self._doc_state, self._k = None, None, 0
        self._skip = int(state["skip"])


class PackIterDataset(grain.IterDataset):
    """IterDataset of packed rows (see the module docstring) over per-document sample tuples."""

    def __init__(self, parent: grain.IterDataset, *, seq_len: int, pad_id: int):
        super().__init__(parent)
        self._seq_len = int(seq_len)
        self._pad_id = int(pad_id)

    def __iter__(self) -> _PackIterator:
        return _PackIterator(self._parent.__iter__(), self._seq_len, self._pad_id)

    def __str__(self) -> str:
        return f"PackIterDataset(seq_len={self._seq_len})"
