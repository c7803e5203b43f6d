"""Multi-device checks for tests/test_distributed.py, run in a subprocess with fake CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \
        python tests/distributed_worker.py main OUT_DIR

runs (b) sequence parallelism, (a) one training step per mesh layout (and, for a JRT-RNN
hybrid, two steps on a 2×2×2 mesh), (c) gradient accumulation and (d) a checkpoint saved on 8 devices (asynchronously, with the Grain
iterator) restored onto a 4-device mesh (``jax.devices()[:4]``), continuing the run.
Each check prints one sentinel line ``CHECK <name> <max abs error>`` (or raises) and the
run ends with ``WORKER DONE``; the test asserts on them. The test then calls
``restore_and_continue`` in its own 1-device process for the restore on 1 device. Shapes
are tiny so compilation dominates.

AdamW's eps is 1e-4 here, not the default 1e-8: Adam's update lr·m/(sqrt(v)+eps) of a
parameter whose gradient is ~eps is sensitive to the gradient with slope lr/eps, so with
eps=1e-8 the 1e-8-sized float reassociation noise of a sharded all-reduce moves such a
parameter by ~3e-5 (observed, on one kernel entry whose gradient is 1.1e-8), which would
make "equal within 1e-5" a test of Adam's conditioning, not of sharding. The gradients
themselves are compared unamplified through Adam's moments (mu = 0.1·g after one step).
"""

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import birdie_jax
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.distributed import (MeshConfig, batch_sharding, global_batch, init_sharded, make_mesh,
                                    make_train_step_fn, place_state, restore_onto, shard_train_step)
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.training.checkpoint import Checkpointer
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer
from birdie_jax.training.step import init_train_state, make_train_step

TOL = 1e-5
_T0 = time.perf_counter()
BATCH, SEQ = 8, 16
LAYOUTS = ((8, 1, 1), (1, 8, 1), (2, 2, 2), (2, 4, 1))  # data × fsdp × tensor
CKPT_LAYOUT = (2, 2, 2)
DOCUMENTS = [f"document {i}: " + "the quick brown fox jumps over the lazy dog. " * (1 + i % 3) for i in range(24)]


def check(name: str, err: float, tol: float = TOL) -> None:
    print(f"CHECK {name} {err:.3e} t={time.perf_counter() - _T0:.1f}s", flush=True)
    if not err <= tol:
        raise AssertionError(f"{name}: max abs error {err:.3e} > {tol:.0e}")


def max_diff(x, y) -> float:
    return max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
               for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y), strict=True))


def scaled_diff(x, y) -> float:
    """max |x - y| / max(1, max |x|): gradients of sums over many terms are large in absolute value."""
    scale = max(1.0, max(float(np.max(np.abs(np.asarray(a)))) for a in jax.tree.leaves(x)))
    return max_diff(x, y) / scale


def host(tree):
    return jax.tree.map(np.asarray, tree)


def setup():
    """(cfg, graphdef, tx, schedule, init_fn, tokenizer) of a tiny Hawk."""
    cfg = birdie_jax.load_config("hawk_tiny", "model.d_model=32", "model.state_dim=32", "model.n_layers=1",
                                 f"data.seq_len={SEQ}", f"data.batch_size={BATCH}", "train.warmup_steps=0",
                                 "train.steps=10", "train.eps=1e-4")
    tokenizer = build_tokenizer("byte")
    tx, schedule = make_optimizer(cfg.train), learning_rate_schedule(cfg.train)
    build = lambda: birdie_jax.build_model(cfg, seed=0, vocab_size=tokenizer.vocab_size)  # noqa: E731
    graphdef, _ = nnx.split(nnx.eval_shape(build))

    def init_fn():
        return init_train_state(nnx.split(build())[1], tx, 0)

    return cfg, graphdef, tx, schedule, init_fn, tokenizer


