"""The critic sized to the run (issue 18): scaling rule, explicit values kept, paper configs,
and the background-compiled update deciding exactly as the jitted one."""

import numpy as np
import pytest

from birdie_jax.config import load_config
from birdie_jax.controller import BirdieController, ControllerConfig, sized_to_run

ARMS = 95


def test_paper_length_gets_paper_constants_and_short_runs_a_smaller_critic():
    for steps in (32_000, 64_000):
        cfg = sized_to_run(ControllerConfig(), steps, ARMS)
        assert (cfg.critic_width, cfg.critic_state, cfg.critic_steps, cfg.num_candidates) == (256, 512, 200, 2048)
    # s = (400/32000)^(1/3) = 0.2321: width 256·s = 59.4 → 64, state 128, steps round(46.4) = 46.
    cfg = sized_to_run(ControllerConfig(), 400, ARMS)
    assert (cfg.critic_width, cfg.critic_state, cfg.critic_steps) == (64, 128, 46)
    assert cfg.num_candidates == 476  # 2048·0.2321 = 475.4 → a multiple of 4
    # 20 steps: 256·0.0855 = 21.9 < 95/4 = 23.75 → 24; steps max(10, round(17.1)) = 17.
    cfg = sized_to_run(ControllerConfig(), 20, ARMS)
    assert (cfg.critic_width, cfg.critic_state, cfg.critic_steps, cfg.num_candidates) == (24, 48, 17, 256)
    assert sized_to_run(ControllerConfig(), 1, 4).critic_width == 16  # floors
    assert sized_to_run(ControllerConfig(), 1, 4).critic_steps == 10


def test_explicit_sizes_are_kept_and_a_fully_set_config_is_returned_as_is():
    cfg = sized_to_run(ControllerConfig(critic_width=40), 20, ARMS)
    assert (cfg.critic_width, cfg.critic_state) == (40, 80)
    full = ControllerConfig(critic_width=8, critic_state=8, critic_steps=3, num_candidates=8)
    assert sized_to_run(full, 20, ARMS) is full
    for name in ("hawk_paper", "gated_ssm_paper", "transformer_paper"):
        c = load_config(name).controller
        assert (c.critic_width, c.critic_state, c.critic_steps, c.num_candidates) == (256, 512, 200, 2048), name
    assert load_config("default").controller.critic_width is None  # sized to its 400 steps
    ctl = BirdieController(["a", "b", "b"], 400, ControllerConfig())
    assert (ctl.config.critic_width, ctl.config.critic_steps) == (64, 46)
    with pytest.raises(ValueError, match="sized_to_run"):
        from birdie_jax.controller import init_critic
        init_critic(0, 3, ControllerConfig())


def test_background_compiled_update_decides_like_the_jitted_one():
    cfg = ControllerConfig(critic_width=8, critic_state=8, critic_layers=1, critic_steps=3, num_candidates=64,
                           warmup_steps=2, evaluation_steps=(1,), evaluation_every=1, scale_short_runs=False)
    classes = ["a", "a", "b"]
    rng = np.random.default_rng(0)
    losses = rng.uniform(2, 4, (6, 3))
    early, plain = BirdieController(classes, 8, cfg, seed=3), BirdieController(classes, 8, cfg, seed=3)
    early.compile_in_background()
    for step, loss in zip(range(1, 7), losses):
        np.testing.assert_array_equal(early.observe(step, loss), plain.observe(step, loss))
    assert early._compiled is not None and early.background_compile_s > 0
    assert early.metrics() == plain.metrics()
