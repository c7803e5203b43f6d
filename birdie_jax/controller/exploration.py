"""Warm-up and exploration actions (spec §6.6, §6.7). Axis letters: n arms, c classes."""

import jax
import jax.numpy as jnp

from birdie_jax.array_types import Array


def uniform_class_action(onehot: Array) -> Array:
    """float32[n]: uniform over classes, then uniform within a class: 1/(C·N_c)."""
    onehot = jnp.asarray(onehot, jnp.float32)
    per_class = 1.0 / (onehot.shape[1] * jnp.maximum(onehot.sum(axis=0), 1.0))
    return onehot @ per_class


def exploration_action(key: Array, onehot: Array, delta: float = 0.01, max_classes: int = 2) -> Array:
    """A random exploration action, float32[n] ≥ 0 summing to 1.

    Picks k ∈ {1..max_classes} distinct classes uniformly (k itself uniform); each picked
    class gets U(0,1) weights over its arms normalised within the class (total 1); each
    arm of an unpicked class gets δ/N_c (total δ per class); the whole is normalised.
    Jittable; the number of classes is static (``onehot`` is float[n c]).
    """
    onehot = jnp.asarray(onehot, jnp.float32)
    num_classes = onehot.shape[1]
    k_count, k_perm, k_weights = jax.random.split(key, 3)
    count = jnp.minimum(jax.random.randint(k_count, (), 1, max_classes + 1), num_classes)
    order = jax.random.permutation(k_perm, num_classes)
    picked = jnp.zeros((num_classes,), jnp.float32).at[order].set((jnp.arange(num_classes) < count).astype(jnp.float32))
    u = jax.random.uniform(k_weights, (onehot.shape[0],), jnp.float32, minval=1e-6, maxval=1.0)
    within = u / (onehot @ (u @ onehot))
    sizes = onehot @ jnp.maximum(onehot.sum(axis=0), 1.0)
    weights = jnp.where(onehot @ picked > 0, within, delta / sizes)
    return weights / weights.sum()