def batches(tokenizer, n: int, iterator=None) -> list[dict]:
    it = iterator or make_batch_iterator(DOCUMENTS, tokenizer, seq_len=SEQ, batch_size=BATCH, seed=0)
    return [next(it) for _ in range(n)]


def mesh_of(layout, devices=None):
    data, fsdp, tensor = layout
    return make_mesh(MeshConfig(data=data, fsdp=fsdp, tensor=tensor), devices=devices)


# --------------------------------------------------------------------------- (a) + (c) + save of (d)


def check_training(out_dir: str) -> None:
    cfg, graphdef, tx, schedule, init_fn, tokenizer = setup()
    data = batches(tokenizer, 2)
    state0 = host(init_fn())

    # One device: the project's own (unsharded, jitted) step.
    ref_step = make_train_step(graphdef, tx, schedule)
    state = jax.device_put(state0, jax.devices()[0])
    ref_losses = []
    for batch in data:
        state, metrics = ref_step(state, {k: jnp.asarray(v) for k, v in batch.items()})
        ref_losses.append(float(metrics["loss"]))
    ref = host(state)

    step_fn = make_train_step_fn(graphdef, tx, schedule)
    steps = {}
    for layout in LAYOUTS:
        mesh = mesh_of(layout)
        state = place_state(state0, mesh)
        step = steps[layout] = shard_train_step(step_fn, state, mesh)
        losses = []
        for batch in data:
            state, metrics = step(state, global_batch(batch, mesh=mesh))
            losses.append(float(metrics["loss"]))
        name = "x".join(map(str, layout))
        kernel = state["params"]["blocks"][0]["mlp"]["up"]["kernel"][...]
        print(f"layout {name}: mlp.up kernel sharding {kernel.sharding.spec}", flush=True)
        check(f"layout_{name}_loss", max(abs(a - b) for a, b in zip(losses, ref_losses)))
        check(f"layout_{name}_params", max_diff(state["params"], ref["params"]))
        check(f"layout_{name}_opt_state", max_diff(state["opt_state"], ref["opt_state"]))

    # init_sharded: born sharded, same values as the eager init.
    mesh = mesh_of(CKPT_LAYOUT)
    check("init_sharded", max_diff(init_sharded(init_fn, mesh), state0))

    # (c) gradient accumulation: k micro-batches == one full-batch step (sharded and on one device).
    for k, sharded in ((2, True), (4, False)):
        acc_fn = make_train_step_fn(graphdef, tx, schedule, num_micro=k)
        if sharded:
            state = place_state(state0, mesh)
            step, put = shard_train_step(acc_fn, state, mesh), (lambda b: global_batch(b, mesh=mesh))
        else:
            state = jax.device_put(state0, jax.devices()[0])
            step, put = jax.jit(acc_fn), (lambda b: {n: jnp.asarray(v) for n, v in b.items()})
        losses = []
        for batch in data:
            state, metrics = step(state, put(batch))
            losses.append(float(metrics["loss"]))
        check(f"accumulate_{k}_loss", max(abs(a - b) for a, b in zip(losses, ref_losses)))
        check(f"accumulate_{k}_params", max_diff(state["params"], ref["params"]))

    # (d) save on 8 devices after step 1 (with the data iterator), then the uninterrupted step 2.
    iterator = make_batch_iterator(DOCUMENTS, tokenizer, seq_len=SEQ, batch_size=BATCH, seed=0)
    state = place_state(state0, mesh)
    step = steps[CKPT_LAYOUT]
    state, _ = step(state, global_batch(next(iterator), mesh=mesh))
    checkpointer = Checkpointer(os.path.join(out_dir, "checkpoints"))
    checkpointer.save(1, state, iterator, {"test": True})  # asynchronous: step 2 runs while it is written
    state, metrics = step(state, global_batch(next(iterator), mesh=mesh))
    checkpointer.close()
    flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    np.savez(os.path.join(out_dir, "uninterrupted.npz"), loss=float(metrics["loss"]), **flat)
    print("SAVED", flush=True)

    loss_err, state_err = restore_and_continue(out_dir, (1, 2, 2), jax.devices()[:4])
    check("restore_4_loss", loss_err)
    check("restore_4_state", state_err)


