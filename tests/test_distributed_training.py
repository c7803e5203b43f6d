"""The training loop itself on a device mesh: a Birdie run (controller, per-arm validation)
with state passing, on 8 fake CPU devices (data × fsdp × sequence, bidirectional layers
running sequence-parallel), killed and resumed on 4 devices and on 1, continuing as a run
that never stopped — parameters, carried states and mixture probabilities alike."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from birdie_jax.config import load_config
from birdie_jax.training.loop import train

TOL = 1e-5
RUN = ["data.seq_len=32", "data.batch_size=8", "train.steps=4", "train.checkpoint_every=2", "train.eval_every=2",
       "train.eval_batches=1", "train.warmup_steps=1", "train.log_every=1", "train.tensorboard=false",
       "train.progress=false", "model.bidirectional=alternate", "mixture=birdie", "mixture.val_rows_per_config=1",
       "controller.critic_width=16", "controller.critic_state=16", "controller.critic_layers=1",
       "controller.critic_steps=5", "controller.num_candidates=64", "initial_state=state_passing"]

SCRIPT = textwrap.dedent('''
    import sys, shutil, numpy as np, jax
    from birdie_jax.config import load_config
    from birdie_jax.training.loop import train
    from birdie_jax.inference import load_checkpoint
    out, mode, mesh = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    run = {run!r}
    def cfg(name, *extra):
        return load_config("hawk_tiny", *run, *mesh, f"train.run_dir={{out}}/{{name}}", *extra)
    if mode == "first":
        full = train(cfg("full"), quiet=True)
        np.savez(f"{{out}}/full.npz", *[np.asarray(x) for x in jax.tree.leaves(full.params)])
        np.savez(f"{{out}}/full_carry.npz", *[np.asarray(x) for x in jax.tree.leaves(load_checkpoint(f"{{out}}/full").extras)])
        train(cfg("killed"), stop_after=2, quiet=True)
        shutil.copytree(f"{{out}}/killed", f"{{out}}/killed_for_one_device")
    else:
        resumed = train(cfg("killed"), resume=True, quiet=True)
        np.savez(f"{{out}}/resumed.npz", *[np.asarray(x) for x in jax.tree.leaves(resumed.params)])
        np.savez(f"{{out}}/resumed_carry.npz", *[np.asarray(x) for x in jax.tree.leaves(load_checkpoint(f"{{out}}/killed").extras)])
    print("SCRIPT DONE", jax.device_count())
''').format(run=RUN)


def _run(out_dir: str, mode: str, devices: int, mesh: str) -> None:
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, out_dir, mode, mesh], env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0 or f"SCRIPT DONE {devices}" not in proc.stdout:
        pytest.fail(f"{devices}-device training failed:\n{(proc.stdout + proc.stderr)[-5000:]}")


def _leaves(path: str) -> list[np.ndarray]:
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("mesh_runs"))
    _run(out, "first", 8, "mesh.data=2,mesh.fsdp=2,mesh.sequence=2")
    return out


def _probabilities(run_dir):
    from birdie_jax.training.checkpoint import Checkpointer

    ckpt = Checkpointer(os.path.join(run_dir, "checkpoints"), read_only=True)
    try:
        return np.asarray(ckpt.read_meta()["mixture"]["probabilities"])
    finally:
        ckpt.close()


def test_resume_on_four_devices_continues_the_eight_device_run(runs):
    _run(runs, "resume", 4, "mesh.data=2,mesh.fsdp=2")
    for name in ("", "_carry"):
        for a, b in zip(_leaves(f"{runs}/resumed{name}.npz"), _leaves(f"{runs}/full{name}.npz")):
            np.testing.assert_allclose(a, b, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(_probabilities(f"{runs}/killed"), _probabilities(f"{runs}/full"), atol=TOL)


def test_resume_on_one_device_continues_the_eight_device_run(runs):
    cfg = load_config("hawk_tiny", *RUN, f"train.run_dir={runs}/killed_for_one_device")
    resumed = train(cfg, resume=True, quiet=True)
    for a, b in zip(jax.tree.leaves(resumed.params), _leaves(f"{runs}/full.npz")):
        np.testing.assert_allclose(np.asarray(a), b, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(_probabilities(f"{runs}/killed_for_one_device"), _probabilities(f"{runs}/full"),
                               atol=TOL)
