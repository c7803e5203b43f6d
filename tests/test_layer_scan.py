"""Layer scan (``model.scan_layers``), rematerialisation (``model.remat``) and bf16 compute.

The oracle is the unrolled model (one Python loop over its blocks) with the same weights:
a seed builds the same weights either way, which the export names check first.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_model_config
from flax import nnx
from jax.sharding import PartitionSpec as P

from birdie_jax.config import Config, ModelConfig
from birdie_jax.convert.params import load_parameters, named_parameters
from birdie_jax.distributed.rules import param_specs
from birdie_jax.errors import CheckpointError, ConfigError
from birdie_jax.inference import load_checkpoint
from birdie_jax.models import LanguageModel
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training.checkpoint import Checkpointer
from birdie_jax.training.loop import check_compatible
from birdie_jax.training.optim import make_optimizer
from birdie_jax.training.step import init_train_state

B, T = 2, 10
SEGMENTS = np.array([[1] * 4 + [2] * 6, [1] * 10], np.int32)
PREFIX = np.array([[1] * 2 + [0] * 2 + [1] * 3 + [0] * 3, [1] * 5 + [0] * 5], bool)
# Hawk with alternate bidirectional layers: the scanned unit is a (bidirectional, causal) pair.
HAWK = dict(d_model=16, n_layers=4, state_dim=8, mlp_expansion=2.0, bidirectional="alternate")
GATED_SSM = dict(n_layers=3, d_model=16, state_dim=16)  # period 1: a scan over 3 layers


def _assert_close(actual, desired, name=""):
    """Float32 agreement up to reassociation: 1e-5 of the largest reference magnitude."""
    desired = np.asarray(desired)
    np.testing.assert_allclose(actual, desired, rtol=0, atol=1e-5 * max(np.abs(desired).max(), 1e-6), err_msg=name)


def _assert_trees_close(actual, desired):
    assert jax.tree.structure(actual) == jax.tree.structure(desired)
    for a, d in zip(jax.tree.leaves(actual), jax.tree.leaves(desired)):
        _assert_close(a, d)


def _inputs(seed=0):
    rng = np.random.RandomState(seed)
    return jnp.asarray(rng.randint(0, 128, (B, T)), jnp.int32), jnp.asarray(rng.standard_normal((B, T, 128)),
                                                                            jnp.float32)


def _initial_state(model, seed=1):
    """A non-zero state, so the scan's states in are checked too."""
    zero = model.init_state(B, 16)
    keys = jax.random.split(jax.random.key(seed), len(jax.tree.leaves(zero)))
    leaves = [jax.random.normal(k, x.shape, x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x
              for k, x in zip(keys, jax.tree.leaves(zero))]
    return jax.tree.unflatten(jax.tree.structure(zero), leaves)


@nnx.jit
def _loss_and_grads(model, tokens, weights, segment_ids, prefix_mask, state):
    def loss(model):
        logits, final = model(tokens, segment_ids, prefix_mask, state=state, return_state=True)
        return jnp.sum(logits * weights) + sum(jnp.sum(x) for x in jax.tree.leaves(final)
                                              if jnp.issubdtype(x.dtype, jnp.floating)), (logits, final)

    (_, (logits, final)), grads = nnx.value_and_grad(loss, has_aux=True)(model)
    return logits, final, grads


def _per_layer(grads_state, cfg: ModelConfig) -> dict:
    """Gradients by per-layer name: a stacked leaf's slice g of position j is layer g·p + j."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(grads_state))[0]:
        names = [str(getattr(k, "key", k)) for k in path]
        if names[0] == "stacked_blocks":
            period = cfg.layer_period()
            for g in range(leaf.shape[0]):
                flat[".".join(["blocks", str(g * period + int(names[1]))] + names[2:])] = leaf[g]
        else:
            flat[".".join(names)] = leaf
    return flat


@pytest.fixture(scope="module")
def hawk_results():
    """Loss outputs and gradients of the unrolled Hawk and of the scanned one with a remat policy
    (the plain scanned model and per-layer remat of the unrolled one: the Gated SSM test)."""
    tokens, weights = _inputs()
    args = (tokens, weights, jnp.asarray(SEGMENTS), jnp.asarray(PREFIX))
    out = {}
    for name, overrides in {"unrolled": {}, "scanned_dots": {"scan_layers": True, "remat": "dots_saveable"}}.items():
        cfg = tiny_model_config("hawk", **HAWK, **overrides)
        model = LanguageModel(cfg, rngs=nnx.Rngs(params=0))
        logits, final, grads = _loss_and_grads(model, *args, _initial_state(model))
        out[name] = (cfg, model, logits, final, _per_layer(grads, cfg))
    return out


def test_a_seed_builds_the_same_weights_and_export_names_either_way(hawk_results):
    _, unrolled, *_ = hawk_results["unrolled"]
    _, scanned, *_ = hawk_results["scanned_dots"]
    ours, theirs = named_parameters(unrolled), named_parameters(scanned)
    assert sorted(ours) == sorted(theirs) and any(k.startswith("blocks.3.") for k in ours)
    chex.assert_trees_all_equal(ours, theirs)
    # Loading per-layer tensors into a scanned model stacks them back.
    shifted = {k: v + 1.0 for k, v in ours.items()}
    chex.assert_trees_all_equal(named_parameters(load_parameters(scanned, shifted, "test")), shifted)


def test_scanned_rematerialised_hawk_equals_unrolled_values_and_gradients(hawk_results):
    """Bidirectional layers (a period of 2), packed segments, prefixes and an initial state."""
    _, _, logits, final, grads = hawk_results["unrolled"]
    _, _, logits_v, final_v, grads_v = hawk_results["scanned_dots"]
    _assert_close(logits_v, logits)
    _assert_trees_close(final_v, final)
    assert sorted(grads_v) == sorted(grads)
    for name in grads:
        _assert_close(grads_v[name], grads[name], name)


def test_scanned_and_rematerialised_gated_ssm_equal_unrolled():
    """The plain scanned model and the unrolled one with full per-layer remat, against the plain unrolled one."""
    cfg = tiny_model_config("gated_ssm", **GATED_SSM)
    tokens, weights = _inputs(2)
    args = (tokens, weights, jnp.asarray(SEGMENTS), None, None)
    results = {}
    for name, overrides in {"unrolled": {}, "scanned": {"scan_layers": True}, "remat": {"remat": "full"}}.items():
        variant = dataclasses.replace(cfg, **overrides)
        logits, final, grads = _loss_and_grads(LanguageModel(variant, rngs=nnx.Rngs(params=0)), *args)
        results[name] = logits, final, _per_layer(grads, variant)
    logits, final, grads = results["unrolled"]
    for name in ("scanned", "remat"):
        logits_v, final_v, grads_v = results[name]
        _assert_close(logits_v, logits, name)
        _assert_trees_close(final_v, final)
        assert sorted(grads_v) == sorted(grads)
        for leaf in grads:
            _assert_close(grads_v[leaf], grads[leaf], f"{name}: {leaf}")


def test_scanned_step_decoding_equals_the_unrolled_sequence(hawk_results):
    """From a given state, token by token through the scanned model's ``step`` = the unrolled
    model over the whole row (one document, no prefix: bidirectional layers decode causally)."""
    _, unrolled, *_ = hawk_results["unrolled"]
    _, scanned, *_ = hawk_results["scanned_dots"]
    tokens, _ = _inputs()
    forward = nnx.jit(lambda model, tokens, state: model(tokens, state=state, return_state=True))
    logits, final = forward(unrolled, tokens, _initial_state(unrolled))
    step = nnx.jit(lambda model, token, state: model.step(token, state))
    state, stepped = _initial_state(scanned), []
    for t in range(T):
        step_logits, state = step(scanned, tokens[:, t], state)
        stepped.append(step_logits)
    _assert_close(np.stack(stepped, 1), logits)
    # A bidirectional layer's carried reverse half is zero after a sequence but holds the last
    # input after a step (no carry either way); the causal layers' states must agree.
    _assert_trees_close(state[1::2], final[1::2])


def _sub_jaxprs(params: dict) -> list:
    """The jaxprs inside an equation's params (scan/while bodies, cond branches, pjit, custom rules)."""
    out = []
    for value in params.values():
        for item in value if isinstance(value, (tuple, list)) else [value]:
            item = getattr(item, "jaxpr", item)
            if hasattr(item, "eqns"):
                out.append(item)
    return out


def _innermost_scans(jaxpr) -> list:
    """The scan equations of ``jaxpr`` (at any depth) that contain no other scan."""
    found = []
    for eqn in jaxpr.eqns:
        nested = [s for sub in _sub_jaxprs(eqn.params) for s in _innermost_scans(sub)]
        if eqn.primitive.name == "scan" and not nested:
            found.append(eqn)
        found += nested
    return found


@pytest.mark.parametrize("arch, scan_layers", [("hawk", False), ("hawk", True), ("gated_ssm", True), ("mamba2", True)])
def test_bf16_compute_keeps_the_recurrence_carry_in_float32(arch, scan_layers):
    shape = HAWK if arch == "hawk" else dict(d_model=16, n_layers=2)
    cfg = tiny_model_config(arch, **shape, dtype="bfloat16", scan_layers=scan_layers)
    model = LanguageModel(cfg, rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model)
    tokens, _ = _inputs()

    def forward(params):
        return nnx.merge(graphdef, params)(tokens, jnp.asarray(SEGMENTS), jnp.asarray(PREFIX), return_state=True)

    closed = jax.make_jaxpr(forward)(params)
    scans = _innermost_scans(closed.jaxpr)
    assert scans, "no recurrence scan found"
    for eqn in scans:
        carry = eqn.invars[eqn.params["num_consts"]:eqn.params["num_consts"] + eqn.params["num_carry"]]
        floats = [v.aval.dtype for v in carry if jnp.issubdtype(v.aval.dtype, jnp.floating)]
        assert floats and all(d == jnp.float32 for d in floats), floats
    hidden = jax.eval_shape(lambda: model.embed_tokens(tokens))
    assert hidden.dtype == jnp.bfloat16  # the compute really is bf16
    logits, states = jax.eval_shape(forward, params)
    recurrent = [leaf for s in states for key, leaf in s.items() if key != "conv"]  # conv: bf16 inputs
    assert recurrent and all(leaf.dtype == jnp.float32 for leaf in recurrent)


@pytest.mark.parametrize("mesh", [{"fsdp": 2, "tensor": 2}, {"fsdp": 2}])
def test_stacked_leaves_keep_the_layer_axis_unsharded(hawk_results, mesh):
    """Each stacked leaf gets its layer's spec behind an unsharded leading layer axis."""
    _, unrolled, *_ = hawk_results["unrolled"]
    _, scanned, *_ = hawk_results["scanned_dots"]
    ours = nnx.to_pure_dict(param_specs(nnx.state(unrolled, nnx.Param), mesh))["blocks"]
    stacked = nnx.to_pure_dict(param_specs(nnx.state(scanned, nnx.Param), mesh))["stacked_blocks"]
    layer_specs = jax.tree_util.tree_flatten_with_path(ours[0], is_leaf=lambda x: isinstance(x, P))[0]
    for j in (0, 1):
        flat = dict(jax.tree_util.tree_flatten_with_path(stacked[j], is_leaf=lambda x: isinstance(x, P))[0])
        for path, spec in jax.tree_util.tree_flatten_with_path(ours[j], is_leaf=lambda x: isinstance(x, P))[0]:
            expected = P(None, *spec) if len(spec) else P()
            assert flat[path] == expected, (j, path)
    assert any(len(spec) for _, spec in layer_specs)  # something is sharded at all
    assert stacked[0]["mixer_norm"]["scale"] == P()  # [groups, d]: 1-D per layer, so replicated


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="model.scan_layers"):
        tiny_model_config("hawk", **{**HAWK, "n_layers": 3}, scan_layers=True)  # alternate: period 2
    with pytest.raises(ConfigError, match="model.remat"):
        tiny_model_config("hawk", remat="dots")
    assert tiny_model_config("hybrid", n_layers=4).layer_period() == 2
    assert tiny_model_config("hawk").layer_period() == 1


