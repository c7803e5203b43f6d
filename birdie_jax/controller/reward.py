"""Per-arm reward from a validation-loss change (spec §6.3) and class-normalised scoring.

Axis letters: n arms, c classes, k candidates.
"""

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from birdie_jax.array_types import Array

_E = math.e


def reward(old_loss, new_loss) -> Array:
    """Reward of each arm for a loss change old → new (public-code sign convention).

    d = (new − old)/(old + 1e−8);  R = clip(−100·e·tanh(e·√(old·new)·d³), −1, 1);  NaN → 0.
    A loss decrease gives a positive reward. The paper's printed A.1.3 formula has the
    opposite sign (a slip); this follows the public code, as the spec does.

    Args:
      old_loss, new_loss: array-likes of the same shape (any shape), e.g. float[n].

    Returns:
      float32 array of the broadcast shape, in [−1, 1].
    """
    old = jnp.asarray(old_loss, jnp.float32)
    new = jnp.asarray(new_loss, jnp.float32)
    d = (new - old) / (old + 1e-8)
    r = jnp.clip(-100.0 * _E * jnp.tanh(_E * jnp.sqrt(old * new) * d**3), -1.0, 1.0)
    return jnp.where(jnp.isnan(r), 0.0, r) + 0.0  # + 0.0 turns −0 into 0


def class_index(arm_classes: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
    """(class names in order of first appearance, int32[n] class id of each arm)."""
    names: list[str] = []
    for c in arm_classes:
        if c not in names:
            names.append(c)
    return tuple(names), np.asarray([names.index(c) for c in arm_classes], np.int32)


def class_onehot(class_ids: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """float32[n c]: 1 where arm i belongs to class c."""
    class_ids = np.asarray(class_ids)
    num_classes = int(class_ids.max()) + 1 if num_classes is None else num_classes
    return (class_ids[:, None] == np.arange(num_classes)[None, :]).astype(np.float32)


def class_weights(onehot: Array) -> Array:
    """float32[n]: 1/N_c for each arm, N_c the number of arms of its class."""
    onehot = jnp.asarray(onehot, jnp.float32)
    return onehot @ (1.0 / jnp.maximum(onehot.sum(axis=0), 1.0))


def class_normalised_score(values: Array, onehot: Array) -> Array:
    """Σ_c (1/N_c) Σ_{i∈c} values_i over the last axis: float[..., n] → float[...].

    Every class weighs the same whatever its number of arms (spec §6.5 step 3).
    """
    return jnp.asarray(values, jnp.float32) @ class_weights(onehot)
