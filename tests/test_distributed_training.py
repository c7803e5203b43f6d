"""The training loop itself on a device mesh: a Birdie run (controller, per-arm validation)
with state passing, on 8 fake CPU devices (data × fsdp × sequence, bidirectional layers
running sequence-parallel), killed and resumed on 4 devices and on 1, continuing as a run
that never stopped — parameters, carried states and mixture probabilities alike; and the
same run as two real processes (jax.distributed, gloo), one of them killed, then resumed."""

import os
import socket
import subprocess
import sys
import textwrap

import chex
import jax
import numpy as np
import pytest
from flax import nnx

from birdie_jax.config import load_config
from birdie_jax.inference import load_checkpoint
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
        chex.assert_trees_all_close(_leaves(f"{runs}/resumed{name}.npz"), _leaves(f"{runs}/full{name}.npz"),
                                    atol=TOL, rtol=TOL)
    np.testing.assert_allclose(_probabilities(f"{runs}/killed"), _probabilities(f"{runs}/full"), atol=TOL)


def test_resume_on_one_device_continues_the_eight_device_run(runs):
    cfg = load_config("hawk_tiny", *RUN, f"train.run_dir={runs}/killed_for_one_device")
    resumed = train(cfg, resume=True, quiet=True)
    chex.assert_trees_all_close(jax.tree.leaves(resumed.params), _leaves(f"{runs}/full.npz"), atol=TOL, rtol=TOL)
    np.testing.assert_allclose(_probabilities(f"{runs}/killed_for_one_device"), _probabilities(f"{runs}/full"),
                               atol=TOL)


# data.process_split=rows: both processes pack the global batch and keep their rows, so the
# batches equal the single-process run's (with the default, each reads half the documents).
TWO_PROCESS_MESH = ["mesh.data=2", "mesh.fsdp=2", "mesh.sequence=2", "data.process_split=rows"]


