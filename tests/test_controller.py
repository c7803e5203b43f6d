"""Birdie's mixture controller (spec §6.3–§6.7, §10 items 19–24; issue 4).

Small critic, arm count and history (the properties tested do not depend on the paper's
sizes); one controller config (SMALL) for every test that runs the jitted update, so it
compiles once for the whole module.
"""

import argparse
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from critic_reference import candidate_predictions, critic_predictions, reward as reference_reward

from birdie_jax import mixture
from birdie_jax.controller import (BirdieController, ControllerConfig, candidate_rewards, class_normalised_score,
                                   class_onehot, controller_update, critic_forward, critic_mse, evaluation_steps,
                                   exploration_action, exploration_probability, generate_candidates, init_critic,
                                   make_critic_optimizer, select_action, uniform_class_action, update_trace_count,
                                   warmup_end)
from birdie_jax.controller.plot import add_plot_mixture_parser, plot_mixture, run_plot_mixture
from birdie_jax.errors import BirdieError, ConfigError
from birdie_jax.training.checkpoint import abstract_like

# 8 arms in 4 classes of sizes 2, 3, 2, 1; evaluations every 10 steps, warm-up 30 steps.
CLASSES = ["a"] * 2 + ["b"] * 3 + ["c"] * 2 + ["d"]
N_ARMS, N_CLASSES = len(CLASSES), 4
SMALL = ControllerConfig(critic_width=32, critic_state=64, critic_layers=2, critic_steps=100, num_candidates=2048,
                         history_capacity=64, warmup_steps=30, evaluation_steps=(10,), evaluation_every=10,
                         scale_short_runs=False)
RUN_STEPS = 600  # → 59 evaluations, 56 updates


def run_bandit(rho, seed, *, controller=None, loss=None, stop_after=None):
    """Synthetic environment (spec §10 item 23): over each interval, every training step
    multiplies arm i's loss by (1 − ρ_i·a_i), a the action in force. Returns a record of
    every evaluation and the (controller, loss) to continue from."""
    ctl = controller or BirdieController(CLASSES, RUN_STEPS, SMALL, seed=seed)
    loss = np.full(N_ARMS, 5.0) if loss is None else loss
    last = max(ctl.last_step, 0)
    steps, probs, explored, lengths = [], [], [], []
    for s in ctl.evaluation_steps:
        if s <= ctl.last_step:
            continue
        if stop_after is not None and s > stop_after:
            break
        loss = loss * (1.0 - rho * ctl.probabilities) ** (s - last)
        last = s
        probs.append(ctl.observe(s, loss))
        steps.append(s)
        explored.append(ctl.metrics()["mixture/explored"])
        lengths.append(ctl.history_length)
    return dict(steps=np.array(steps), probs=np.array(probs), explored=np.array(explored, bool),
                lengths=np.array(lengths), controller=ctl, loss=loss)


def class_share(probs, name):
    return probs[..., np.array(CLASSES) == name].sum(-1)


def _jit_cache_size() -> int:
    return controller_update._cache_size() if hasattr(controller_update, "_cache_size") else 0


@pytest.fixture(scope="module", autouse=True)
def cache_size_before_module():
    """Executables in the update's jit cache before this module's first test (other modules
    may have compiled it for other configs)."""
    return _jit_cache_size()


@pytest.fixture(scope="module")
def high_rate_class():
    """Class ``c`` has clearly the largest rates; the run is done twice with the same seed."""
    rng = np.random.default_rng(7)
    rho = np.where(np.array(CLASSES) == "c", rng.uniform(0.008, 0.01, N_ARMS), rng.uniform(0.0005, 0.003, N_ARMS))
    return rho, run_bandit(rho, seed=0), run_bandit(rho, seed=0)


# ----------------------------------------------------------------------------- reward


def test_reward_test_vectors():
    old = [4.5, 0.6, 4.5, 4.5, 1.0, 4.5, 2.0, 3.0, float("nan")]
    new = [4.2, 0.5207, 4.4, 4.6, 0.9, 4.5, 1.0, 3.5, 4.0]
    r = np.asarray(mixture.reward(np.array(old), np.array(new)))
    want = [0.952, 0.954, 0.036, -0.037, 0.701, 0.0, 1.0, -1.0, 0.0]
    np.testing.assert_array_equal(np.round(r.astype(np.float64), 3), want)
    assert round(float(r[4]), 2) == 0.70
    # arrays in, array out (any shape), NaN → 0 on either side, always in [−1, 1]
    grid = np.asarray(mixture.reward(np.full((2, 3), 2.0), np.array([[1.9, np.nan, 2.5], [0.1, 2.0, 40.0]])))
    assert grid.shape == (2, 3) and np.all(np.isfinite(grid)) and np.all(np.abs(grid) <= 1.0)
    assert grid[0, 1] == 0.0 and grid[0, 0] > 0 > grid[0, 2]
    # Against the spec's formula re-derived in tests/critic_reference.py, over the whole range.
    rng = np.random.default_rng(0)
    old, new = rng.uniform(0.2, 8, 400), rng.uniform(0.2, 8, 400) * rng.choice([1.0, 0.99, 1.01, 0.9], 400)
    np.testing.assert_allclose(np.asarray(mixture.reward(old, new)), reference_reward(old, new), atol=2e-6)


