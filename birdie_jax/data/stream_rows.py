"""Stream packing (``data.packing: stream``): rows are contiguous chunks of an EOS-joined stream.

The training setting of arXiv 2507.02782: the documents of an epoch (shuffled every epoch) are
joined into one token stream ``[BG] d1 EOS d2 EOS ...`` and cut into consecutive chunks of
``seq_len`` tokens; a row is one chunk, with **no state reset inside it** (one segment, even
across document boundaries), so the state after a row is a state after ``seq_len`` real tokens.
Row inputs are the chunk, targets the chunk shifted by one token (the next chunk's first token
ends the row), so no token is lost or repeated between consecutive chunks.

Two layouts of chunks into batches:

* ``per_row=False`` (state passing, noise, zero init): one stream; batch k holds chunks
  k·b … k·b + b − 1 in row order. Row i of batch k+1 is b chunks after row i of batch k:
  state passing carries a state of *other* text, as the paper does.
* ``per_row=True`` (truncated BPTT): b streams, the epoch's documents dealt round-robin (document
  j to stream j mod b); row r of every batch is the next chunk of stream r, so carrying row r's
  state from batch to batch equals one pass over stream r (with the gradient stopped between
  chunks). ``continues[r]`` is False only for a stream's first chunk.

All rows are full: no padding. The iterator state (a cursor per stream) is a few integers,
saved in checkpoints through Grain's handler protocol (``get_state`` → bytes, ``set_state``).
"""

import json
from collections.abc import Sequence

import numpy as np

from birdie_jax.data.layout import REGION_CAUSAL
from birdie_jax.errors import DataError
from birdie_jax.tokenizer import Tokenizer

Cursor = list[int]  # [epoch, index of the document within the stream's share (-1: the opening BG), offset]


class StreamRows:
    """Iterator of batches {inputs, targets, segment_ids, positions, region, arm_ids: int32[b t],
    continues: bool[b]}."""

    def __init__(self, documents: Sequence[str], tokenizer: Tokenizer, *, seq_len: int, batch_size: int, seed: int,
                 per_row: bool = False, shuffle: bool = True, shard_index: int = 0, shard_count: int = 1):
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len}, {batch_size}")
        documents = list(documents)[shard_index::shard_count]
        if not documents:
            raise DataError(f"data.packing=stream: data shard {shard_index} of {shard_count} holds no documents")
        special = tokenizer.special
        self._tokens = [np.append(tokenizer.encode(d), special.eos).astype(np.int32) for d in documents]
        self._bg = np.asarray([special.bg], np.int32)
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.per_row, self.shuffle = per_row, shuffle
        streams = batch_size if per_row else 1
        if per_row and len(documents) < batch_size:
            raise DataError(f"data.packing=stream with initial_state=tbtt deals documents to {batch_size} rows but "
                            f"the corpus shard holds only {len(documents)} documents; lower data.batch_size")
        total = sum(len(t) for t in self._tokens) + 1
        if seq_len + 1 > total // streams:
            where = f" per row ({streams} rows)" if per_row else ""
            raise DataError(f"data.seq_len={seq_len} is larger than the token stream: {total} tokens in "
                            f"{len(documents)} documents{where} give {total // streams} tokens{where}, and a row "
                            f"needs seq_len + 1 = {seq_len + 1}; lower data.seq_len or add documents")
        self._cursors: list[Cursor] = [[0, -1, 0] for _ in range(streams)]
        self._orders: dict[int, np.ndarray] = {}

    # ----------------------------------------------------------------- the streams

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) > 4:
                self._orders.clear()
            n = len(self._tokens)
            self._orders[epoch] = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle \
                else np.arange(n)
        return self._orders[epoch]

    def _share(self, stream: int, epoch: int) -> np.ndarray:
        order = self._order(epoch)
        return order[stream::self.batch_size] if self.per_row else order

    def _read(self, stream: int, cursor: Cursor, n: int) -> tuple[np.ndarray, Cursor]:
        """The next n tokens of ``stream`` from ``cursor``, and the cursor after them."""
        epoch, k, offset = cursor
        pieces = []
        while n:
            share = self._share(stream, epoch)
            if k >= len(share):
                epoch, k, offset = epoch + 1, 0, 0
                continue
            document = self._bg if k < 0 else self._tokens[share[k]]
            piece = document[offset:offset + n]
            pieces.append(piece)
            n -= len(piece)
            offset += len(piece)
            if offset == len(document):
                k, offset = k + 1, 0
        return np.concatenate(pieces), [epoch, k, offset]

    def _chunk(self, stream: int) -> tuple[np.ndarray, bool]:
        """The next seq_len + 1 tokens of a stream (it advances by seq_len), and whether it continues."""
        cursor = self._cursors[stream]
        continues = cursor != [0, -1, 0]
        tokens, after = self._read(stream, cursor, self.seq_len)
        following, _ = self._read(stream, after, 1)
        self._cursors[stream] = after
        return np.concatenate([tokens, following]), continues

    # ----------------------------------------------------------------- batches

    def __iter__(self):
        return self

    def __next__(self) -> dict[str, np.ndarray]:
        b, t = self.batch_size, self.seq_len
        chunks = [self._chunk(r if self.per_row else 0) for r in range(b)]
        tokens = np.stack([c for c, _ in chunks])
        continues = [c for _, c in chunks] if self.per_row else [b == 1 and c for _, c in chunks]
        return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": np.ones((b, t), np.int32),
                "positions": np.broadcast_to(np.arange(t, dtype=np.int32), (b, t)).copy(),
                "region": np.full((b, t), REGION_CAUSAL, np.int32), "arm_ids": np.full((b, t), -1, np.int32),
                "continues": np.asarray(continues, bool)}

    # ----------------------------------------------------------------- checkpointing (Grain handler protocol)

    def get_state(self) -> bytes:
        return json.dumps({"cursors": self._cursors, "seed": self.seed, "batch_size": self.batch_size,
                           "per_row": self.per_row}).encode()

    def set_state(self, state: bytes) -> None:
        saved = json.loads(state)
        ours = {"seed": self.seed, "batch_size": self.batch_size, "per_row": self.per_row}
        if any(saved.get(k) != v for k, v in ours.items()):
            raise DataError(f"stream state was saved with {({k: saved.get(k) for k in ours})}; this run has {ours}")
        self._cursors = [list(c) for c in saved["cursors"]]

    def start_prefetch(self) -> None:
        """Part of the Grain checkpoint protocol; nothing is prefetched."""