def restore_and_continue(out_dir: str, layout, devices=None) -> tuple[float, float]:
    """Restores the 8-device checkpoint onto ``layout``, runs step 2; (loss error, state error)."""
    _, graphdef, tx, schedule, init_fn, tokenizer = setup()
    mesh = mesh_of(layout, devices)
    iterator = make_batch_iterator(DOCUMENTS, tokenizer, seq_len=SEQ, batch_size=BATCH, seed=0)
    state = restore_onto(os.path.join(out_dir, "checkpoints"), jax.eval_shape(init_fn), mesh, data_iterator=iterator)
    assert int(state["step"]) == 1
    leaf = state["params"]["embed"]["embedding"][...]
    assert leaf.sharding.mesh.devices.size == mesh.devices.size, leaf.sharding
    step = shard_train_step(make_train_step_fn(graphdef, tx, schedule), state, mesh)
    state, metrics = step(state, global_batch(next(iterator), mesh=mesh))
    saved = np.load(os.path.join(out_dir, "uninterrupted.npz"))
    flat = {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree_util.tree_flatten_with_path(state)[0]}
    assert set(flat) == set(saved.files) - {"loss"}
    err = max(float(np.max(np.abs(flat[k].astype(np.float64) - saved[k].astype(np.float64)))) for k in flat)
    return abs(float(metrics["loss"]) - float(saved["loss"])), err


# --------------------------------------------------------------------------- (b) sequence parallelism


def check_sequence() -> None:
    from birdie_jax.config import ModelConfig
    from birdie_jax.distributed.sequence import conv_module_sharded
    from birdie_jax.kernels.linear_scan import linear_scan, linear_scan_sharded
    from birdie_jax.models.conv import CausalConv1D

    B, T, D, K = 4, 32, 16, 4
    keys = jax.random.split(jax.random.key(0), 6)
    a = jax.random.uniform(keys[0], (B, T, D), minval=0.5, maxval=1.0)
    b = jax.random.normal(keys[1], (B, T, D))
    h0 = jax.random.normal(keys[2], (B, D))
    w_h, w_last = jax.random.normal(keys[3], (B, T, D)), jax.random.normal(keys[4], (B, D))
    reset = np.array(jax.random.uniform(keys[5], (B, T)) < 0.08)
    reset[0, [8, 16, 24]] = True  # first step of shards 1..3 (forward boundaries)
    reset[1, [7, 15, 23]] = True  # last step of shards 0..2 (reverse boundaries)
    reset[2, [3, 8, 31]] = True
    reset[3, 0] = True  # h0 dropped
    reset = jnp.asarray(reset)

    def loss(fn, reverse):
        def f(a, b, h0):
            h, h_last = fn(a, b, h0=h0, reset=reset, reverse=reverse)
            return jnp.sum(h * w_h) + jnp.sum(h_last * w_last), (h, h_last)
        return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)

    # K = 4 time shards; the channels split over "tensor" inside the shard_map (the batch
    # split is exercised by the conv and model checks below, on data=2 × sequence=4).
    for mesh_cfg in (MeshConfig(data=1, tensor=2, sequence=K),):
        mesh = make_mesh(mesh_cfg)
        name = "x".join(str(v) for v in dict(mesh.shape).values())
        for reverse in (False, True):
            ref = jax.jit(loss(lambda *x, **kw: linear_scan(*x, implementation="reference", **kw), reverse))(a, b, h0)
            sharded = jax.jit(loss(lambda *x, **kw: linear_scan_sharded(*x, mesh=mesh, **kw), reverse))(a, b, h0)
            (_, (h1, l1)), g1 = ref
            (_, (h2, l2)), g2 = sharded
            direction = "reverse" if reverse else "causal"
            check(f"scan_{name}_{direction}_forward", max(max_diff(h1, h2), max_diff(l1, l2)))
            check(f"scan_{name}_{direction}_grad", scaled_diff(g1, g2))

    # The conv, against the module on the whole sequence (state carried in, segments on and off boundaries).
    mesh = make_mesh(MeshConfig(data=2, sequence=K))
    conv = CausalConv1D(ModelConfig(conv_width=4), D, nnx.Rngs(params=0))
    conv.bias[...] = jax.random.normal(keys[0], (D,))
    seg = np.ones((B, T), np.int32)
    seg[0, 8:] = 2
    seg[1, 6:] = 2
    seg[1, 17:] = 3
    seg[2, 30:] = 0
    seg[3, 9:], seg[3, 10:], seg[3, 24:] = 2, 3, 4
    seg = jnp.asarray(seg)
    state_in = jax.random.normal(keys[1], (B, 3, D))
    gd, params = nnx.split(conv)

    def conv_loss(apply):
        def f(params, x):
            y, s = apply(nnx.merge(gd, params), x)
            return jnp.sum(y * w_h) + jnp.sum(s), (y, s)
        return jax.value_and_grad(f, argnums=(0, 1), has_aux=True)

    (_, (y1, s1)), g1 = jax.jit(conv_loss(lambda m, x: m(x, seg, state_in)))(params, b)
    (_, (y2, s2)), g2 = jax.jit(conv_loss(lambda m, x: conv_module_sharded(m, x, seg, state_in, mesh=mesh)))(params, b)
    check("conv_forward", max(max_diff(y1, y2), max_diff(s1, s2)))
    check("conv_grad", scaled_diff(g1, g2))

    check_sequence_model()


