"""Parity tests: every linear_scan implementation against the fp32 reference.

Values and gradients (w.r.t. a, b, h0, through a random linear functional of
(h, h_last)) are compared for reverse on/off, resets on/off (including at t=0 and
t=T-1), h0 on/off, T not a multiple of the chunk size, fp32 (1e-5) and bf16 inputs
(1e-2, against the fp32 reference on the same rounded values). Tolerances are relative
to the largest reference magnitude; never loosen them to make a test pass.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import birdie_jax.kernels as kernels
from birdie_jax.kernels.linear_scan import api, reference, xla

BATCH = 2
CHANNELS = {1: 3, 7: 5, 64: 16, 100: 4}
FP32_TOL = 1e-5
BF16_TOL = 1e-2


def _chunked(chunk_size, unroll):
    return functools.partial(xla.linear_scan_chunked, chunk_size=chunk_size, unroll=unroll)


IMPLS = {
    "scan": xla.linear_scan_scan,
    "scan_unroll3": functools.partial(xla.linear_scan_scan, unroll=3),
    "associative": xla.linear_scan_associative,
    # chunk 16: T=100 -> 5 chunks of 20 (a divisor), T=64 -> 4 of 16, T<=16 one chunk.
    "chunked16": _chunked(16, 1),
    # chunk 3: T=7 is padded to 9 (3 chunks of 3; unroll 2 leaves a remainder step);
    # T=100 -> 25 chunks of 4; T=1 one chunk.
    "chunked3": _chunked(3, 2),
}

# The Pallas kernels (TPU and GPU flavours) are checked in interpret mode in
# tests/test_pallas_kernels.py.


def _inputs(steps, dtype, with_h0, with_reset, seed=0):
    channels = CHANNELS[steps]
    keys = jax.random.split(jax.random.PRNGKey(seed + steps), 6)
    shape = (BATCH, steps, channels)
    a = jax.random.uniform(keys[0], shape, jnp.float32, 0.7, 1.0).astype(dtype)
    b = jax.random.normal(keys[1], shape, jnp.float32).astype(dtype)
    h0 = jax.random.normal(keys[2], (BATCH, channels), jnp.float32).astype(dtype) if with_h0 else None
    reset = None
    if with_reset:
        reset = jax.random.bernoulli(keys[3], 0.15, (BATCH, steps))
        reset = reset.at[0, 0].set(True).at[1, steps - 1].set(True)
    w_h = jax.random.normal(keys[4], shape, jnp.float32)
    w_last = jax.random.normal(keys[5], (BATCH, channels), jnp.float32)
    return a, b, h0, reset, w_h, w_last


@functools.lru_cache(maxsize=None)
def _value_and_grads_fn(impl_name, reverse, with_h0):
    """One jitted function per (implementation, direction, h0 presence)."""
    fn = reference.linear_scan_reference if impl_name == "reference" else IMPLS[impl_name]

    def run(a, b, h0, reset, w_h, w_last):
        def loss(a, b, h0):
            h, h_last = fn(a, b, h0 if with_h0 else None, reset, reverse)
            value = jnp.sum(h.astype(jnp.float32) * w_h) + jnp.sum(h_last * w_last)
            return value, (h, h_last)

        (_, (h, h_last)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
            a, b, h0
        )
        return h, h_last, grads

    return jax.jit(run)


def _assert_close(name, got, want, tol):
    got = np.asarray(jnp.asarray(got, jnp.float32))
    want = np.asarray(jnp.asarray(want, jnp.float32))
    assert got.shape == want.shape, (name, got.shape, want.shape)
    scale = max(float(np.max(np.abs(want))), 1e-6)
    err = float(np.max(np.abs(got - want)))
    assert err <= tol * scale, f"{name}: max abs err {err:.3g} > {tol:g} * scale {scale:.3g}"


def _check(impl_name, steps, reverse, with_reset, with_h0, dtype):
    a, b, h0, reset, w_h, w_last = _inputs(steps, dtype, True, with_reset)
    h, h_last, grads = _value_and_grads_fn(impl_name, reverse, with_h0)(a, b, h0, reset, w_h, w_last)
    # Reference on the same (possibly bf16-rounded) values, in fp32.
    f32 = lambda x: x.astype(jnp.float32)
    h_ref, h_last_ref, grads_ref = _value_and_grads_fn("reference", reverse, with_h0)(
        f32(a), f32(b), f32(h0), reset, w_h, w_last
    )
    assert h.dtype == b.dtype and h.shape == b.shape
    assert h_last.dtype == jnp.float32 and h_last.shape == (BATCH, a.shape[2])
    assert grads[0].dtype == a.dtype and grads[1].dtype == b.dtype
    tol = FP32_TOL if dtype == jnp.float32 else BF16_TOL
    _assert_close("h", h, h_ref, tol)
    _assert_close("h_last", h_last, h_last_ref, tol)
    names = ("da", "db", "dh0") if with_h0 else ("da", "db")
    for name, g, g_ref in zip(names, grads, grads_ref):
        _assert_close(name, g, g_ref, tol)


FLAGS = [(rev, rst, h0) for rev in (False, True) for rst in (False, True) for h0 in (False, True)]
F32, BF16 = "float32", "bfloat16"


def _cases():
    """(implementation, T, reverse, reset, h0, dtype), kept small: compiles dominate."""
    cases = []
    # Every flag combination, at a T that is not a multiple of the chunk size.
    for impl, steps in (("scan", 100), ("chunked16", 100), ("chunked3", 7)):
        cases += [(impl, steps, *flags, F32) for flags in FLAGS]
    # associative_scan compiles slowly (~1 s each): h0 always on, plus one case without.
    cases += [("associative", 100, *flags, F32) for flags in FLAGS if flags[2] or not any(flags)]
    # Other lengths, including T=1.
    for impl in ("scan", "associative", "chunked16"):
        cases += [(impl, steps, rev, True, True, F32) for steps in (1, 64) for rev in (False, True)]
    cases += [("chunked3", 1, rev, True, True, F32) for rev in (False, True)]
    cases += [("chunked3", 100, True, True, True, F32)]
    cases += [("scan_unroll3", 100, rev, True, True, F32) for rev in (False, True)]
    # bf16 inputs, fp32 accumulation.
    for impl in ("scan", "associative", "chunked16", "chunked3"):
        cases += [(impl, 100, rev, True, True, BF16) for rev in (False, True)]
    return cases


def _case_id(case):
    impl, steps, rev, rst, h0, dtype = case
    return f"{impl}-T{steps}-{'rev' if rev else 'fwd'}-{'reset' if rst else 'noreset'}-{'h0' if h0 else 'noh0'}-{dtype}"


@pytest.mark.parametrize("case", _cases(), ids=_case_id)
def test_matches_reference(case):
    impl, steps, reverse, with_reset, with_h0, dtype = case
    _check(impl, steps, reverse, with_reset, with_h0, jnp.dtype(dtype))


@functools.lru_cache(maxsize=None)
def _api_fn(name, reverse):
    return jax.jit(
        lambda a, b, h0, reset: kernels.linear_scan(
            a, b, h0=h0, reset=reset, reverse=reverse, implementation=name
        )
    )


def test_reset_at_first_step_ignores_h0():
    a, b, h0, _, _, _ = _inputs(7, jnp.float32, True, False)
    reset = jnp.zeros((BATCH, 7), bool).at[:, 0].set(True)
    for name in ("reference", "scan", "associative", "chunked"):
        h, _ = _api_fn(name, False)(a, b, h0, reset)
        h_no_h0, _ = _api_fn(name, False)(a, b, None, reset)
        np.testing.assert_allclose(h[:, 0], b[:, 0], rtol=1e-6)
        np.testing.assert_allclose(h, h_no_h0, rtol=1e-6)


@pytest.mark.parametrize("name", ["scan", "associative", "chunked"])
def test_reverse_equals_flip_scan_flip(name):
    a, b, h0, reset, _, _ = _inputs(100, jnp.float32, True, True)
    h_rev, last_rev = _api_fn(name, True)(a, b, h0, reset)
    # Flipping time turns "reset at t" (drop h_{t+1}) into a forward reset at T-1-t.
    h_fwd, last_fwd = _api_fn(name, False)(a[:, ::-1], b[:, ::-1], h0, reset[:, ::-1])
    _assert_close("h", h_rev, h_fwd[:, ::-1], FP32_TOL)
    _assert_close("h_last", last_rev, last_fwd, FP32_TOL)
    _assert_close("h_last is h[:, 0]", last_rev, h_rev[:, 0], FP32_TOL)


def test_api_default_and_dtypes():
    a, b, h0, reset, _, _ = _inputs(100, jnp.bfloat16, True, True)
    h, h_last = jax.jit(lambda a, b, h0, reset: kernels.linear_scan(a, b, h0=h0, reset=reset))(
        a, b, h0, reset
    )
    assert h.dtype == jnp.bfloat16 and h_last.dtype == jnp.float32
    assert api.default_implementation("cpu") == "chunked"
    assert api.default_implementation("gpu") == "associative"
    h_ref, last_ref = _api_fn("reference", False)(a, b, h0, reset)
    _assert_close("h", h, h_ref, BF16_TOL)
    _assert_close("h_last", h_last, last_ref, BF16_TOL)
    _assert_close("h_last is h[:, -1]", h_last, h[:, -1], BF16_TOL)


def test_api_matches_reference_every_name():
    a, b, h0, reset, _, _ = _inputs(100, jnp.float32, True, True)
    h_ref, last_ref = _api_fn("reference", True)(a, b, h0, reset)
    for name in ("scan", "associative", "chunked"):
        h, h_last = _api_fn(name, True)(a, b, h0, reset)
        _assert_close(name, h, h_ref, FP32_TOL)
        _assert_close(name, h_last, last_ref, FP32_TOL)


def test_api_fallback_list_warns():
    a, b, _, _, _, _ = _inputs(7, jnp.float32, False, False)
    if jax.default_backend() == "tpu":
        pytest.skip("pallas is available on TPU")
    with pytest.warns(RuntimeWarning, match="pallas"):
        h, _ = kernels.linear_scan(a, b, implementation=["pallas", "scan"])
    _assert_close("h", h, reference.linear_scan_reference(a, b)[0], FP32_TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kernels.linear_scan(a, b, implementation=("scan", "pallas"))
    with pytest.raises(api.ImplementationUnavailableError, match="pallas"):
        kernels.linear_scan(a, b, implementation="pallas")
    with pytest.warns(RuntimeWarning), pytest.raises(api.ImplementationUnavailableError):
        kernels.linear_scan(a, b, implementation=["pallas"])


def test_unknown_implementation_raises():
    a, b, _, _, _, _ = _inputs(7, jnp.float32, False, False)
    for bad in ("fast", ["scan", "fast"], ("nope",), [], 3):
        with pytest.raises(ValueError) as info:
            kernels.linear_scan(a, b, implementation=bad)
        for valid in ("scan", "associative", "chunked"):
            assert valid in str(info.value)


def test_invalid_shapes_raise():
    a = jnp.ones((2, 5, 3))
    with pytest.raises(ValueError, match=r"a has shape \(2,5,3\) but b has \(2,5,4\)"):
        kernels.linear_scan(a, jnp.ones((2, 5, 4)))
    with pytest.raises(ValueError, match=r"a must be .*\(2,5\)"):
        kernels.linear_scan(jnp.ones((2, 5)), jnp.ones((2, 5)))
    with pytest.raises(ValueError, match=r"h0 has shape \(2,4\).*\(2,3\)"):
        kernels.linear_scan(a, a, h0=jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"reset has shape \(2,4\).*\(2,5\)"):
        kernels.linear_scan(a, a, reset=jnp.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="empty"):
        kernels.linear_scan(jnp.ones((2, 0, 3)), jnp.ones((2, 0, 3)))
    with pytest.raises(TypeError, match="reset must be boolean"):
        kernels.linear_scan(a, a, reset=jnp.zeros((2, 5), jnp.int32))


def test_plan_chunks():
    assert xla.plan_chunks(4096, 64) == (64, 4096)
    assert xla.plan_chunks(100, 16) == (20, 100)
    assert xla.plan_chunks(7, 3) == (3, 9)  # padded
    assert xla.plan_chunks(7, 16) == (7, 7)  # one chunk
    assert xla.plan_chunks(101, 16) == (16, 112)  # prime: padded