def test_class_normalised_score_hand_case():
    # 3 classes of 1, 2 and 3 arms: 1/1·1 + 1/2·(2 + 4) + 1/3·(3 + 3 + 6) = 1 + 3 + 4 = 8
    onehot = class_onehot(np.array([0, 1, 1, 2, 2, 2]))
    values = np.array([[1.0, 2.0, 4.0, 3.0, 3.0, 6.0], [0.0, 1.0, 1.0, 0.0, 0.0, 3.0]], np.float32)
    np.testing.assert_allclose(np.asarray(class_normalised_score(values, onehot)), [8.0, 2.0], rtol=1e-6)


# ----------------------------------------------------------------------------- schedule


def test_exploration_schedule_values():
    n = 32_000
    assert exploration_probability(0, n) == 1.0
    assert exploration_probability(0.07 * n, n) == 0.5
    assert exploration_probability(0.3 * n, n) == pytest.approx(0.35)
    for frac in (0.5, 0.75, 1.0):
        assert exploration_probability(frac * n, n) == pytest.approx(0.2)
    # continuous at 0.1N and 0.5N, decreasing in between
    values = [exploration_probability(s, n) for s in np.linspace(0.1 * n, 0.5 * n, 50)]
    assert values[0] == pytest.approx(0.5) and values[-1] == pytest.approx(0.2, abs=1e-3)
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_evaluation_steps_paper_and_scaled():
    paper = evaluation_steps(32_000)
    assert paper[:10] == (10, 50, 250, 500, 1000, 1500, 2000, 3000, 4000, 5000)
    assert paper[-1] == 31_000 and all(b - a == 1000 for a, b in zip(paper[6:], paper[7:]))
    assert warmup_end(32_000) == 250
    assert evaluation_steps(64_000)[-1] == 63_000  # long runs are not scaled
    short = evaluation_steps(3_200)  # × 0.1: 1, 5, 25, 50, 100, 150, 200, 300, …
    assert short[:8] == (1, 5, 25, 50, 100, 150, 200, 300) and warmup_end(3_200) == 25
    tiny = evaluation_steps(400)  # × 0.0125: 10 and 50 both round to 1 → one evaluation
    assert tiny[:4] == (1, 3, 6, 13) and len(set(tiny)) == len(tiny) and max(tiny) < 400
    assert evaluation_steps(400, ControllerConfig(scale_short_runs=False)) == (10, 50, 250)
    ctl = BirdieController(CLASSES, 32_000, ControllerConfig(critic_width=8, critic_state=8, critic_layers=1))
    assert ctl.is_evaluation_step(250) and ctl.is_evaluation_step(3000) and not ctl.is_evaluation_step(2500)


def test_config_validation():
    with pytest.raises(ConfigError, match="multiple of 4"):
        ControllerConfig(num_candidates=2050)
    with pytest.raises(ConfigError, match="top_k"):
        ControllerConfig(num_candidates=4, top_k=8)
    cfg = ControllerConfig(evaluation_steps=[10, 20], pareto_shapes=[2.0])  # lists (YAML) → tuples, hashable
    assert cfg.evaluation_steps == (10, 20) and hash(cfg) == hash(ControllerConfig(evaluation_steps=(10, 20),
                                                                                   pareto_shapes=(2.0,)))


# ----------------------------------------------------------------------------- actions