def check_sequence_model() -> None:
    """A whole Hawk (bidirectional layer 0, causal layer 1) with the recurrence and the conv
    sequence-parallel (the models' calls patched, as the lead's wiring will do), forward and
    gradient, against the same model on one device."""
    import birdie_jax.models.bidirectional as bidirectional
    from birdie_jax.distributed.sequence import conv_module_sharded
    from birdie_jax.kernels.linear_scan import linear_scan, linear_scan_sharded
    from birdie_jax.models.conv import CausalConv1D
    from birdie_jax.training.step import batch_loss

    cfg = birdie_jax.load_config("hawk_tiny", "model.d_model=32", "model.state_dim=32", "model.n_layers=2",
                                 "model.bidirectional=alternate")
    model = birdie_jax.build_model(cfg, seed=0, vocab_size=384)
    graphdef, params = nnx.split(model)
    B, T = 4, 32
    rng = np.random.default_rng(0)
    seg = np.ones((B, T), np.int32)
    seg[0, 8:], seg[1, 13:], seg[2, 16:], seg[2, 29:] = 2, 2, 2, 0
    region = np.full((B, T), 2, np.int32)
    region[0, :5], region[0, 8:12], region[1, 2:15], region[2, 0:16], region[3, 4:20] = 0, 0, 0, 0, 0
    batch = {"inputs": jnp.asarray(rng.integers(0, 256, (B, T)), jnp.int32), "segment_ids": jnp.asarray(seg),
             "targets": jnp.asarray(np.where(region == 2, rng.integers(0, 256, (B, T)), -100), jnp.int32),
             "region": jnp.asarray(region)}
    grad = jax.value_and_grad(batch_loss, argnums=1, has_aux=True)
    (loss1, _), g1 = jax.jit(grad, static_argnums=0)(graphdef, params, batch)

    mesh = make_mesh(MeshConfig(data=2, sequence=4))
    original_call = CausalConv1D.__call__
    bidirectional.linear_scan = linear_scan_sharded  # mesh=None: the mesh of jax.set_mesh
    CausalConv1D.__call__ = lambda self, x, segment_ids, state: conv_module_sharded(self, x, segment_ids, state)
    try:
        with jax.set_mesh(mesh):
            fn = jax.jit(grad, static_argnums=0, in_shardings=(None, batch_sharding(mesh)))
            (loss2, _), g2 = fn(graphdef, params, batch)
            text = fn.lower(graphdef, params, batch).as_text()
    finally:
        bidirectional.linear_scan = linear_scan
        CausalConv1D.__call__ = original_call
    assert "all-gather" in text or "all_gather" in text, "the sharded scan did not lower to a collective"
    assert "collective-permute" in text or "collective_permute" in text, "the conv halo exchange is missing"
    check("model_sequence_parallel_loss", abs(float(loss1) - float(loss2)))
    check("model_sequence_parallel_grad", scaled_diff(g1, g2))


