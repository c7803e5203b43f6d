"""Grain input pipeline: documents -> tokens -> samples -> packed rows -> batches.

Stages (spec §5, engineering note §1 "Grain")::

    MapDataset.source(documents)
      -> shuffle(seed)                 (if shuffle; reshuffled every epoch)
      -> repeat(num_epochs)            (None = forever)
      -> tokenize + EOS                (per stream index i, kept with the tokens)
      -> [shard_index::shard_count]    (multi-host: one slice per process)
      -> to_iter_dataset (tokenizing in prefetch threads)
      -> sample_transform + layout_sample  (data/samples.py: when the packer needs the document)
      -> pack (next fit, in order) -> batch -> mp_prefetch

The map is lazy, so only this shard's documents are tokenized; it sits before the
slice so that each document's rng depends on its global stream index, not on the
shard count. The transform runs in the consumer's thread (in the worker with
``num_workers > 0``), so a live transform's new parameters (e.g. mixture
probabilities set between training steps) apply to every document read afterwards.

**sample_transform contract.** ``sample_transform(tokens, rng) -> list[(prefix, labels)]``:

* ``tokens``: [n] int32, the document's ids with EOS appended (n >= 1);
* ``rng``: ``np.random.default_rng([seed, i])`` where i is the document's index in
  the shuffled, repeated stream, so the output is reproducible and independent of
  the number of workers; a document seen in a later epoch gets a fresh rng;
* returns zero or more (prefix [P] int32, labels [N] int32) pairs, or
  (prefix, labels, arm_id) triples, or (prefix, labels, arm_id, label_mask bool[N]) with
  loss only on the masked labels, with N >= 1 and P + N <= seq_len (the laid-out
  length; ValueError otherwise). Each becomes one packed segment via
  :func:`~birdie_jax.data.layout.layout_sample`; ``arm_id`` (default -1) fills the
  segment's ``arm_ids``.
* a transform with a ``snapshot()`` method is *live* (its parameters may change while
  the pipeline runs) and is also called as ``transform(tokens, rng, snapshot=...)``;
  see :mod:`birdie_jax.data.samples`.
* It must be picklable (module-level function or ``functools.partial``) when
  ``num_workers > 0``.

The default, :func:`next_token_samples`, cuts the document into consecutive pieces of
at most seq_len tokens with empty prefixes (nothing is lost).

With ``num_workers > 0`` Grain gives each worker the stream slice
``worker::num_workers`` and interleaves their batches, so the batch stream is
deterministic for a fixed worker count; with one worker it equals ``num_workers=0``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import grain
import numpy as np

from birdie_jax.data.packing import PackIterDataset, Row, stack_rows
from birdie_jax.data.samples import SampleIterDataset
from birdie_jax.errors import DataError
from birdie_jax.tokenizer import Tokenizer

SampleTransform = Callable[..., Sequence[tuple]]

# Few threads: the per-document work is Python/NumPy (GIL-bound); real parallelism
# comes from mp_prefetch workers.
_READ_OPTIONS = grain.ReadOptions(num_threads=2, prefetch_buffer_size=64)


def next_token_samples(
    tokens: np.ndarray, rng: np.random.Generator, *, max_len: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Default transform (NTP): tokens [n] -> pieces ([] , tokens[i:i+max_len]) in order."""
    del rng  # deterministic cut
    empty = np.zeros(0, np.int32)
    return [(empty, tokens[i : i + max_len]) for i in range(0, tokens.shape[0], max_len)]


def _tokenize(index: int, text: str, *, tokenizer: Tokenizer) -> tuple[int, np.ndarray]:
    """Stream element i (a document) -> (i, its ids [n] int32 with EOS appended). Elements that
    are not text (task examples, :mod:`birdie_jax.data.sources`) pass through for their transform."""
    if not isinstance(text, str):
        return index, text
    tokens = np.concatenate([tokenizer.encode(text), np.asarray([tokenizer.special.eos], np.int32)])
    return index, tokens


