"""Candidate actions and the choice among them (spec §6.5). Axis letters: k candidates, n arms."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from birdie_jax.array_types import Array


def generate_candidates(key: Array, num_arms: int, num_candidates: int,
                        pareto_shapes: Sequence[float] = (3.0, 2.0, 1.0)) -> Array:
    """float32[k n] probability vectors: equal groups of U(0,1)^n and elementwise Pareto(α)
    draws (one group per shape), each row normalised to sum 1.

    With the defaults: K/4 uniform, K/4 each Pareto α = 3, 2, 1. ``num_candidates`` must be a
    multiple of the number of groups.
    """
    groups = 1 + len(pareto_shapes)
    per = num_candidates // groups
    if per * groups != num_candidates:
        raise ValueError(f"num_candidates ({num_candidates}) must be a multiple of {groups}")
    keys = jax.random.split(key, groups)
    draws = [jax.random.uniform(keys[0], (per, num_arms), jnp.float32, minval=1e-6, maxval=1.0)]
    draws += [jax.random.pareto(k, alpha, (per, num_arms), jnp.float32) for k, alpha in zip(keys[1:], pareto_shapes)]
    x = jnp.concatenate(draws, axis=0)
    x = x / jnp.max(x, axis=-1, keepdims=True)  # heavy Pareto tails: scale first so the sum cannot overflow
    return x / jnp.sum(x, axis=-1, keepdims=True)


def select_action(candidates: Array, scores: Array, top_k: int = 8) -> Array:
    """The mean of the ``top_k`` highest-scoring candidates, renormalised: float[n].

    No softmax and no temperature (spec §6.5 step 4).
    """
    _, best = jax.lax.top_k(scores, top_k)
    action = jnp.mean(candidates[best], axis=0)
    return action / jnp.sum(action)