def check_hybrid_training() -> None:
    """A JRT-RNN hybrid (gated conv, PLA, SWA, SwiGLU; NTP + MLM loss on prefix-LM rows): two
    training steps on a data × fsdp × tensor mesh equal the same steps on one device."""
    from birdie_jax.objectives import build_mixture
    from birdie_jax.objectives.jrt import term_weights

    cfg = birdie_jax.load_config("jrt_rnn_tiny", "model.d_model=32", "model.n_layers=3", "model.num_heads=2",
                                 "model.layers=[gated_conv+mlp, pla+mlp, swa+mlp]", "model.la_feature_dim=4",
                                 "model.swa_window=4", "model.la_chunk=8", f"data.seq_len={SEQ}",
                                 f"data.batch_size={BATCH}", "mixture.prefix_len=[2, 10]", "train.warmup_steps=0",
                                 "train.steps=10", "train.eps=1e-4")
    tokenizer = build_tokenizer("byte")
    mixture = build_mixture(cfg.mixture, tokenizer, seq_len=SEQ)
    data = batches(tokenizer, 2, make_batch_iterator(DOCUMENTS, tokenizer, seq_len=SEQ, batch_size=BATCH, seed=0,
                                                     sample_transform=mixture))
    assert all(((b["region"] != 2) & (b["targets"] != -100)).any() for b in data)  # MLM targets present
    tx, schedule = make_optimizer(cfg.train), learning_rate_schedule(cfg.train)
    build = lambda: birdie_jax.build_model(cfg, seed=0, vocab_size=tokenizer.vocab_size)  # noqa: E731
    graphdef, _ = nnx.split(nnx.eval_shape(build))
    state0 = host(init_train_state(nnx.split(build())[1], tx, 0))
    step_fn = make_train_step_fn(graphdef, tx, schedule, term_weights=term_weights(0.25, False))
    results = {}
    for name, mesh in (("one", None), ("2x2x2", mesh_of((2, 2, 2)))):
        if mesh is None:
            state, step, put = jax.device_put(state0, jax.devices()[0]), jax.jit(step_fn), (
                lambda b: {n: jnp.asarray(v) for n, v in b.items()})
        else:
            state = place_state(state0, mesh)
            step, put = shard_train_step(step_fn, state, mesh), (lambda b, mesh=mesh: global_batch(b, mesh=mesh))
        losses = []
        for batch in data:
            state, metrics = step(state, put(batch))
            losses.append(float(metrics["loss"]))
        results[name] = (losses, host(state))
    (ref_losses, ref), (losses, state) = results["one"], results["2x2x2"]
    check("hybrid_2x2x2_loss", max(abs(a - b) for a, b in zip(losses, ref_losses)))
    check("hybrid_2x2x2_params", max_diff(state["params"], ref["params"]))


if __name__ == "__main__":
    mode, out_dir = sys.argv[1], sys.argv[2]
    if mode == "main":
        assert jax.device_count() == 8, jax.devices()
        check_sequence()
        check_training(out_dir)
        check_hybrid_training()
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("WORKER DONE", flush=True)