def _ensure_absl_flags_parsed() -> None:
    """Grain's multiprocess prefetch reads absl flags; outside an absl app they are
    unparsed and reading them raises, so accept their defaults (no-op under absl.app)."""
    from absl import flags  # noqa: PLC0415 (grain dependency)

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def _check_args(documents: Sequence[str], seq_len: int, batch_size: int) -> None:
    if len(documents) == 0:
        raise DataError("the document list is empty: nothing to train or evaluate on")
    if seq_len < 1 or batch_size < 1:
        raise ValueError(f"seq_len and batch_size must be >= 1, got {seq_len} and {batch_size}")


def make_batch_dataset(
    documents: Sequence[str],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    sample_transform: SampleTransform | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
) -> grain.IterDataset:
    """The pipeline as a Grain IterDataset (see :func:`make_batch_iterator`)."""
    _check_args(documents, seq_len, batch_size)
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if sample_transform is None:
        sample_transform = functools.partial(next_token_samples, max_len=seq_len)

    ds = grain.MapDataset.source(list(documents))
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    ds = ds.map_with_index(functools.partial(_tokenize, tokenizer=tokenizer))
    if shard_count > 1:
        ds = ds[shard_index::shard_count]
    pad_id = tokenizer.special.pad
    it_ds = SampleIterDataset(
        ds.to_iter_dataset(_READ_OPTIONS),
        transform=sample_transform,
        seed=seed,
        seq_len=seq_len,
        bg_id=tokenizer.special.bg,
    )
    it_ds = PackIterDataset(it_ds, seq_len=seq_len, pad_id=pad_id)
    it_ds = it_ds.batch(
        batch_size,
        batch_fn=functools.partial(stack_rows, batch_size=batch_size, seq_len=seq_len, pad_id=pad_id),
    )
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return it_ds


def make_batch_iterator(
    documents: Sequence[str],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    seed: int,
    sample_transform: SampleTransform | None = None,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
    num_workers: int = 0,
) -> grain.DatasetIterator:
    """Checkpointable iterator of batches {field: [batch_size, seq_len] int32}.

    Fields: ``inputs``, ``targets`` (-100 = no loss), ``segment_ids`` (0 = padding),
    ``positions``, ``region``, ``arm_ids`` (the arm id the transform gave each sample,
    -1 if none). Padding: inputs = PAD, targets -100, segment 0, position 0, region 2,
    arm id -1. A finite stream (``num_epochs`` set) ends with a batch
    completed by padding rows. Same arguments -> same batches; ``get_state()`` /
    ``set_state()`` (or ``grain.checkpoint.CheckpointSave/Restore`` in Orbax) resume
    exactly. See the module docstring for ``sample_transform``.
    """
    return iter(
        make_batch_dataset(
            documents,
            tokenizer,
            seq_len=seq_len,
            batch_size=batch_size,
            seed=seed,
            sample_transform=sample_transform,
            shuffle=shuffle,
            num_epochs=num_epochs,
            shard_index=shard_index,
            shard_count=shard_count,
            num_workers=num_workers,
        )
    )


def make_eval_batches(
    documents: Sequence[str],
    tokenizer: Tokenizer,
    *,
    seq_len: int,
    batch_size: int,
    num_batches: int,
    seed: int,
    sample_transform: SampleTransform | None = None,
) -> list[Row]:
    """A fixed list of ``num_batches`` validation batches (same format, documents in order).

    If the documents hold fewer batches, the stream cycles through them again (later
    passes get fresh transform rngs), so the list always has ``num_batches`` entries.
    """
    _check_args(documents, seq_len, batch_size)
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    it = make_batch_iterator(
        documents,
        tokenizer,
        seq_len=seq_len,
        batch_size=batch_size,
        seed=seed,
        sample_transform=sample_transform,
        shuffle=False,
        num_epochs=None,
    )
    return [next(it) for _ in range(num_batches)]
