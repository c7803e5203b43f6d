"""Sharded training, sequence parallelism, gradient accumulation and cross-mesh checkpoints.

The multi-device checks run once, in one subprocess with 8 fake CPU devices
(``tests/distributed_worker.py``), and each test below asserts on that run's sentinel
lines; the 1-device restore runs in this (1-device) process. The rest are fast
single-device unit tests of the mesh, the rules and the multi-host helpers.
"""

import os
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from birdie_jax.distributed import (MeshConfig, batch_spec, global_batch, make_mesh, param_specs,
                                    process_data_slice, state_specs)
from birdie_jax.distributed.multihost import detect_environment, initialize_from_environment
from birdie_jax.kernels.linear_scan import linear_scan_sharded

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-5
LAYOUTS = ("8x1x1", "1x8x1", "2x2x2", "2x4x1")


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """Runs the 8-device worker once: (its CHECK results {name: error}, its output folder)."""
    out_dir = str(tmp_path_factory.mktemp("distributed"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, os.path.join(HERE, "distributed_worker.py"), "main", out_dir],
                          env=env, capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 or "WORKER DONE" not in proc.stdout:
        pytest.fail(f"distributed worker failed (exit {proc.returncode}):\n{output[-6000:]}")
    checks = {m.group(1): float(m.group(2)) for m in re.finditer(r"^CHECK (\S+) (\S+)", proc.stdout, re.M)}
    return checks, out_dir


def _assert_checks(checks: dict, names: list[str]) -> None:
    missing = [n for n in names if n not in checks]
    assert not missing, f"worker did not report {missing}"
    bad = {n: checks[n] for n in names if not checks[n] <= TOL}
    assert not bad, f"errors above {TOL}: {bad}"


# --------------------------------------------------------------------------- multi-device (subprocess)


def test_one_training_step_on_every_layout_equals_one_device(worker):
    checks, _ = worker
    names = [f"layout_{layout}_{what}" for layout in LAYOUTS for what in ("loss", "params", "opt_state")]
    _assert_checks(checks, names + ["init_sharded"])


def test_sequence_parallel_scan_conv_and_model_equal_one_device(worker):
    checks, _ = worker
    scan = [n for n in checks if n.startswith("scan_")]
    assert {n.rsplit("_", 2)[-2] for n in scan} == {"causal", "reverse"} and len(scan) >= 4, scan
    _assert_checks(checks, scan + ["conv_forward", "conv_grad", "model_sequence_parallel_loss",
                                   "model_sequence_parallel_grad"])


def test_hybrid_jrt_model_trains_sharded_as_on_one_device(worker):
    checks, _ = worker
    _assert_checks(checks, ["hybrid_2x2x2_loss", "hybrid_2x2x2_params"])


def test_gradient_accumulation_equals_full_batch_step(worker):
    checks, _ = worker
    _assert_checks(checks, ["accumulate_2_loss", "accumulate_2_params", "accumulate_4_loss", "accumulate_4_params"])


def test_checkpoint_saved_on_8_devices_restores_on_4_and_1_and_continues(worker):
    checks, out_dir = worker
    _assert_checks(checks, ["restore_4_loss", "restore_4_state"])
    sys.path.insert(0, HERE)
    try:
        import distributed_worker
    finally:
        sys.path.remove(HERE)
    loss_err, state_err = distributed_worker.restore_and_continue(out_dir, (1, 1, 1), jax.devices()[:1])
    assert loss_err <= TOL and state_err <= TOL, (loss_err, state_err)


# --------------------------------------------------------------------------- single device


def test_mesh_config_resolves_and_names_fields_on_mismatch():
    assert MeshConfig(data=-1, fsdp=2).resolve(8) == {"data": 4, "fsdp": 2, "tensor": 1, "sequence": 1}
    assert MeshConfig(data=2, fsdp=-1, tensor=2).resolve(8)["fsdp"] == 2
    with pytest.raises(ValueError, match=r"mesh.data=2 × mesh.fsdp=2 × mesh.tensor=1 × mesh.sequence=1 = 4"):
        MeshConfig(data=2, fsdp=2).resolve(8)
    with pytest.raises(ValueError, match="does not divide"):
        MeshConfig(fsdp=3).resolve(8)
    with pytest.raises(ValueError, match="at most one"):
        MeshConfig(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="mesh.tensor=0"):
        MeshConfig(tensor=0)
    mesh = make_mesh(MeshConfig())
    assert mesh.axis_names == ("data", "fsdp", "tensor", "sequence") and mesh.devices.size == jax.device_count()


def _abstract_hawk_state():
    from flax import nnx

    import birdie_jax
    from birdie_jax.training.optim import make_optimizer
    from birdie_jax.training.step import init_train_state

    cfg = birdie_jax.load_config("hawk_tiny", "model.d_model=32", "model.state_dim=32", "model.n_layers=1")
    tx = make_optimizer(cfg.train)
    return jax.eval_shape(lambda: init_train_state(nnx.split(birdie_jax.build_model(cfg, vocab_size=384))[1], tx, 0))


def _flat(specs) -> dict[str, P]:
    """{"['params']['embed']['embedding']": spec, ...} (the Variable's ``.value`` dropped)."""
    leaves = jax.tree_util.tree_flatten_with_path(specs, is_leaf=lambda x: isinstance(x, P))[0]
    return {jax.tree_util.keystr(path).removesuffix(".value"): spec for path, spec in leaves}


def test_rules_fsdp_tensor_and_optimizer_moments_follow_parameters():
    state = _abstract_hawk_state()
    flat = _flat(state_specs(state, {"data": 2, "fsdp": 4, "tensor": 2, "sequence": 1}))
    block = "['params']['blocks'][0]"
    expected = {
        f"{block}['mixer']['in_proj']['kernel']": P(None, "tensor"),  # column-parallel [d, n]
        f"{block}['mixer']['gate_proj']['kernel']": P(None, "tensor"),
        f"{block}['mixer']['out_proj']['kernel']": P("tensor"),  # row-parallel [n, d]
        f"{block}['mixer']['conv']['weight']": P(None, "tensor"),  # recurrence channels follow in_proj
        f"{block}['mixer']['conv']['bias']": P("tensor"),
        f"{block}['mixer']['rg_lru']['a_param']": P("tensor"),
        f"{block}['mlp']['up']['kernel']": P(None, "tensor"),
        f"{block}['mlp']['down']['kernel']": P("tensor"),
        "['params']['embed']['embedding']": P("tensor"),  # [vocab, d]: vocabulary over tensor
        f"{block}['mixer_norm']['scale']": P(),
        "['rng']": P(), "['step']": P(),
    }
    assert {k: flat[k] for k in expected} == expected
    # FSDP alone (tensor = 1): each matrix's largest dim divisible by fsdp; vectors replicated.
    fsdp_only = _flat(param_specs(state["params"], {"data": 1, "fsdp": 4, "tensor": 1, "sequence": 1}))
    assert fsdp_only["['embed']['embedding']"] == P("fsdp")  # [384, 32]
    assert fsdp_only["['blocks'][0]['mlp']['up']['kernel']"] == P(None, "fsdp")  # [32, 88]
    assert fsdp_only["['blocks'][0]['mixer']['rg_lru']['a_gate']['kernel']"] == P("fsdp")  # [32, 32]: first
    assert fsdp_only["['blocks'][0]['mixer_norm']['scale']"] == P()
    # Adam's mu/nu get their parameter's spec; step counts are replicated.
    params = {k[len("['params']"):]: s for k, s in flat.items() if k.startswith("['params']")}
    moments = {k: s for k, s in flat.items() if ".mu[" in k or ".nu[" in k}
    assert len(moments) == 2 * len(params)
    for key, spec in moments.items():
        param_key = re.split(r"\.(?:mu|nu)", key, maxsplit=1)[1]
        assert spec == params[param_key], key
    assert all(s == P() for k, s in flat.items() if k.endswith(".count"))


def test_batch_spec_and_single_process_data_helpers():
    assert batch_spec({"data": 2, "fsdp": 4, "tensor": 1, "sequence": 1}) == P(("data", "fsdp"))
    assert batch_spec({"data": 2, "fsdp": 1, "tensor": 1, "sequence": 4}) == P(("data", "fsdp"), "sequence")
    assert process_data_slice() == (0, 1)
    mesh = make_mesh(MeshConfig(), devices=jax.devices()[:1])
    assert process_data_slice(mesh, 8) == (0, 1)
    batch = global_batch({"inputs": np.arange(16, dtype=np.int32).reshape(2, 8)}, mesh=mesh)
    np.testing.assert_array_equal(np.asarray(batch["inputs"]), np.arange(16).reshape(2, 8))


def test_multihost_environment_detection(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_NTASKS", "SLURM_JOB_ID",
                 "SLURM_STEP_NODELIST", "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "TPU_PROCESS_ADDRESSES",
                 "MEGASCALE_COORDINATOR_ADDRESS", "BIRDIE_JAX_DISTRIBUTED"):
        monkeypatch.delenv(name, raising=False)
    kind, _ = detect_environment()
    assert kind in ("single", "tpu")
    if kind == "single":
        assert initialize_from_environment() is False
    assert initialize_from_environment("off") is False
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[1-2]")
    assert detect_environment()[0] in ("single", "tpu")  # one task: nothing to coordinate
    monkeypatch.setenv("SLURM_NTASKS", "16")
    assert detect_environment() == ("slurm", {})
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert detect_environment() == ("explicit", {"coordinator_address": "10.0.0.1:1234", "num_processes": 4,
                                                 "process_id": 3})
    with pytest.raises(ValueError, match="auto, on or off"):
        initialize_from_environment("sometimes")


def _loop_scan(a, b, reset, reverse):
    """h_t = a_t·h_{t∓1} + b_t with the carry zeroed where reset, one step at a time in float64
    (independent of birdie_jax.kernels): (h [B T D], h_last [B D])."""
    a, b, reset = np.asarray(a, np.float64), np.asarray(b, np.float64), np.asarray(reset)
    h, carry = np.zeros_like(a), np.zeros((a.shape[0], a.shape[2]))
    for t in (range(a.shape[1] - 1, -1, -1) if reverse else range(a.shape[1])):
        carry = a[:, t] * np.where(reset[:, t, None], 0.0, carry) + b[:, t]
        h[:, t] = carry
    return h, carry


def test_linear_scan_sharded_without_a_sequence_axis_is_linear_scan():
    a = jax.random.uniform(jax.random.key(0), (2, 8, 4), minval=0.5, maxval=1.0)
    b = jax.random.normal(jax.random.key(1), (2, 8, 4))
    reset = jnp.zeros((2, 8), bool).at[0, 3].set(True).at[1, 6].set(True)
    for reverse in (False, True):
        expected = _loop_scan(a, b, reset, reverse)
        got = linear_scan_sharded(a, b, reset=reset, reverse=reverse)  # no mesh set
        got_mesh = linear_scan_sharded(a, b, reset=reset, reverse=reverse,
                                       mesh=make_mesh(MeshConfig(), devices=jax.devices()[:1]))
        chex.assert_trees_all_close(tuple(got), expected, rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(tuple(got_mesh), expected, rtol=1e-5, atol=1e-6)