def test_actions_are_distributions():
    onehot = class_onehot(np.array([0, 0, 1, 1, 1, 2, 2, 3]))
    sizes = onehot.sum(0)
    np.testing.assert_allclose(np.asarray(uniform_class_action(onehot)), onehot @ (1 / (4 * sizes)), rtol=1e-6)
    keys = jax.random.split(jax.random.key(0), 200)
    explore = np.asarray(jax.jit(jax.vmap(lambda k: exploration_action(k, onehot, 0.01)))(keys))
    assert np.all(explore >= 0) and np.allclose(explore.sum(-1), 1.0, atol=1e-6)
    per_class = explore @ onehot  # k picked classes hold 1/(k + (C−k)δ) each, the others δ/(k + (C−k)δ)
    picked = per_class > 0.05
    k = picked.sum(-1, keepdims=True)
    assert set(k.ravel()) == {1, 2}
    np.testing.assert_allclose(per_class, np.where(picked, 1.0, 0.01) / (k + (4 - k) * 0.01), rtol=1e-4)
    candidates = np.asarray(jax.jit(generate_candidates, static_argnums=(1, 2))(jax.random.key(1), 95, 2048))
    assert candidates.shape == (2048, 95) and np.all(candidates >= 0) and np.all(np.isfinite(candidates))
    np.testing.assert_allclose(candidates.sum(-1), 1.0, atol=1e-5)


def test_stub_critic_makes_arm_i_the_largest():
    onehot = class_onehot(np.array([0, 0, 1, 1, 1, 2, 2, 3]))
    candidates = generate_candidates(jax.random.key(2), N_ARMS, 2048)
    for i in range(N_ARMS):
        stub = candidates * (jnp.arange(N_ARMS) == i)  # r̂_j = candidate_j·[j = i]
        action = np.asarray(select_action(candidates, class_normalised_score(stub, onehot), 8))
        assert int(np.argmax(action)) == i
        assert np.all(action >= 0) and abs(action.sum() - 1) < 1e-6


def test_action_is_the_renormalised_mean_of_the_top_k():
    """Spec §6.5 step 4, re-derived with NumPy: the mean of the 8 best-scoring candidates, divided by its sum."""
    rng = np.random.default_rng(3)
    candidates = rng.dirichlet(np.ones(N_ARMS), 64).astype(np.float32) * rng.uniform(0.5, 2, (64, 1))
    scores = rng.normal(size=64).astype(np.float32)
    best = np.argsort(-scores)[:8]
    want = candidates[best].mean(0) / candidates[best].mean(0).sum()
    np.testing.assert_allclose(np.asarray(select_action(jnp.asarray(candidates), jnp.asarray(scores), 8)), want,
                               rtol=1e-5)


# ----------------------------------------------------------------------------- critic


def _random_critic(seed=0):
    """Critic parameters with every leaf randomised (so that no leaf can be dropped or swapped
    unnoticed: the initial norms are all equal and the biases zero)."""
    cfg = ControllerConfig(critic_width=32, critic_state=48, critic_layers=2, history_capacity=16)
    params = init_critic(seed, N_ARMS, cfg)
    keys = iter(jax.random.split(jax.random.key(seed), 32))
    return jax.tree.map(lambda x: x * jax.random.uniform(next(keys), x.shape, minval=0.5, maxval=1.5)
                        + 0.1 * jax.random.normal(next(keys), x.shape), params)


def test_critic_forward_matches_the_plain_reference():
    """critic_forward (scan over rows, linear_scan over time) against tests/critic_reference.py."""
    params = _random_critic()
    rng = np.random.default_rng(0)
    loss_rows = rng.uniform(1, 5, (2, 9, N_ARMS)).astype(np.float32)
    action_rows = rng.dirichlet(np.ones(N_ARMS), (2, 9)).astype(np.float32)
    got = np.asarray(jax.jit(critic_forward)(params, loss_rows, action_rows))
    for b in range(2):
        np.testing.assert_allclose(got[b], critic_predictions(params, loss_rows[b], action_rows[b]), rtol=2e-5,
                                   atol=2e-5)


def test_one_step_scoring_matches_the_plain_reference():
    """Candidates scored at their own position T (one step after the history) equal a full
    forward of [history rows 0..T−1, [current loss, candidate]] read at T (spec §6.5)."""
    params = _random_critic(1)
    rng = np.random.default_rng(0)
    loss_rows = rng.uniform(1, 5, (16, N_ARMS)).astype(np.float32)  # rows ≥ T are junk on purpose
    action_rows = rng.dirichlet(np.ones(N_ARMS), 16).astype(np.float32)
    current = rng.uniform(1, 5, N_ARMS).astype(np.float32)
    candidates = generate_candidates(jax.random.key(1), N_ARMS, 8)
    fast = jax.jit(candidate_rewards)
    for length in (0, 1, 7, 15):
        want = candidate_predictions(params, loss_rows, action_rows, length, current, candidates)
        got = fast(params, loss_rows, action_rows, np.int32(length), current, candidates)
        np.testing.assert_allclose(np.asarray(got), want, atol=2e-5, rtol=2e-5)


