"""The critic sized to the run: width, state, training steps and candidates scaled from (steps, arms).

The paper's critic (width 256, state 512, 200 AdamW steps per update) was sized for a
32,000-step run. The schedule (spec §6.7) gives every run about the same number of
updates (~34) whatever its length N, so a fixed critic costs a fixed amount of time while
the training time grows with N: on a 20-step run the paper's critic is 90 % of the wall
time. Here a run of N steps gets, with f = min(1, N / reference_steps) and s = f^(1/3):

- ``critic_width`` = 256·s, at least n/4 (n arms) and 16, rounded up to a multiple of 8,
  at most 256;
- ``critic_state`` = 2 × critic_width;
- ``critic_steps`` = round(200·s), at least 10;
- ``num_candidates`` = 2048·s, at least 256, rounded up to a multiple of the candidate
  groups (scoring K candidates is the largest part of a small critic's update).

One update costs ∝ steps × width × state ∝ s⁴ = f^(4/3), the run ∝ f, so the
controller's share of a run shrinks like f^(1/3) below the paper's length instead of
growing like 1/f. A 32,000-step (or longer) run gets exactly the paper's constants.
Fields set in the config are kept as they are.
"""

import dataclasses
import math

from birdie_jax.controller.config import ControllerConfig

PAPER_WIDTH = 256
PAPER_STEPS = 200
PAPER_CANDIDATES = 2048
MIN_CANDIDATES = 256
MIN_WIDTH = 16
MIN_STEPS = 10


def run_scale(total_steps: int, cfg: ControllerConfig) -> float:
    """s = min(1, N / reference_steps)^(1/3)."""
    return min(1.0, total_steps / cfg.reference_steps) ** (1.0 / 3.0)


def sized_width(total_steps: int, num_arms: int, cfg: ControllerConfig) -> int:
    width = max(PAPER_WIDTH * run_scale(total_steps, cfg), num_arms / 4, MIN_WIDTH)
    return min(PAPER_WIDTH, 8 * math.ceil(width / 8))


def sized_steps(total_steps: int, cfg: ControllerConfig) -> int:
    return max(MIN_STEPS, round(PAPER_STEPS * run_scale(total_steps, cfg)))


def sized_candidates(total_steps: int, cfg: ControllerConfig) -> int:
    groups = 1 + len(cfg.pareto_shapes)
    wanted = max(PAPER_CANDIDATES * run_scale(total_steps, cfg), MIN_CANDIDATES, cfg.top_k)
    return groups * math.ceil(wanted / groups)


def sized_to_run(cfg: ControllerConfig, total_steps: int, num_arms: int) -> ControllerConfig:
    """``cfg`` with every unset (None) critic size filled in for a run of ``total_steps`` over
    ``num_arms`` arms; a config whose sizes are all set comes back unchanged (equal and
    hashing alike, so it shares its compiled update)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    width = cfg.critic_width if cfg.critic_width is not None else sized_width(total_steps, num_arms, cfg)
    state = cfg.critic_state if cfg.critic_state is not None else 2 * width
    steps = cfg.critic_steps if cfg.critic_steps is not None else sized_steps(total_steps, cfg)
    k = cfg.num_candidates if cfg.num_candidates is not None else sized_candidates(total_steps, cfg)
    if (width, state, steps, k) == (cfg.critic_width, cfg.critic_state, cfg.critic_steps, cfg.num_candidates):
        return cfg
    return dataclasses.replace(cfg, critic_width=width, critic_state=state, critic_steps=steps, num_candidates=k)


def require_sized(cfg: ControllerConfig, names: tuple[str, ...] = ("critic_width", "critic_state", "critic_steps",
                                                                   "num_candidates")) -> None:
    """Fails fast when one of these critic sizes is still None (call :func:`sized_to_run` first)."""
    unset = [n for n in names if getattr(cfg, n) is None]
    if unset:
        raise ValueError(f"controller config has no {', '.join(unset)}: size it for the run with "
                         "birdie_jax.controller.sizing.sized_to_run(cfg, total_steps, num_arms)")
