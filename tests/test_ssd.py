"""The chunked SSD kernel against its sequential oracle, and the Mamba-2 mixer's state contract.

Parity is checked in values and gradients (through a random linear functional of
(y, final_state)) w.r.t. x, dt, A, B, C, D and the initial state, in float32 with a
tolerance of 1e-5 relative to the largest reference magnitude; never loosen it to make a
test pass.
"""

import dataclasses

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


def _close(actual, expected, tol=TOL, what=""):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert np.all(np.isfinite(actual)), what
    scale = max(1.0, float(np.abs(expected).max()))
    err = float(np.abs(actual - expected).max())
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol} x {scale:.3g}"


def _inputs(length, groups, with_h0, resets, *, batch=2, heads=HEADS, width=WIDTH, size=SIZE, seed=0):
    k = jax.random.split(jax.random.key(seed), 8)
    args = dict(
        x=jax.random.normal(k[0], (batch, length, heads, width)),
        dt=jax.nn.softplus(jax.random.normal(k[1], (batch, length, heads)) - 1.0),
        A=-jnp.exp(jax.random.uniform(k[2], (heads,))),
        B=jax.random.normal(k[3], (batch, length, groups, size)),
        C=jax.random.normal(k[4], (batch, length, groups, size)),
        D=jax.random.normal(k[5], (heads,)),
        initial_state=jax.random.normal(k[6], (batch, heads, width, size)) if with_h0 else None,
    )
    reset = np.zeros((batch, length), bool)
    for row, t in resets:
        reset[row, t] = True
    return args, jnp.asarray(reset)


def _run(args, reset, **kw):
    return ssd(args["x"], args["dt"], args["A"], args["B"], args["C"], D=args["D"],
               initial_state=args["initial_state"], reset=reset, **kw)


# (chunk Q, length L, groups G, initial state, resets (row, t)).
CASES = [
    (4, 16, 1, True, []),  # L a multiple of Q
    (4, 13, 2, True, [(0, 6), (0, 8), (1, 0), (1, 12)]),  # mid-chunk, on a chunk boundary, first, last
    (5, 13, 1, False, [(0, 3), (0, 4), (1, 10)]),  # two documents starting in a row
    (16, 13, 2, True, [(0, 5)]),  # one chunk, shorter than Q
    (3, 13, 2, True, [(1, 3), (1, 9)]),  # resets on chunk boundaries only
    (1, 7, 1, True, [(0, 2)]),  # Q = 1: the chunked path is the recurrence
]


@pytest.mark.parametrize("chunk,length,groups,with_h0,resets", CASES)
def test_chunked_equals_sequential_in_values_and_gradients(chunk, length, groups, with_h0, resets):
    args, reset = _inputs(length, groups, with_h0, resets)
    k = jax.random.split(jax.random.key(1), 2)
    wy = jax.random.normal(k[0], args["x"].shape)
    ws = jax.random.normal(k[1], (2, HEADS, WIDTH, SIZE))
    diff = {name: v for name, v in args.items() if v is not None}

    def loss(diff, implementation):
        y, final = _run({**args, **diff}, reset, chunk_size=chunk, implementation=implementation)
        return jnp.sum(y * wy) + jnp.sum(final * ws), (y, final)

    (_, (y, final)), grads = jax.value_and_grad(loss, has_aux=True)(diff, "chunked")
    (_, (y_ref, final_ref)), grads_ref = jax.value_and_grad(loss, has_aux=True)(diff, "reference")
    _close(y, y_ref, what="y")
    _close(final, final_ref, what="final state")
    assert final.dtype == jnp.float32
    for name in diff:
        _close(grads[name], grads_ref[name], what=f"d/d{name}")


def test_long_sequence_matches_reference():
    """Spec §9 test 1 setting: dt = softplus(randn − 4), A = −exp(rand), L = 2048, Q = 64, H = 32, N = 64."""
    args, _ = _inputs(2048, 1, True, [], batch=1, heads=32, width=2, size=64, seed=3)
    args["dt"] = jax.nn.softplus(jax.random.normal(jax.random.key(4), args["dt"].shape) - 4.0)
    run = jax.jit(lambda a, impl: _run(a, None, chunk_size=64, implementation=impl), static_argnums=1)
    (y, final), (y_ref, final_ref) = run(args, "chunked"), run(args, "reference")
    _close(y, y_ref, what="y")
    _close(final, final_ref, what="final state")


def test_resets_separate_documents():
    """A document after a reset equals that document run alone from a zero state."""
    args, reset = _inputs(12, 2, True, [(0, 5), (1, 5)])
    y, _ = _run(args, reset, chunk_size=4)
    alone = {k: (v[:, 5:] if k in ("x", "dt", "B", "C") else v) for k, v in args.items()}
    alone["initial_state"] = None
    y_alone, _ = _run(alone, None, chunk_size=4)
    _close(y[:, 5:], y_alone, what="document after reset")


def test_dt_zero_padding_leaves_the_state_unchanged():
    args, reset = _inputs(9, 2, True, [(0, 4)])
    y, final = _run(args, reset, chunk_size=4)
    extra = 6
    key = jax.random.key(7)
    padded = dict(args)
    for name in ("x", "B", "C"):
        noise = jax.random.normal(key, (2, extra) + args[name].shape[2:])
        padded[name] = jnp.concatenate([args[name], noise], axis=1)
    padded["dt"] = jnp.concatenate([args["dt"], jnp.zeros((2, extra, HEADS))], axis=1)
    y_pad, final_pad = _run(padded, jnp.pad(reset, ((0, 0), (0, extra))), chunk_size=4)
    _close(final_pad, final, what="final state")
    _close(y_pad[:, :9], y, what="outputs before the padding")


