"""Which state a training row may hand on (spec length-generalization §2, "What an intervention may carry").

State passing carries, and fitted noise fits its statistics to, each row's final state. Under
per-document packing the state after a row's last token is often not a state of text: a row
ending in padding (segment 0, which resets the state) ends in a state of PAD tokens only, the
same for every such row; a row whose last document is short ends in that short document's state.
So, per row:

* the **last document** is the last non-padding segment; its *length* is how many of the row's
  tokens it holds;
* the row's state **qualifies** if that length is at least ``min_fraction · seq_len``;
* a qualifying row without padding hands on its final state unchanged (when its last document
  began the row, that state continues the state the row started from);
* a qualifying row that ends in padding hands on the state after its last real token: the row
  is rotated so that its padding comes first and run again without gradient from a zero state,
  so the last document starts from zero exactly as in the training pass (or, when it began the
  row, from zero instead of the row's initial state) — a state of real text either way;
* a row that does not qualify hands on nothing: state passing keeps the previous carry (or zero,
  ``carry_fallback``) and the statistics skip it.

Under stream packing (``data.packing: stream``) every row is full text without resets, so every
state qualifies and nothing is recomputed.

Axis legend: b rows, t time.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from birdie_jax.array_types import Array, SegmentIds
from birdie_jax.data.layout import REGION_CAUSAL

State = list[dict[str, jax.Array]]
#: Interventions whose carried state or statistics must be states of real text (TBTT carries every
#: row's exact final state: its next chunk continues that very document).
QUALIFIED_KINDS = ("state_passing", "fitted_noise")


def last_document(segment_ids: SegmentIds) -> tuple[Array, Array, Array]:
    """(trailing padding int[b], last document's length int[b], ends in padding bool[b]) of packed rows."""
    t = segment_ids.shape[1]
    real = segment_ids != 0
    trailing = jnp.where(real.any(1), jnp.argmax(real[:, ::-1], axis=1), t)
    last_id = jnp.take_along_axis(segment_ids, jnp.clip(t - 1 - trailing, 0, t - 1)[:, None], axis=1)
    length = jnp.where(trailing < t, jnp.sum((segment_ids == last_id) & real, axis=1), 0)
    return trailing, length, trailing > 0


def rotate_rows(x: Array, shift: Array) -> Array:
    """x[b t ...] with row i rotated right by shift[i]: out[i, j] = x[i, (j − shift[i]) mod t]."""
    t = x.shape[1]
    index = (jnp.arange(t)[None, :] - shift[:, None]) % t
    return jnp.take_along_axis(x, index.reshape(index.shape + (1,) * (x.ndim - 2)), axis=1)


def qualifying_rows(segment_ids: SegmentIds, min_fraction: float) -> Array:
    """bool[b]: rows whose last document holds at least ``min_fraction`` of the row (and at least one token)."""
    _, length, _ = last_document(segment_ids)
    return (length >= min_fraction * segment_ids.shape[1]) & (length > 0)


def real_text_state(graphdef: nnx.GraphDef, params: nnx.State, batch: dict[str, Array], final_state: State,
                    min_fraction: float) -> tuple[State, Array]:
    """(state per row after its last real token, bool[b] whether it qualifies); see the module docstring.

    ``final_state`` is the training pass's state after each row's last token; rows that end in
    padding and qualify are recomputed (one forward pass without gradient, only when the batch
    has such a row).
    """
    segment_ids = batch["segment_ids"]
    trailing, _, padded = last_document(segment_ids)
    valid = qualifying_rows(segment_ids, min_fraction)
    recompute = padded & valid

    def after_last_real_token(_):
        region = batch.get("region")
        prefix = None if region is None else rotate_rows(region, trailing) != REGION_CAUSAL
        model = nnx.merge(graphdef, params)
        _, state = model(rotate_rows(batch["inputs"], trailing), rotate_rows(segment_ids, trailing), prefix,
                         return_state=True)
        return jax.tree.map(lambda s, f: jnp.where(recompute.reshape((-1,) + (1,) * (f.ndim - 1)), s, f).astype(
            f.dtype), state, final_state)

    state = jax.lax.cond(jnp.any(recompute), after_last_real_token, lambda _: final_state, None)
    return jax.lax.stop_gradient(state), valid
