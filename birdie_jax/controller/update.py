"""The controller update as ONE jitted function: critic training + candidate selection + exploration.

Shapes are static (history buffers padded to a fixed H_max per run, the number of valid
rows ``length`` traced), so a run compiles it once however long its history grows; every
controller with an equal config and arm count shares that compilation.
"""

import collections
import functools

import jax
import jax.numpy as jnp

from birdie_jax.array_types import Array
from birdie_jax.controller.config import ControllerConfig
from birdie_jax.controller.critic import candidate_rewards, train_critic
from birdie_jax.controller.exploration import exploration_action
from birdie_jax.controller.reward import class_normalised_score
from birdie_jax.controller.selection import generate_candidates, select_action
from birdie_jax.controller.sizing import require_sized

_TRACE_COUNTS: collections.Counter = collections.Counter()


def update_trace_count(cfg: ControllerConfig | None = None) -> int:
    """How many times :func:`controller_update` has been traced (each trace is a compilation)
    in this process: in all, or for one config."""
    return sum(_TRACE_COUNTS.values()) if cfg is None else _TRACE_COUNTS[cfg]


@functools.partial(jax.jit, static_argnames=("cfg",))
def controller_update(params, opt_state, loss_rows: Array, action_rows: Array, rewards: Array, length: Array,
                      current_loss: Array, onehot: Array, explore_prob: Array, key_data: Array, *,
                      cfg: ControllerConfig):
    """Trains the critic on the history, then picks the next action.

    Args:
      params, opt_state: critic parameters and AdamW state (warm start).
      loss_rows, action_rows, rewards: float32[H n] padded history (row t: loss at the
        start of interval t, the action run during it, the reward observed at its end).
      length: int32 scalar T, the number of valid rows.
      current_loss: float32[n], the losses just measured (the start of the next interval).
      onehot: float32[n c] class membership of each arm.
      explore_prob: float32 scalar p(step); with this probability an exploration action
        replaces the critic's choice (the critic trains regardless).
      key_data: uint32 raw PRNG key data for this update.
      cfg: static controller config.

    Returns:
      (params, opt_state, action float32[n], info) with info holding ``explored`` (bool),
      ``critic_action`` float32[n], ``critic_mse`` float32[critic_steps] (MSE before each
      step) and ``predicted_score`` (mean class-normalised score of the top candidates).
    """
    require_sized(cfg)
    _TRACE_COUNTS[cfg] += 1  # a Python side effect: runs only while tracing
    key = jax.random.wrap_key_data(key_data)
    k_train, k_candidates, k_explore, k_coin = jax.random.split(key, 4)
    mask = jnp.arange(loss_rows.shape[0]) < length
    params, opt_state, mse = train_critic(params, opt_state, loss_rows, action_rows, rewards, mask, k_train, cfg)

    candidates = generate_candidates(k_candidates, loss_rows.shape[1], cfg.num_candidates, cfg.pareto_shapes)
    scores = class_normalised_score(candidate_rewards(params, loss_rows, action_rows, length, current_loss,
                                                      candidates), onehot)
    critic_action = select_action(candidates, scores, cfg.top_k)

    explored = jax.random.uniform(k_coin, ()) < explore_prob
    explore = exploration_action(k_explore, onehot, cfg.explore_delta, cfg.explore_max_classes)
    action = jnp.where(explored, explore, critic_action)
    info = {"explored": explored, "critic_action": critic_action, "critic_mse": mse,
            "predicted_score": jnp.mean(jax.lax.top_k(scores, cfg.top_k)[0])}
    return params, opt_state, action, info
