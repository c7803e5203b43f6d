"""Public home of Birdie's mixture controller: ``birdie_jax.mixture.reward`` and friends.

A thin re-export of :mod:`birdie_jax.controller` (where the code lives, in small modules).
"""

from birdie_jax.controller import (BirdieController, ControllerConfig, class_normalised_score, controller_update,
                                   evaluation_steps, exploration_probability, reward)

__all__ = ["BirdieController", "ControllerConfig", "class_normalised_score", "controller_update",
           "evaluation_steps", "exploration_probability", "reward"]
