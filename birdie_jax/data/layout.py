"""Prefix-LM sample layout (spec §5.1).

For prefix p and labels y (length n >= 1):

    inputs  = p + [BG] + y[:-1]            [len(p) + n]
    targets = [IGNORE] * len(p) + y        [len(p) + n]
    region  = 1 0 ... 0 (prefix) 2 ... 2   [len(p) + n]
    arm_ids = arm_id on every position      [len(p) + n]

BG sits at position c = len(p) and predicts y[0]; position c + j predicts y[j].
Region 2 marks the causal part (BG and every label slot): the reverse scan of
bidirectional layers is gated off there, so no label can leak (spec §5.4). Region 1
marks the first position of a sample with a non-empty prefix (informational; resets
come from segment ids).

``arm_id`` tags the sample with the objective configuration that made it (an index into
the mixture's arms, see :class:`birdie_jax.objectives.Mixture`; -1 = unknown), so the
training loop can report the loss per objective.

Example (paper): p = 4 5 6, y = 7 8 9 -> inputs 4 5 6 BG 7 8, targets - - - 7 8 9,
region 1 0 0 2 2 2.
"""

from __future__ import annotations

import numpy as np

#: Target id meaning "no loss at this position" (same convention as PyTorch/optax masks).
IGNORE_ID = -100

REGION_PREFIX = 0
REGION_PREFIX_START = 1
REGION_CAUSAL = 2


def layout_sample(
    prefix: np.ndarray | list[int], labels: np.ndarray | list[int], *, bg_id: int, arm_id: int = -1,
    label_mask: np.ndarray | None = None, prefix_targets: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """(prefix [P], labels [N]) -> {"inputs", "targets" [P+N] int32, "region" [P+N] int8, "arm_ids" [P+N] int32}.

    ``label_mask`` bool[N] (None: all True) keeps the loss on the masked labels only (the
    others are still read as inputs, e.g. a task's filler tokens). ``prefix_targets`` [P]
    (IGNORE where none) puts targets on prefix positions, unshifted (masked language
    modelling, JRT-RNN). Raises ValueError if labels is empty or no label carries loss
    (every sample must train on >= 1 token).
    """
    prefix = np.asarray(prefix, dtype=np.int32).reshape(-1)
    labels = np.asarray(labels, dtype=np.int32).reshape(-1)
    if labels.size == 0:
        raise ValueError(
            f"a sample needs at least one label token (got prefix of {prefix.size}, no labels)"
        )
    c = prefix.size
    inputs = np.concatenate([prefix, np.asarray([bg_id], np.int32), labels[:-1]])
    in_prefix = np.full(c, IGNORE_ID, np.int32) if prefix_targets is None else np.asarray(prefix_targets, np.int32)
    if in_prefix.shape != (c,):
        raise ValueError(f"prefix_targets has shape {in_prefix.shape}, the prefix {c} tokens")
    targets = np.concatenate([in_prefix, labels])
    if label_mask is not None:
        label_mask = np.asarray(label_mask, bool).reshape(-1)
        if label_mask.shape != labels.shape or not label_mask.any():
            raise ValueError(f"label_mask must be bool[{labels.size}] with at least one True, got {label_mask}")
        targets[c:][~label_mask] = IGNORE_ID
    region = np.full(c + labels.size, REGION_CAUSAL, np.int8)
    region[:c] = REGION_PREFIX
    if c:
        region[0] = REGION_PREFIX_START
    arm_ids = np.full(c + labels.size, arm_id, np.int32)
    return {"inputs": inputs, "targets": targets, "region": region, "arm_ids": arm_ids}
