"""Continuing document streams for truncated BPTT (arXiv 2507.02782 §3.4).

Row r of every batch is the next ``seq_len`` tokens of stream r: the documents of an epoch,
shuffled, dealt round-robin to the rows (document k of the epoch goes to row k mod b) and
laid out for next-token prediction one after another ([BG] + text, each its own segment).
A document longer than a row continues in the same row of the next batch, so the training
loop can carry each row's state across steps; ``continues[r]`` is False when row r's first
token starts a new document, telling the loop to start that row from zero.

The iterator state (epoch, document and offset per row) is a few integers, saved in
checkpoints through Grain's checkpoint handler (``get_state`` → bytes, ``set_state``), so a
resumed run sees exactly the same stream.
"""

import json
from collections.abc import Sequence

import numpy as np

from birdie_jax.data.layout import IGNORE_ID, layout_sample
from birdie_jax.errors import DataError
from birdie_jax.tokenizer import Tokenizer


class ContinuingStreams:
    """Iterator of batches {inputs, targets, segment_ids, positions, region, arm_ids: [b t], continues: [b]}."""

    def __init__(self, documents: Sequence[str], tokenizer: Tokenizer, *, seq_len: int, batch_size: int, seed: int,
                 shuffle: bool = True, shard_index: int = 0, shard_count: int = 1):
        if not documents:
            raise DataError("truncated BPTT needs at least one training document")
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
        self.documents = list(documents)[shard_index::shard_count]
        if not self.documents:
            raise DataError(f"data shard {shard_index} of {shard_count} holds no documents")
        self.tokenizer, self.seq_len, self.batch_size = tokenizer, seq_len, batch_size
        self.seed, self.shuffle = seed, shuffle
        # Per row: [epoch, index of the row's document within its epoch share, token offset].
        self._rows = [[0, 0, 0] for _ in range(batch_size)]
        self._cache: dict[int, dict[str, np.ndarray]] = {}

    # ----------------------------------------------------------------- documents of a row

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.documents)
        return np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)

    def _document(self, row: int, epoch: int, k: int) -> tuple[int, int, int] | None:
        """(epoch, k, document id) of row ``row``'s k-th document in ``epoch``, skipping empty shares."""
        for _ in range(len(self.documents) + 1):
            share = self._order(epoch)[row::self.batch_size]
            if k < len(share):
                return epoch, k, int(share[k])
            epoch, k = epoch + 1, 0
        return None

    def _laid_out(self, doc_id: int) -> dict[str, np.ndarray]:
        if doc_id not in self._cache:
            if len(self._cache) > 4 * self.batch_size:
                self._cache.clear()
            special = self.tokenizer.special
            tokens = np.concatenate([self.tokenizer.encode(self.documents[doc_id]), [special.eos]]).astype(np.int32)
            self._cache[doc_id] = layout_sample(np.zeros(0, np.int32), tokens, bg_id=special.bg)
        return self._cache[doc_id]

    # ----------------------------------------------------------------- batches

    def _fill_row(self, r: int) -> tuple[dict[str, np.ndarray], bool]:
        t = self.seq_len
        out = {"inputs": np.zeros(t, np.int32), "targets": np.full(t, IGNORE_ID, np.int32),
               "segment_ids": np.zeros(t, np.int32), "positions": np.zeros(t, np.int32),
               "region": np.full(t, 2, np.int32), "arm_ids": np.full(t, -1, np.int32)}
        epoch, k, offset = self._rows[r]
        continues = offset > 0
        filled, segment = 0, 0
        while filled < t:
            found = self._document(r, epoch, k)
            if found is None:  # more rows than documents: this row has none at all
                out["inputs"][filled:] = self.tokenizer.special.pad
                break
            epoch, k, doc_id = found
            sample = self._laid_out(doc_id)
            n = min(t - filled, len(sample["inputs"]) - offset)
            segment += 1
            span = slice(filled, filled + n)
            out["inputs"][span] = sample["inputs"][offset:offset + n]
            out["targets"][span] = sample["targets"][offset:offset + n]
            out["region"][span] = sample["region"][offset:offset + n]
            out["segment_ids"][span] = segment
            out["positions"][span] = np.arange(offset, offset + n)
            filled, offset = filled + n, offset + n
            if offset == len(sample["inputs"]):
                k, offset = k + 1, 0
        self._rows[r] = [epoch, k, offset]
        return out, continues

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        rows, continues = zip(*(self._fill_row(r) for r in range(self.batch_size)))
        batch = {k: np.stack([row[k] for row in rows]) for k in rows[0]}
        batch["continues"] = np.asarray(continues, bool)
        return batch

    # ----------------------------------------------------------------- checkpointing (Grain handler protocol)

    def get_state(self) -> bytes:
        return json.dumps({"rows": self._rows, "seed": self.seed, "batch_size": self.batch_size}).encode()

    def set_state(self, state: bytes) -> None:
        saved = json.loads(state)
        if saved["batch_size"] != self.batch_size or saved["seed"] != self.seed:
            raise DataError(f"stream state was saved with batch_size={saved['batch_size']}, seed={saved['seed']}; "
                            f"this run has batch_size={self.batch_size}, seed={self.seed}")
        self._rows = [list(r) for r in saved["rows"]]

    def start_prefetch(self) -> None:
        """Part of the Grain checkpoint protocol; nothing is prefetched."""
