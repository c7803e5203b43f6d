"""Gradient accumulation: the full batch's gradient, a micro-batch at a time.

Used by the train step (``train.grad_accum``) on one device and on a mesh alike: micro-batch
gradients are summed weighted by their label-token counts, so k micro-batches give exactly
the update of one full-batch step.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from birdie_jax.distributed.mesh import BATCH_AXES

Batch = dict[str, Any]
LossAndGrad = Callable[[Any, Batch], tuple[tuple[jax.Array, dict], Any]]
#: aux entries that are sums over the micro-batch (added up, not token-weighted).
SUM_KEYS = ("label_tokens", "class_loss_sum", "class_tokens")
#: aux entries with one value per batch row (concatenated back in row order).
ROW_KEYS = ("final_state",)
#: batch entries that are not token fields (split by rows, never re-sharded over time).
STATE_KEYS = ("initial_state",)


def split_micro_batches(batch: Batch, num_micro: int) -> Batch:
    """``{k: [B, ...]}`` → ``{k: [num_micro, B / num_micro, ...]}``, micro-batch j = rows
    ``[j·B/num_micro, (j+1)·B/num_micro)``.

    Under a mesh (``jax.set_mesh``, as :func:`shard_train_step` does) the stacked
    micro-batches are then constrained to ``P(None, ("data", "fsdp"), "sequence")`` so every
    micro-batch is split over all data-parallel devices (a one-off reshuffle of the token
    ids before the loop, instead of micro-batches living on a subset of the devices).

    The reshuffle moves only int32 token ids (``B·T·4`` bytes per field), negligible
    next to one micro-batch's activations.
    """
    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"gradient accumulation: batch of {x.shape[0]} rows does not split into "
                             f"{num_micro} micro-batches")
        return x.reshape((num_micro, x.shape[0] // num_micro) + x.shape[1:])

    micro = jax.tree.map(split, batch)
    token_fields = {k: v for k, v in micro.items() if k not in STATE_KEYS}
    mesh = jax.sharding.get_abstract_mesh()
    sizes = dict(mesh.shape) if mesh is not None else {}
    rows = tuple(a for a in BATCH_AXES if sizes.get(a, 1) > 1)
    if rows or sizes.get("sequence", 1) > 1:
        per_device_rows = 1
        for a in rows:
            per_device_rows *= sizes[a]

        def constrain(x):
            if x.shape[1] % per_device_rows:
                return x
            time = "sequence" if sizes.get("sequence", 1) > 1 and x.ndim >= 3 else None
            if time and x.shape[2] % sizes["sequence"]:
                time = None
            return jax.lax.with_sharding_constraint(x, PartitionSpec(None, rows or None, time))

        micro = {**micro, **jax.tree.map(constrain, token_fields)}
    return micro


def accumulate_gradients(loss_and_grad_fn: LossAndGrad, params: Any, batch: Batch,
                         num_micro: int) -> tuple[tuple[jax.Array, dict], Any]:
    """Gradients of the full batch, computed ``num_micro`` micro-batches at a time.

    Args:
      loss_and_grad_fn: ``(params, micro_batch) -> ((loss, aux), grads)`` where ``loss`` is
        the mean over the micro-batch's label tokens and ``aux["label_tokens"]`` their
        count. ``aux`` entries named in ``SUM_KEYS`` are sums and are added up, those in
        ``ROW_KEYS`` hold one value per row and are concatenated; other scalars are
        per-label-token means (like ``accuracy``) and are combined token-weighted.
      params: the parameters.
      batch: the full batch ``{field: [B, ...]}`` (``initial_state`` rows included).
      num_micro: number of micro-batches (1: a single call, no loop).

    Returns:
      ``((loss, aux), grads)`` as one call on the full batch would give. Accumulation runs
      in ``lax.scan`` (one micro-batch's activations live at a time).
    """
    if num_micro == 1:
        return loss_and_grad_fn(params, batch)
    micro = split_micro_batches(batch, num_micro)
    abstract_aux = jax.eval_shape(lambda: loss_and_grad_fn(params, jax.tree.map(lambda x: x[0], micro))[0][1])
    means = [k for k in abstract_aux if k not in SUM_KEYS + ROW_KEYS]
    sums = [k for k in abstract_aux if k in SUM_KEYS and k != "label_tokens"]

    def one(carry, mb):
        loss_sum, mean_sums, sum_sums, tokens, grad_sum = carry
        (loss, aux), grads = loss_and_grad_fn(params, mb)
        n = aux["label_tokens"].astype(jnp.float32)
        weight = jnp.maximum(n, 1.0)  # undoes the mean's max(n, 1) exactly; a micro-batch without labels adds 0
        grad_sum = jax.tree.map(lambda s, g: s + (g * weight).astype(s.dtype), grad_sum, grads)
        mean_sums = {k: mean_sums[k] + aux[k].astype(jnp.float32) * weight for k in means}
        sum_sums = {k: sum_sums[k] + aux[k].astype(jnp.float32) for k in sums}
        rows = {k: aux[k] for k in ROW_KEYS if k in aux}
        return (loss_sum + loss.astype(jnp.float32) * weight, mean_sums, sum_sums, tokens + n, grad_sum), rows

    init = (jnp.zeros((), jnp.float32), {k: jnp.zeros((), jnp.float32) for k in means},
            {k: jnp.zeros(abstract_aux[k].shape, jnp.float32) for k in sums}, jnp.zeros((), jnp.float32),
            jax.tree.map(jnp.zeros_like, params))
    (loss_sum, mean_sums, sum_sums, tokens, grad_sum), rows = jax.lax.scan(one, init, micro)
    denom = jnp.maximum(tokens, 1.0)
    grads = jax.tree.map(lambda g: (g / denom).astype(g.dtype), grad_sum)
    aux = {k: v / denom for k, v in mean_sums.items()}
    aux.update({k: v.astype(abstract_aux[k].dtype) for k, v in sum_sums.items()})
    aux["label_tokens"] = tokens.astype(abstract_aux["label_tokens"].dtype)
    for k, v in rows.items():  # [num_micro, B/num_micro, ...] -> [B, ...]
        aux[k] = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), v)
    return (loss_sum / denom, aux), grads