def test_critic_fits_a_known_reward_function():
    """History with reward_i = tanh(6·(a_i − 1/n)); four warm-started updates (400 AdamW steps)."""
    h, t = SMALL.history_capacity, 48
    rng = np.random.default_rng(0)
    loss = np.zeros((h, N_ARMS), np.float32)
    act = np.zeros((h, N_ARMS), np.float32)
    target = np.zeros((h, N_ARMS), np.float32)
    loss[:t] = rng.uniform(2, 5, (t, N_ARMS))
    act[:t] = rng.dirichlet(np.full(N_ARMS, 0.5), t)
    target[:t] = np.tanh(6 * (act[:t] - 1 / N_ARMS))
    variance = float(target[:t].var())  # ≈ 0.29
    onehot = class_onehot(np.unique(CLASSES, return_inverse=True)[1])
    params = init_critic(0, N_ARMS, SMALL)
    opt_state = make_critic_optimizer(SMALL).init(params)
    traces = []
    for u in range(4):
        params, opt_state, action, info = controller_update(
            params, opt_state, loss, act, target, np.int32(t), loss[t - 1], onehot, np.float32(0.0),
            jax.random.key_data(jax.random.key(u)), cfg=SMALL)
        traces.append(np.asarray(info["critic_mse"]))
    first = traces[0]
    assert first.shape == (SMALL.critic_steps,)
    assert first[-1] < 0.1 * first[0]  # the MSE falls over the iterations of one update
    assert first[-10:].mean() < first[:10].mean() / 10
    assert traces[1][0] < 2 * first[-1]  # warm start: the next update begins where this one ended
    final = float(critic_mse(params, loss, act, target, np.arange(h) < t))
    assert final < 1e-3 and final < 0.01 * variance  # threshold: MSE < 1e-3 (target variance ≈ 0.29)
    assert np.all(np.asarray(action) >= 0) and abs(float(np.sum(action)) - 1) < 1e-5


# ----------------------------------------------------------------------------- controller runs


