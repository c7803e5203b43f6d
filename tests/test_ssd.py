"""The chunked SSD kernel against its sequential oracle, and the Mamba-2 mixer's state contract.

Parity is checked in values and gradients (through a random linear functional of
(y, final_state)) w.r.t. x, dt, A, B, C, D and the initial state, in float32 with a
tolerance of 1e-5 relative to the largest reference magnitude; never loosen it to make a
test pass.
"""

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import tiny_model_config
from flax import nnx

from birdie_jax.kernels.ssd import segsum, ssd
from birdie_jax.models.mamba2 import Mamba2Mixer

TOL = 1e-5
HEADS, WIDTH, SIZE = 4, 3, 5
TIME_ARGS = ("x", "dt", "B", "C")


@pytest.fixture(autouse=True)
def _full_precision_matmuls():
    """fp32 parity needs fp32 matmuls (GPUs default to TF32; no effect on CPU)."""
    with jax.default_matmul_precision("highest"):
        yield


def _close(actual, expected, tol=TOL, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert np.all(np.isfinite(actual)), what
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol} x {scale:.3g}"


def _softplus(v):
    return np.logaddexp(0.0, v)


def _inputs(length, groups, with_h0, resets, *, batch=2, heads=HEADS, width=WIDTH, size=SIZE, seed=0):
    """Random float32 arguments of ``ssd`` (numpy, so no op is compiled) and the reset mask."""
    rng = np.random.RandomState(seed)
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    args = dict(
        x=f32(rng.randn(batch, length, heads, width)),
        dt=f32(_softplus(rng.randn(batch, length, heads) - 1.0)),
        A=f32(-np.exp(rng.rand(heads))),
        B=f32(rng.randn(batch, length, groups, size)),
        C=f32(rng.randn(batch, length, groups, size)),
        D=f32(rng.randn(heads)),
        initial_state=f32(rng.randn(batch, heads, width, size)) if with_h0 else None,
    )
    reset = np.zeros((batch, length), bool)
    for row, t in resets:
        reset[row, t] = True
    return args, jnp.asarray(reset)


def _run(args, reset, **kw):
    return ssd(args["x"], args["dt"], args["A"], args["B"], args["C"], D=args["D"],
               initial_state=args["initial_state"], reset=reset, **kw)


_run_jit = jax.jit(_run, static_argnames=("chunk_size", "implementation"))


# (chunk Q, length L, groups G, initial state, resets (row, t)).
CASES = [
    (4, 13, 2, True, [(0, 6), (0, 8), (1, 0), (1, 12)]),  # L % Q != 0; mid-chunk, chunk boundary, first, last
    (5, 15, 1, False, [(0, 3), (0, 4), (1, 10)]),  # L a multiple of Q; two documents starting in a row
    (16, 13, 2, True, []),  # one chunk, shorter than Q
]


@functools.partial(jax.jit, static_argnames=("chunk", "implementation"))
def _values_and_grads(diff, fixed, reset, weights, *, chunk, implementation):
    """(y, final state) and the gradient of <weights, (y, final)> w.r.t. every entry of ``diff``."""

    def loss(diff):
        y, final = _run({**fixed, **diff}, reset, chunk_size=chunk, implementation=implementation)
        return jnp.sum(y * weights[0]) + jnp.sum(final * weights[1]), (y, final)

    (_, out), grads = jax.value_and_grad(loss, has_aux=True)(diff)
    return out, grads


@pytest.mark.parametrize("chunk,length,groups,with_h0,resets", CASES)
def test_chunked_equals_sequential_in_values_and_gradients(chunk, length, groups, with_h0, resets):
    args, reset = _inputs(length, groups, with_h0, resets)
    rng = np.random.RandomState(1)
    weights = (jnp.asarray(rng.randn(*args["x"].shape), jnp.float32),
               jnp.asarray(rng.randn(2, HEADS, WIDTH, SIZE), jnp.float32))
    diff = {name: v for name, v in args.items() if v is not None}
    fixed = {name: v for name, v in args.items() if v is None}
    (y, final), grads = _values_and_grads(diff, fixed, reset, weights, chunk=chunk, implementation="chunked")
    (y_ref, final_ref), grads_ref = _values_and_grads(diff, fixed, reset, weights, chunk=chunk,
                                                      implementation="reference")
    _close(y, y_ref, what="y")
    _close(final, final_ref, what="final state")
    assert final.dtype == jnp.float32
    for name in diff:
        _close(grads[name], grads_ref[name], what=f"d/d{name}")


def test_long_sequence_matches_reference():
    """Spec §9 test 1 setting: dt = softplus(randn − 4), A = −exp(rand), L = 2048, Q = 64, H = 32, N = 64."""
    args, _ = _inputs(2048, 1, True, [], batch=1, heads=32, width=2, size=64, seed=3)
    args["dt"] = jnp.asarray(_softplus(np.random.RandomState(4).randn(*args["dt"].shape) - 4.0), jnp.float32)
    run = jax.jit(lambda a, impl: _run(a, None, chunk_size=64, implementation=impl), static_argnums=1)
    (y, final), (y_ref, final_ref) = run(args, "chunked"), run(args, "reference")
    _close(y, y_ref, what="y")
    _close(final, final_ref, what="final state")