def _launch_two_processes(run_dir: str, kill_after: int) -> list[subprocess.Popen]:
    """The docs/distributed.md launch: two processes of 4 CPU devices each, gloo collectives,
    each running ``birdie-jax train --resume`` (tests/two_process_worker.py)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    worker = os.path.join(os.path.dirname(__file__), "two_process_worker.py")
    procs = []
    for i in range(2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
               "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
               "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)}
        procs.append(subprocess.Popen([sys.executable, worker, run_dir, str(kill_after if i == 1 else 0), "--", *RUN,
                                       *TWO_PROCESS_MESH], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    return procs


def _output(proc: subprocess.Popen) -> str:
    return proc.communicate(timeout=900)[0][-3000:]


def test_two_processes_killed_and_resumed_equal_the_single_process_run(runs):
    """jax.distributed with two local processes (4 devices each): process 1 is SIGKILLed after
    the step-2 checkpoint, the job is torn down, the same command restarts both, and the
    result equals the single-process 8-device run on the same mesh."""
    run_dir = f"{runs}/two_process"
    first = _launch_two_processes(run_dir, kill_after=2)
    out1 = _output(first[1])
    assert first[1].returncode == -9 and "KILLING process 1 after step 2" in out1, out1
    first[0].kill()  # the scheduler tears down the rest of the job
    _output(first[0])
    assert sorted(n for n in os.listdir(f"{run_dir}/checkpoints") if n.isdigit()) == ["2"]
    second = _launch_two_processes(run_dir, kill_after=0)
    outs = [_output(p) for p in second]
    assert [p.returncode for p in second] == [0, 0] and "done: step 4" in outs[0], outs
    run = load_checkpoint(run_dir)
    assert run.step == 4
    for a, b in zip(jax.tree.leaves(nnx.state(run.model)), _leaves(f"{runs}/full.npz")):
        np.testing.assert_allclose(np.asarray(a), b, atol=TOL, rtol=TOL)
    for a, b in zip(jax.tree.leaves(run.extras), _leaves(f"{runs}/full_carry.npz")):
        np.testing.assert_allclose(np.asarray(a), b, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(_probabilities(run_dir), _probabilities(f"{runs}/full"), atol=TOL)


SSD_SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp
    from flax import nnx
    from birdie_jax.config import ModelConfig
    from birdie_jax.distributed import MeshConfig, make_mesh
    from birdie_jax.kernels.ssd import ssd
    from birdie_jax.kernels.ssd.sharded import ssd_sharded
    from birdie_jax.models import LanguageModel
    mesh = make_mesh(MeshConfig(data=2, sequence=4))
    k = jax.random.split(jax.random.key(0), 8)
    b, l, h, p, g, n = 2, 32, 4, 3, 2, 5
    x = jax.random.normal(k[0], (b, l, h, p)); dt = jax.nn.softplus(jax.random.normal(k[1], (b, l, h)) - 1)
    A = -jnp.exp(jax.random.normal(k[2], (h,))); B = jax.random.normal(k[3], (b, l, g, n))
    C = jax.random.normal(k[4], (b, l, g, n)); D = jax.random.normal(k[5], (h,)); h0 = jax.random.normal(k[6], (b, h, p, n))
    reset = jnp.zeros((b, l), bool).at[0, 5].set(True).at[1, 8].set(True).at[0, 16].set(True)  # 8, 16: shard edges
    def loss(f, *a):
        y, last = f(*a[:5], D=a[5], initial_state=a[6], reset=reset, chunk_size=4)
        return (y * jnp.sin(jnp.arange(y.size).reshape(y.shape))).sum() + (last ** 2).sum()
    args = (x, dt, A, B, C, D, h0)
    # The one-device references jitted too: one compile each, not one per operation.
    ref = jax.jit(lambda *a: ssd(*a[:5], D=a[5], initial_state=a[6], reset=reset, chunk_size=4))(*args)
    g_ref = jax.jit(jax.grad(lambda *a: loss(ssd, *a), argnums=tuple(range(7))))(*args)
    with jax.set_mesh(mesh):
        out = jax.jit(lambda *a: ssd_sharded(*a[:5], D=a[5], initial_state=a[6], reset=reset, chunk_size=4))(*args)
        g_sp = jax.jit(jax.grad(lambda *a: loss(ssd_sharded, *a), argnums=tuple(range(7))))(*args)
    rel = lambda u, v: float(jnp.abs(u - v).max() / (jnp.abs(v).max() + 1e-9))
    print("CHECK ssd_forward", max(rel(out[0], ref[0]), rel(out[1], ref[1])))
    print("CHECK ssd_grad", max(rel(u, v) for u, v in zip(g_sp, g_ref, strict=True)))
    cfg = ModelConfig(architecture="mamba2", vocab_size=384, d_model=32, n_layers=2, mamba_head_dim=8,
                      mamba_d_state=8, mamba_chunk=4)
    model = LanguageModel(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    tokens = jax.random.randint(k[7], (2, 32), 0, 256)
    seg = jnp.ones((2, 32), jnp.int32).at[0, 8:].set(2).at[1, 13:].set(2)
    def model_loss(params):
        logits = nnx.merge(graphdef, params)(tokens, seg)
        return (jax.nn.log_softmax(logits) * jnp.cos(jnp.arange(384))).sum()
    g1 = jax.jit(jax.grad(model_loss))(params)
    with jax.set_mesh(mesh):
        g8 = jax.jit(jax.grad(model_loss))(params)
    print("CHECK mamba2_model_grad", max(rel(u, v) for u, v in zip(jax.tree.leaves(g8), jax.tree.leaves(g1), strict=True)))
    print("SCRIPT DONE")
''')


def test_sequence_parallel_ssd_and_mamba2_equal_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SSD_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or "SCRIPT DONE" not in proc.stdout:
        pytest.fail(f"sequence-parallel SSD check failed:\n{(proc.stdout + proc.stderr)[-5000:]}")
    checks = dict(line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("CHECK"))
    assert checks.keys() == {"ssd_forward", "ssd_grad", "mamba2_model_grad"}
    for name, err in checks.items():
        assert float(err) <= TOL, (name, err)