def test_stable_segsum_is_finite_and_exact():
    a = -jax.random.uniform(jax.random.key(0), (3, 64), minval=0.0, maxval=1.0)
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
    args, reset = _inputs(24, 1, True, [(0, 10)])
    args["A"] = -jnp.exp(jnp.linspace(-2.0, 6.0, HEADS))  # |Ā| per step up to ~400
    args["dt"] = args["dt"] + 1.0

    def loss(x, implementation):
        y, final = _run({**args, "x": x}, reset, chunk_size=8, implementation=implementation)
        return jnp.sum(y) + jnp.sum(final), (y, final)

    (_, (y, final)), g = jax.value_and_grad(loss, has_aux=True)(args["x"], "chunked")
    (_, (y_ref, final_ref)), g_ref = jax.value_and_grad(loss, has_aux=True)(args["x"], "reference")
    _close(y, y_ref, what="y")
    _close(final, final_ref, what="final state")
    _close(g, g_ref, what="d/dx")


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
        _run(args, None, implementation="pallas")


# --------------------------------------------------------------------------- the Mamba-2 mixer

MIXER_T = 11
# Row 0 packs three documents (starts at 4 and 7; Q = 4 puts one on a chunk boundary).
MIXER_SEGMENTS = jnp.asarray(np.array([[1] * 4 + [2] * 3 + [3] * 4, [1] * MIXER_T], np.int32))


@pytest.fixture(scope="module")
def mixer():
    cfg = dataclasses.replace(tiny_model_config("mamba2"), mamba_groups=2)
    return Mamba2Mixer(cfg, nnx.Rngs(params=0))


def _mixer_inputs(mixer, seed=0, batch=2):
    k = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k[0], (batch, MIXER_T, mixer.cfg.d_model))
    zero = mixer.init_state(batch)
    state = {"ssm": jax.random.normal(k[1], zero["ssm"].shape), "conv": jax.random.normal(k[2], zero["conv"].shape)}
    return x, state


def _tree_close(a, b, what):
    for (path, u), v in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
        _close(u, v, what=f"{what} {jax.tree_util.keystr(path)}")


def test_mixer_rejects_bidirectional():
    with pytest.raises(ValueError, match="causal only"):
        Mamba2Mixer(tiny_model_config("mamba2"), nnx.Rngs(0), bidirectional=True)


def test_mixer_state_shapes(mixer):
    state = mixer.init_state(3, cache_len=100)
    assert state["ssm"].shape == (3, 8, 8, 8) and state["ssm"].dtype == jnp.float32
    assert state["conv"].shape == (3, 3, 64 + 2 * 2 * 8)


def test_mixer_full_sequence_equals_step_by_step(mixer):
    x, state0 = _mixer_inputs(mixer)
    ones = jnp.ones(x.shape[:2], jnp.int32)
    y, final = mixer(x, segment_ids=ones, state=state0)
    step = nnx.jit(lambda m, x_t, s: m.step(x_t, s))
    state, ys = state0, []
    for t in range(MIXER_T):
        y_t, state = step(mixer, x[:, t], state)
        ys.append(y_t)
    _close(jnp.stack(ys, 1), y, what="outputs")
    _tree_close(state, final, "final state")


def test_mixer_two_halves_with_carried_state_equal_one_pass(mixer):
    x, state0 = _mixer_inputs(mixer, seed=1)

    def one_pass(state0):
        return mixer(x, segment_ids=MIXER_SEGMENTS, state=state0)

    def halves(state0, cut):
        first, state = mixer(x[:, :cut], segment_ids=MIXER_SEGMENTS[:, :cut], state=state0)
        second, state = mixer(x[:, cut:], segment_ids=MIXER_SEGMENTS[:, cut:], state=state)
        return jnp.concatenate([first, second], 1), state

    w = jax.random.normal(jax.random.key(5), x.shape)
    loss = lambda out: jnp.sum(out[0] * w) + sum(jnp.sum(s) for s in jax.tree.leaves(out[1]))  # noqa: E731
    y, final = one_pass(state0)
    grad = jax.grad(lambda s: loss(one_pass(s)))(state0)
    for cut in (2, 5, 9):  # inside the first, second and third document of row 0
        y2, final2 = halves(state0, cut)
        _close(y2, y, what=f"outputs, cut {cut}")
        _tree_close(final2, final, f"final state, cut {cut}")
        _tree_close(jax.grad(lambda s, cut=cut: loss(halves(s, cut)))(state0), grad, f"d/d initial state, cut {cut}")


def test_mixer_packed_document_equals_document_alone(mixer):
    x, _ = _mixer_inputs(mixer, seed=2)
    packed, _ = mixer(x, segment_ids=MIXER_SEGMENTS)
    for start, stop in [(0, 4), (4, 7), (7, MIXER_T)]:
        alone, _ = mixer(x[:1, start:stop], segment_ids=jnp.ones((1, stop - start), jnp.int32))
        _close(packed[0, start:stop], alone[0], what=f"document {start}:{stop}")


def test_mixer_init_follows_the_spec(mixer):
    a = -jnp.exp(mixer.A_log[...])
    assert np.all((-16.0 <= np.asarray(a)) & (np.asarray(a) <= -1.0))
    dt = jax.nn.softplus(mixer.dt_bias[...])
    assert np.all((1e-4 <= np.asarray(dt)) & (np.asarray(dt) <= 0.1 + 1e-6))
    np.testing.assert_array_equal(mixer.D[...], 1.0)