def test_resets_separate_documents():
    """A document after a reset equals that document run alone from a zero state."""
    args, reset = _inputs(12, 2, True, [(0, 5), (1, 5)])
    y, _ = _run_jit(args, reset, chunk_size=4)
    alone = {k: (v[:, 5:] if k in TIME_ARGS else v) for k, v in args.items()}
    alone["initial_state"] = None
    y_alone, _ = _run_jit(alone, None, chunk_size=4)
    _close(y[:, 5:], y_alone, what="document after reset")


def test_dt_zero_padding_leaves_the_state_unchanged():
    """Tokens with dt = 0 (any x, B, C) leave the state as it was: what the kernel's own padding relies on."""
    args, reset = _inputs(15, 2, True, [(0, 4)])
    head = {k: (v[:, :9] if k in TIME_ARGS else v) for k, v in args.items()}
    y, final = _run_jit(head, reset[:, :9], chunk_size=4)
    y_pad, final_pad = _run_jit(dict(args, dt=args["dt"].at[:, 9:].set(0.0)), reset, chunk_size=4)
    _close(final_pad, final, what="final state")
    _close(y_pad[:, :9], y, what="outputs before the padding")


def test_stable_segsum_is_finite_and_exact():
    a = jnp.asarray(-np.random.RandomState(0).rand(3, 64), jnp.float32)
    naive_cs = jnp.cumsum(a, axis=-1)
    naive = naive_cs[:, :, None] - naive_cs[:, None, :]
    lower = np.tril(np.ones((64, 64), bool))
    out = segsum(a)
    _close(jnp.where(lower, out, 0.0), jnp.where(lower, naive, 0.0), what="segsum vs cumsum difference")
    assert np.all(np.asarray(out)[:, ~lower] == -np.inf)
    assert np.all(np.asarray(jnp.diagonal(out, axis1=-2, axis2=-1)) == 0.0)
    huge = a * 1e4  # |ΣĀ| up to ~6e5 inside one chunk
    grad = jax.grad(lambda v: jnp.sum(jnp.exp(segsum(v))))(huge)
    assert np.all(np.isfinite(np.asarray(segsum(huge))[:, lower])) and np.all(np.isfinite(grad))


def test_large_decays_stay_finite_and_match_reference():
    args, reset = _inputs(13, 2, True, [(0, 6)])
    args["A"] = -jnp.exp(jnp.linspace(-2.0, 6.0, HEADS))  # |Ā| per step up to ~400, |ΣĀ| per chunk ~1e3
    args["dt"] = args["dt"] + 1.0
    weights = (jnp.ones(args["x"].shape), jnp.ones((2, HEADS, WIDTH, SIZE)))
    diff = {"x": args.pop("x"), "B": args.pop("B")}
    (y, final), g = _values_and_grads(diff, args, reset, weights, chunk=4, implementation="chunked")
    (y_ref, final_ref), g_ref = _values_and_grads(diff, args, reset, weights, chunk=4, implementation="reference")
    _close(y, y_ref, what="y")
    _close(final, final_ref, what="final state")
    for name in diff:
        _close(g[name], g_ref[name], what=f"d/d{name}")


@pytest.mark.parametrize("change,match", [
    (dict(x=jnp.zeros((2, 8, 4))), "x must be"),
    (dict(dt=jnp.zeros((2, 8, 3))), "dt has shape"),
    (dict(A=jnp.zeros((3,))), "A has shape"),
    (dict(B=jnp.zeros((2, 8, 3, 5)), C=jnp.zeros((2, 8, 3, 5))), "do not split into 3 groups"),
    (dict(C=jnp.zeros((2, 8, 1, 4))), "C has shape"),
    (dict(D=jnp.zeros((2,))), "D has shape"),
    (dict(initial_state=jnp.zeros((2, 4, 3, 4))), "initial_state has shape"),
])
def test_bad_shapes_are_clear_errors(change, match):
    args, _ = _inputs(8, 1, True, [])
    with pytest.raises(ValueError, match=match):
        _run({**args, **change}, None)


def test_bad_options_are_clear_errors():
    args, _ = _inputs(8, 1, False, [])
    with pytest.raises(ValueError, match="reset has shape"):
        _run(args, jnp.zeros((2, 7), bool))
    with pytest.raises(TypeError, match="reset must be boolean"):
        _run(args, jnp.zeros((2, 8), jnp.int32))
    with pytest.raises(ValueError, match="chunk_size"):
        _run(args, None, chunk_size=0)
    with pytest.raises(ValueError, match="unknown implementation"):
        _run(args, None, implementation="triton")


# --------------------------------------------------------------------------- the Mamba-2 mixer

MIXER_T = 11
# Row 0 packs three documents (starts at 4 and 7; Q = 4 puts one on a chunk boundary).
MIXER_SEGMENTS = jnp.asarray(np.array([[1] * 4 + [2] * 3 + [3] * 4, [1] * MIXER_T], np.int32))