def test_scanned_model_checkpoint_round_trip_and_resume_check(hawk_results, tmp_path):
    """A scanned model's train state saves and restores through the project's checkpointer (the
    path ``load_checkpoint`` and a resume take); resuming with scan_layers switched is refused."""
    cfg, scanned, *_ = hawk_results["scanned_dots"]
    run_cfg = Config(model=cfg)
    params = nnx.state(scanned)
    shifted = jax.tree.map(lambda x: x + 0.5, params)  # not what a fresh build of the seed gives
    state = init_train_state(shifted, make_optimizer(run_cfg.train), run_cfg.seed)
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"))
    tokenizer = build_tokenizer(run_cfg.data.tokenizer, num_sentinels=run_cfg.data.num_sentinels)
    checkpointer.save(7, state, None, {"config": run_cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "mixture": {}})
    checkpointer.wait()
    checkpointer.close()
    run = load_checkpoint(str(tmp_path))
    assert run.step == 0 and run.model.cfg.scan_layers
    chex.assert_trees_all_equal(nnx.state(run.model), shifted)
    meta = {"config": run_cfg.to_dict(), "tokenizer": tokenizer.to_dict()}
    with pytest.raises(CheckpointError, match="model.scan_layers"):
        check_compatible(meta, run_cfg.replace("model.scan_layers=false"), tokenizer, "run")
    check_compatible(meta, run_cfg.replace("model.remat=full"), tokenizer, "run")  # remat may change on resume
    del meta["config"]["model"]["scan_layers"], meta["config"]["model"]["remat"]  # saved before these fields
    check_compatible(meta, run_cfg.replace("model.scan_layers=false", "model.remat=none"), tokenizer, "run")
