"""Birdie's reward-driven mixture controller (spec §6.3–§6.7).

- :func:`reward`: per-arm reward from an old and a new validation loss.
- :class:`BirdieController`: schedule, history, jitted critic update, exploration,
  metrics and a checkpointable ``state_dict``.
- :class:`ControllerConfig`: every constant (defaults = the paper's; the critic's size
  defaults to one scaled from the run, :func:`sized_to_run`).
- :func:`controller_update`: the one jitted update (critic training + selection).
- :mod:`birdie_jax.controller.plot`: ``plot_mixture(run_dir)`` (paper Fig. 5-style PNG).
"""

from birdie_jax.controller.config import ControllerConfig
from birdie_jax.controller.controller import BirdieController
from birdie_jax.controller.critic import (candidate_rewards, critic_forward, critic_mse, critic_step, init_critic,
                                          make_critic_optimizer, train_critic)
from birdie_jax.controller.exploration import exploration_action, uniform_class_action
from birdie_jax.controller.reward import class_index, class_normalised_score, class_onehot, class_weights, reward
from birdie_jax.controller.schedule import evaluation_steps, exploration_probability, history_capacity, warmup_end
from birdie_jax.controller.selection import generate_candidates, select_action
from birdie_jax.controller.sizing import sized_to_run
from birdie_jax.controller.update import controller_update, update_trace_count

__all__ = [
    "BirdieController", "ControllerConfig", "candidate_rewards", "class_index", "class_normalised_score",
    "class_onehot", "class_weights", "controller_update", "critic_forward", "critic_mse", "critic_step",
    "evaluation_steps", "exploration_action", "exploration_probability", "generate_candidates",
    "history_capacity", "init_critic", "make_critic_optimizer", "reward",
    "select_action", "sized_to_run", "train_critic", "uniform_class_action", "update_trace_count", "warmup_end",
]