def test_synthetic_environment_moves_mass_to_high_rate_arms():
    """Spec §10 item 23: ρ_i ~ U(0.0005, 0.01); the late actions' expected rate Σ a_i ρ_i beats
    the uniform action's and the late probabilities correlate with ρ."""
    rho = np.random.default_rng(100).uniform(0.0005, 0.01, N_ARMS)
    run = run_bandit(rho, seed=0)
    late = run["probs"][run["steps"] >= RUN_STEPS // 2].mean(0)
    uniform = run["controller"].initial_probabilities()
    assert late @ rho > 1.1 * (uniform @ rho)  # ≈ 1.17×
    assert np.corrcoef(late, rho)[0, 1] > 0.3  # ≈ 0.67
    assert np.all(run["probs"] >= 0) and np.allclose(run["probs"].sum(-1), 1.0)


def test_high_rate_class_gets_twice_the_uniform_share_and_is_reproducible(high_rate_class):
    rho, run, again = high_rate_class
    ctl = run["controller"]
    after_warmup = run["steps"] >= ctl.warmup_end
    share = class_share(run["probs"], "c")
    uniform = 1 / N_CLASSES
    assert np.all(share[~after_warmup] == pytest.approx(uniform))  # warm-up: uniform over classes
    critic_choices = after_warmup & ~run["explored"]
    assert critic_choices.sum() >= 20
    assert share[after_warmup].mean() >= 2 * uniform  # every action after the warm-up (≈ 0.68 here)
    assert share[critic_choices].mean() >= 2 * uniform  # the critic's own choices (≈ 0.80)
    assert share[run["steps"] >= RUN_STEPS // 2].mean() >= 2 * uniform  # second half, p = 0.2 (≈ 0.75)
    np.testing.assert_array_equal(run["probs"], again["probs"])  # reproducible for a seed
    other = run_bandit(rho, seed=4, stop_after=200)
    assert not np.array_equal(other["probs"], run["probs"][: len(other["probs"])])


def test_save_resume_reproduces_an_uninterrupted_run(high_rate_class, tmp_path):
    rho, full, _ = high_rate_class
    half = run_bandit(rho, seed=0, stop_after=RUN_STEPS // 2)
    ckpt = ocp.StandardCheckpointer()
    ckpt.save(tmp_path / "controller", half["controller"].state_dict())
    ckpt.wait_until_finished()
    resumed = BirdieController(CLASSES, RUN_STEPS, SMALL, seed=123)  # the seed is overwritten by the state
    restored = ckpt.restore(tmp_path / "controller", abstract_like(resumed.state_dict()))
    resumed.load_state_dict(restored)
    np.testing.assert_array_equal(resumed.probabilities, half["probs"][-1])
    rest = run_bandit(rho, seed=None, controller=resumed, loss=half["loss"])
    assert len(rest["steps"]) > 20
    np.testing.assert_array_equal(np.concatenate([half["probs"], rest["probs"]]), full["probs"])
    with pytest.raises(ValueError, match="num_arms"):
        BirdieController(CLASSES[:-1], RUN_STEPS, SMALL).load_state_dict(restored)


def test_metrics_are_flat_floats(high_rate_class):
    ctl = high_rate_class[1]["controller"]
    m = ctl.metrics()
    json.dumps(m)
    assert all(isinstance(v, float) and math.isfinite(v) for v in m.values())
    assert sum(m[f"mixture/prob/{c}"] for c in "abcd") == pytest.approx(1.0)
    assert sum(m[f"mixture/arm_prob/{a}"] for a in ctl.arm_names) == pytest.approx(1.0)
    for key in ("mixture/loss/c", "mixture/reward/c", "mixture/arm_loss/c_1", "mixture/arm_reward/b_2",
                "mixture/explored", "mixture/critic_mse_last", "mixture/explore_prob", "mixture/history_len"):
        assert key in m
    named = BirdieController(["ntp", "infill"], 100, SMALL, arm_names=["ntp", "infill/r15/mu3"])
    assert set(named.metrics()) >= {"mixture/prob/ntp", "mixture/arm_prob/infill/r15/mu3"}
    with pytest.raises(ValueError, match="increase"):
        ctl.observe(ctl.last_step, np.ones(N_ARMS))
    bad = np.full(N_ARMS, 4.0)
    bad[0] = np.nan  # a non-finite loss: reward 0, the previous loss stays in the history
    probs = ctl.observe(ctl.last_step + 10, bad)
    m = ctl.metrics()
    assert m["mixture/arm_reward/a_0"] == 0.0 and all(math.isfinite(v) for v in m.values())
    assert np.all(probs >= 0) and probs.sum() == pytest.approx(1.0)


# ----------------------------------------------------------------------------- plot


def test_plot_mixture_from_synthetic_metrics(tmp_path, capsys):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for step in range(0, 100, 10):
            f.write(json.dumps({"step": step, "loss": 3.0}) + "\n")  # training records are ignored
            record = {"step": step}
            for i, c in enumerate(("ntp", "infill", "copy")):
                record[f"mixture/loss/{c}"] = 4.0 - 0.01 * step * (i + 1)
                record[f"mixture/prob/{c}"] = (1 + i * step / 100) / (3 + 3 * step / 100)
                record[f"mixture/arm_prob/{c}_0"] = 0.1
                record[f"val_accuracy/{c}"] = 0.1 + 0.005 * step
            f.write(json.dumps(record) + "\n")
    path = plot_mixture(str(tmp_path))
    assert path == str(tmp_path / "mixture.png") and os.path.getsize(path) > 10_000
    parser = argparse.ArgumentParser()
    add_plot_mixture_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot-mixture", str(tmp_path), "--output", str(tmp_path / "fig.png")])
    assert run_plot_mixture(args) == 0 and os.path.exists(tmp_path / "fig.png")
    assert "fig.png" in capsys.readouterr().out
    with pytest.raises(BirdieError, match="no metrics.jsonl"):
        plot_mixture(str(tmp_path / "missing"))
    (tmp_path / "clm").mkdir()
    (tmp_path / "clm" / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    with pytest.raises(BirdieError, match="no mixture records"):
        plot_mixture(str(tmp_path / "clm"))


def test_update_compiles_once_as_history_grows(high_rate_class, cache_size_before_module):
    """Runs last: by now SMALL's update has served several controllers (fresh, re-seeded and
    restored from a checkpoint), T growing from 1 to 58 — and compiled once."""
    _, run, _ = high_rate_class
    grown = run["lengths"][run["steps"] >= run["controller"].warmup_end]
    assert len(grown) >= 3 and np.all(np.diff(grown) == 1)  # ≥ 3 updates, T growing
    assert update_trace_count(SMALL) == 1  # traced once (a counter incremented inside the traced function)
    if hasattr(controller_update, "_cache_size"):  # and compiled once: one more executable in jit's cache
        assert _jit_cache_size() - cache_size_before_module == 1