@pytest.fixture(scope="module")
def mixer():
    cfg = dataclasses.replace(tiny_model_config("mamba2"), mamba_groups=2)
    return Mamba2Mixer(cfg, nnx.Rngs(params=0))


@pytest.fixture(scope="module")
def run_mixer(mixer):
    """Jitted (x [b t d], segment_ids, state or None) → (y, final state) of the module's mixer."""
    graphdef, params = nnx.split(mixer)

    @jax.jit
    def run(params, x, segment_ids, state):
        return nnx.merge(graphdef, params)(x, segment_ids=segment_ids, state=state)

    return functools.partial(run, params)


def _mixer_inputs(mixer, seed=0, batch=2):
    rng = np.random.RandomState(seed)
    normal = lambda shape: jnp.asarray(rng.randn(*shape), jnp.float32)  # noqa: E731
    zero = mixer.init_state(batch)
    x = normal((batch, MIXER_T, mixer.cfg.d_model))
    state = {"ssm": normal(zero["ssm"].shape), "conv": normal(zero["conv"].shape)}
    return x, state


def _tree_close(a, b, what):
    chex.assert_trees_all_equal_structs(a, b)  # a zip over leaves would stop silently at the shorter tree
    for (path, u), v in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        _close(u, v, what=f"{what} {jax.tree_util.keystr(path)}")


def test_mixer_rejects_bidirectional():
    with pytest.raises(ValueError, match="causal only"):
        Mamba2Mixer(tiny_model_config("mamba2"), nnx.Rngs(0), bidirectional=True)


def test_mixer_state_shapes(mixer):
    state = mixer.init_state(3, cache_len=100)
    assert state["ssm"].shape == (3, 8, 8, 8) and state["ssm"].dtype == jnp.float32
    assert state["conv"].shape == (3, 3, 64 + 2 * 2 * 8)


def test_mixer_full_sequence_equals_step_by_step(mixer, run_mixer):
    x, state0 = _mixer_inputs(mixer)
    y, final = run_mixer(x, jnp.ones(x.shape[:2], jnp.int32), state0)
    step = nnx.jit(lambda m, x_t, s: m.step(x_t, s))
    state, ys = state0, []
    for t in range(MIXER_T):
        y_t, state = step(mixer, x[:, t], state)
        ys.append(y_t)
    _close(jnp.stack(ys, 1), y, what="outputs")
    _tree_close(state, final, "final state")


def test_mixer_two_halves_with_carried_state_equal_one_pass(mixer):
    """Cut inside a document: outputs, final state and d(loss)/d(initial state) equal one pass."""
    x, state0 = _mixer_inputs(mixer, seed=1)
    w = jnp.asarray(np.random.RandomState(5).randn(*x.shape), jnp.float32)
    graphdef, params = nnx.split(mixer)

    @functools.partial(jax.jit, static_argnums=0)
    def value_and_grad(cut, state0):
        def run(state0):
            m = nnx.merge(graphdef, params)
            if cut is None:
                return m(x, segment_ids=MIXER_SEGMENTS, state=state0)
            first, state = m(x[:, :cut], segment_ids=MIXER_SEGMENTS[:, :cut], state=state0)
            second, state = m(x[:, cut:], segment_ids=MIXER_SEGMENTS[:, cut:], state=state)
            return jnp.concatenate([first, second], 1), state

        def loss(state0):
            y, final = run(state0)
            return jnp.sum(y * w) + sum(jnp.sum(s) for s in jax.tree.leaves(final)), (y, final)

        return jax.value_and_grad(loss, has_aux=True)(state0)

    (_, (y, final)), grad = value_and_grad(None, state0)
    for cut in (5, 9):  # inside the second document (and a chunk) and inside the third
        (_, (y2, final2)), grad2 = value_and_grad(cut, state0)
        _close(y2, y, what=f"outputs, cut {cut}")
        _tree_close(final2, final, f"final state, cut {cut}")
        _tree_close(grad2, grad, f"d/d initial state, cut {cut}")


def test_mixer_packed_document_equals_document_alone(mixer, run_mixer):
    x, _ = _mixer_inputs(mixer, seed=2)
    packed, _ = run_mixer(x, MIXER_SEGMENTS, None)
    for start, stop in [(0, 4), (4, 7), (7, MIXER_T)]:
        alone, _ = run_mixer(x[:1, start:stop], jnp.ones((1, stop - start), jnp.int32), None)
        _close(packed[0, start:stop], alone[0], what=f"document {start}:{stop}")


def test_mixer_init_follows_the_spec(mixer):
    a = -jnp.exp(mixer.A_log[...])
    assert np.all((-16.0 <= np.asarray(a)) & (np.asarray(a) <= -1.0))
    dt = jax.nn.softplus(mixer.dt_bias[...])
    assert np.all((1e-4 <= np.asarray(dt)) & (np.asarray(dt) <= 0.1 + 1e-6))
    np.testing.assert_array_equal(mixer.D[...], 1.0)
