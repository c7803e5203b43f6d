"""When the controller evaluates, when the warm-up ends, how often it explores (spec §6.6, §6.7).

Steps count optimizer updates done (1-based, like the training loop's ``done``): an
evaluation at step s sees the model after s updates and sets the mixture for steps s+1….
"""

import math

from birdie_jax.controller.config import ControllerConfig


def schedule_scale(total_steps: int, cfg: ControllerConfig) -> float:
    """N / reference_steps for runs shorter than the reference (when enabled), else 1."""
    if cfg.scale_short_runs and total_steps < cfg.reference_steps:
        return total_steps / cfg.reference_steps
    return 1.0


def scale_step(step: float, scale: float) -> int:
    """round(step·scale), half up, at least 1."""
    return max(1, int(math.floor(step * scale + 0.5)))


def evaluation_steps(total_steps: int, cfg: ControllerConfig = ControllerConfig()) -> tuple[int, ...]:
    """Sorted, distinct evaluation steps in [1, N).

    The listed ``evaluation_steps`` then every ``evaluation_every`` (multiples of it after the
    last listed step), all scaled by N/32000 for short runs. No evaluation falls at N itself:
    it could no longer change the mixture (the training loop's own final validation covers it).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be > 0, got {total_steps}")
    scale = schedule_scale(total_steps, cfg)
    horizon = total_steps / scale  # in reference (unscaled) steps
    raw = [s for s in cfg.evaluation_steps if s < horizon]
    k = max(cfg.evaluation_steps, default=0) // cfg.evaluation_every + 1
    while k * cfg.evaluation_every < horizon:
        raw.append(k * cfg.evaluation_every)
        k += 1
    return tuple(sorted({s for s in (scale_step(r, scale) for r in raw) if s < total_steps}))


def warmup_end(total_steps: int, cfg: ControllerConfig = ControllerConfig()) -> int:
    """First step at which an evaluation runs the critic update (250 at N = 32,000)."""
    if cfg.warmup_steps == 0:
        return 0
    return scale_step(cfg.warmup_steps, schedule_scale(total_steps, cfg))


def exploration_probability(step: float, total_steps: int, cfg: ControllerConfig = ControllerConfig()) -> float:
    """p(step): the chance an exploration action replaces the critic's choice (spec §6.6).

    1 for step < 0.05N; 0.5 for step < 0.1N; 0.2 + 0.15·(1 + cos(π(step − 0.1N)/0.4N))
    until 0.5N; then 0.2 (the default constants).
    """
    f1, f2, f3 = (f * total_steps for f in cfg.explore_fractions)
    if step < f1:
        return float(cfg.explore_full)
    if step < f2:
        return float(cfg.explore_half)
    if step < f3:
        amplitude = (cfg.explore_half - cfg.explore_floor) / 2
        return float(cfg.explore_floor + amplitude * (1.0 + math.cos(math.pi * (step - f2) / (f3 - f2))))
    return float(cfg.explore_floor)


def history_capacity(total_steps: int, cfg: ControllerConfig = ControllerConfig()) -> int:
    """H_max: ``cfg.history_capacity``, or (None) the evaluation count + 1 rounded up to a multiple of 8."""
    if cfg.history_capacity is not None:
        return cfg.history_capacity
    needed = len(evaluation_steps(total_steps, cfg)) + 1  # rows (one per evaluation after the first) + scoring slot
    return max(8, -(-needed // 8) * 8)
