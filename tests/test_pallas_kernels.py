"""Every Pallas kernel, TPU and GPU flavour, in interpret mode on CPU against a sequential oracle.

Values and gradients (through a random linear functional of the outputs) are compared at
shapes that exercise channel tiling and padding (D = 200 and 1000 with 128-wide blocks),
time-chunk remainders (T = 20 with 8-step blocks), resets on chunk edges, h0 and reverse.
Tolerances are those of the XLA forms (1e-5 fp32, 1e-2 bf16, relative to the largest
reference magnitude); never loosen them to pass. The oracles are written here, importing
nothing from the kernels they check.

A Pallas import failure fails every test here with its message (never a skip).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

try:
    from birdie_jax.kernels.linear_attention import pallas_gpu as attention_gpu
    from birdie_jax.kernels.linear_attention import pallas_tpu as attention_tpu
    from birdie_jax.kernels.linear_scan import pallas_gpu as scan_gpu
    from birdie_jax.kernels.linear_scan import pallas_tpu as scan_tpu
    from birdie_jax.kernels.ssd import pallas_gpu as ssd_gpu
    from birdie_jax.kernels.ssd import pallas_tpu as ssd_tpu

    PALLAS_IMPORT_ERROR = None
except ImportError as error:  # reported by every test, not skipped
    PALLAS_IMPORT_ERROR = error

FP32_TOL, BF16_TOL = 1e-5, 1e-2
BLOCK_T = 8  # time block / chunk of both flavours in these tests
RESETS_AT_CHUNK_EDGES = (0, 7, 8, 16, 19)  # T = 20: first step, both sides of edges 8 and 16, last step


def _require_pallas():
    if PALLAS_IMPORT_ERROR is not None:
        pytest.fail(f"the Pallas kernels failed to import: {PALLAS_IMPORT_ERROR!r}")


def _assert_close(name, got, want, tol):
    got = np.asarray(jnp.asarray(got, jnp.float32))
    want = np.asarray(jnp.asarray(want, jnp.float32))
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert np.all(np.isfinite(got)), name
    scale = max(float(np.max(np.abs(want))), 1e-6)
    err = float(np.max(np.abs(got - want)))
    assert err <= tol * scale, f"{name}: max abs err {err:.3g} > {tol:g} * scale {scale:.3g}"


# --------------------------------------------------------------------------- linear_scan


def _scan_oracle(a, b, h0, reset, reverse):
    """h_t = a_t h_{t-1} + b_t one step at a time in fp32 (h_{t+1} for reverse); a reset drops the carry."""
    a, b = a.astype(jnp.float32), b.astype(jnp.float32)
    h = jnp.zeros_like(a[:, 0]) if h0 is None else h0.astype(jnp.float32)
    keep = jnp.ones(a.shape[:2]) if reset is None else 1.0 - reset.astype(jnp.float32)

    def step(h, inputs):
        a_t, b_t, keep_t = inputs
        h = a_t * (h * keep_t[:, None]) + b_t
        return h, h

    h_last, h_tbd = lax.scan(step, h, (jnp.swapaxes(a, 0, 1), jnp.swapaxes(b, 0, 1), keep.T), reverse=reverse)
    return jnp.swapaxes(h_tbd, 0, 1), h_last


def _scan_kernel(flavour):
    _require_pallas()
    module = scan_tpu if flavour == "tpu" else scan_gpu
    return functools.partial(module.linear_scan_pallas, block_t=BLOCK_T, block_d=128, interpret=True)


@functools.lru_cache(maxsize=None)
def _scan_value_and_grads(flavour, reverse, with_h0, with_reset):
    """One jitted (values, grads w.r.t. a, b, h0) per setting; the oracle when flavour is None."""
    fn = _scan_oracle if flavour is None else _scan_kernel(flavour)

    def run(a, b, h0, reset, w_h, w_last):
        def loss(a, b, h0):
            h, h_last = fn(a, b, h0 if with_h0 else None, reset if with_reset else None, reverse)
            return jnp.sum(h.astype(jnp.float32) * w_h) + jnp.sum(h_last * w_last), (h, h_last)

        (_, out), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(a, b, h0)
        return out, grads

    return jax.jit(run)


def _scan_inputs(batch, steps, channels, dtype, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), 5)
    shape = (batch, steps, channels)
    a = jax.random.uniform(keys[0], shape, jnp.float32, 0.7, 1.0).astype(dtype)
    b = jax.random.normal(keys[1], shape, jnp.float32).astype(dtype)
    h0 = jax.random.normal(keys[2], (batch, channels), jnp.float32).astype(dtype)
    reset = np.zeros((batch, steps), bool)
    reset[0, [t for t in RESETS_AT_CHUNK_EDGES if t < steps]] = True
    reset[-1, steps // 2] = True
    w_h = jax.random.normal(keys[3], shape, jnp.float32)
    w_last = jax.random.normal(keys[4], (batch, channels), jnp.float32)
    return a, b, h0, jnp.asarray(reset), w_h, w_last


# (batch, T, D, reverse, h0, reset, dtype): D = 200 is two 128-blocks (the second padded), D = 1000
# eight (padded to 1024); T = 20 is two full 8-step blocks and a remainder of 4.
# The last case also covers bf16 inputs and the no-h0 / no-reset paths.
SCAN_CASES = [
    (2, 20, 200, False, True, True, "float32"),
    (2, 20, 200, True, True, True, "float32"),
    (1, 3, 1000, False, False, False, "bfloat16"),
]


@pytest.mark.parametrize("flavour", ["tpu", "gpu"])
@pytest.mark.parametrize("case", SCAN_CASES, ids=lambda c: "B{}-T{}-D{}-{}-{}-{}-{}".format(
    c[0], c[1], c[2], "rev" if c[3] else "fwd", "h0" if c[4] else "noh0", "reset" if c[5] else "noreset", c[6]))
def test_linear_scan_kernel_matches_oracle(flavour, case):
    batch, steps, channels, reverse, with_h0, with_reset, dtype = case
    a, b, h0, reset, w_h, w_last = _scan_inputs(batch, steps, channels, jnp.dtype(dtype))
    (h, h_last), grads = _scan_value_and_grads(flavour, reverse, with_h0, with_reset)(a, b, h0, reset, w_h, w_last)
    f32 = lambda v: v.astype(jnp.float32)  # noqa: E731 - the oracle sees the same rounded values
    (h_ref, last_ref), grads_ref = _scan_value_and_grads(None, reverse, with_h0, with_reset)(
        f32(a), f32(b), f32(h0), reset, w_h, w_last)
    assert h.dtype == b.dtype and h_last.dtype == jnp.float32
    tol = FP32_TOL if dtype == "float32" else BF16_TOL
    _assert_close("h", h, h_ref, tol)
    _assert_close("h_last", h_last, last_ref, tol)
    for name, g, g_ref in list(zip(("da", "db", "dh0"), grads, grads_ref))[: 3 if with_h0 else 2]:
        _assert_close(name, g, g_ref, tol)


# --------------------------------------------------------------------------- ssd


def _ssd_oracle(x, dt, A, B, C, D, h0, reset):
    """Token by token: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_tᵀ (carry dropped at a reset), y_t = h_t C_t + D x_t."""
    per_group = x.shape[2] // B.shape[2]

    def step(h, inputs):
        x_t, dt_t, b_t, c_t, reset_t = inputs  # [b h p], [b h], [b g n], [b g n], [b]
        b_h, c_h = jnp.repeat(b_t, per_group, axis=1), jnp.repeat(c_t, per_group, axis=1)
        h = jnp.where(reset_t[:, None, None, None], 0.0, h)
        h = jnp.exp(dt_t * A)[..., None, None] * h + (dt_t[..., None] * x_t)[..., None] * b_h[:, :, None, :]
        return h, jnp.einsum("bhpn,bhn->bhp", h, c_h) + D[:, None] * x_t

    final, y = lax.scan(step, h0, [jnp.swapaxes(v, 0, 1) for v in (x, dt, B, C, reset)])
    return jnp.swapaxes(y, 0, 1), final


def _ssd_kernel(flavour, chunk):
    _require_pallas()
    module = ssd_tpu if flavour == "tpu" else ssd_gpu
    return functools.partial(module.ssd_pallas, chunk_size=chunk, interpret=True)


@functools.lru_cache(maxsize=None)
def _ssd_value_and_grads(flavour, chunk):
    """Jitted ((y, final), grads w.r.t. x, dt, A, B, C, D, h0); the oracle when flavour is None."""
    fn = _ssd_oracle if flavour is None else _ssd_kernel(flavour, chunk)

    def run(diff, reset, w_y, w_final):
        def loss(diff):
            y, final = fn(*diff, reset)
            return jnp.sum(y * w_y) + jnp.sum(final * w_final), (y, final)

        (_, out), grads = jax.value_and_grad(loss, has_aux=True)(diff)
        return out, grads

    return jax.jit(run)


# (flavour, chunk Q, length L, heads, head width p, groups, state n). TPU: Q a multiple of 8, any p, n;
# GPU: Q, p, n powers of two >= 16. Both: L not a multiple of Q, 4 heads reading 2 groups.
SSD_CASES = [("tpu", 8, 21, 4, 3, 2, 5), ("gpu", 16, 40, 4, 16, 2, 16)]


@pytest.mark.parametrize("case", SSD_CASES, ids=lambda c: f"{c[0]}-Q{c[1]}-L{c[2]}")
def test_ssd_kernel_matches_oracle(case):
    flavour, chunk, length, heads, width, groups, size = case
    rng = np.random.RandomState(0)
    batch = 2
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    diff = (f32(rng.randn(batch, length, heads, width)), f32(np.logaddexp(0.0, rng.randn(batch, length, heads) - 1.0)),
            f32(-np.exp(rng.rand(heads))), f32(rng.randn(batch, length, groups, size)),
            f32(rng.randn(batch, length, groups, size)), f32(rng.randn(heads)),
            f32(rng.randn(batch, heads, width, size)))
    reset = np.zeros((batch, length), bool)
    reset[0, [0, chunk - 1, chunk, 2 * chunk, length - 1]] = True  # first, both sides of chunk edges, last
    reset[1, 5] = True
    w_y, w_final = f32(rng.randn(batch, length, heads, width)), f32(rng.randn(batch, heads, width, size))
    (y, final), grads = _ssd_value_and_grads(flavour, chunk)(diff, jnp.asarray(reset), w_y, w_final)
    (y_ref, final_ref), grads_ref = _ssd_value_and_grads(None, chunk)(diff, jnp.asarray(reset), w_y, w_final)
    assert y.dtype == jnp.float32 and final.dtype == jnp.float32
    _assert_close("y", y, y_ref, FP32_TOL)
    _assert_close("final state", final, final_ref, FP32_TOL)
    for name, g, g_ref in zip(("dx", "ddt", "dA", "dB", "dC", "dD", "dh0"), grads, grads_ref):
        _assert_close(name, g, g_ref, FP32_TOL)


# --------------------------------------------------------------------------- linear attention


def _taylor(x):
    """φ(x) = [1, x/f^¼, vec(x⊗x)/(√2·√f)], so φ(q)·φ(k) = 1 + s + s²/2 with s = q·k/√f."""
    f = x.shape[-1]
    outer = (x[..., :, None] * x[..., None, :]).reshape(*x.shape[:-1], f * f)
    return jnp.concatenate([jnp.ones(x.shape[:-1] + (1,)), x / f ** 0.25, outer / (2 * f) ** 0.5], axis=-1)


def _attention_oracle(q, k, v, k_enc, v_enc, initial_state, encoder_mask, segment_ids, eps=1e-12):
    """Every sum written out in feature space over the whole row (O(t²)), per packed run.

    y_i = φ(q_i)·[Σ_{j≤i} φ(k_j)v_jᵀ + Σ_{all j} φ(ke_j)ve_jᵀ (+S0 in the first run)] / (same with 1 for v, z0) + eps,
    sums over valid keys of i's run (encoder keys only where encoder_mask); the final state is the last run's sums.
    """
    seg = segment_ids
    run = jnp.cumsum(jnp.concatenate([jnp.zeros((seg.shape[0], 1), jnp.int32), seg[:, 1:] != seg[:, :-1]], 1), 1)
    valid, enc = seg != 0, encoder_mask & (seg != 0)
    same = run[:, :, None] == run[:, None, :]
    t = seg.shape[1]
    dec_pairs = jnp.asarray(same & np.tril(np.ones((t, t), bool)) & valid[:, None, :], jnp.float32)
    enc_pairs = jnp.asarray(same & enc[:, None, :], jnp.float32)
    phi_q = _taylor(q)
    weights = (jnp.einsum("bihF,bjhF,bij->bhij", phi_q, _taylor(k), dec_pairs),
               jnp.einsum("bihF,bjhF,bij->bhij", phi_q, _taylor(k_enc), enc_pairs))
    num = jnp.einsum("bhij,bjhp->bihp", weights[0], v) + jnp.einsum("bhij,bjhp->bihp", weights[1], v_enc)
    den = jnp.swapaxes(weights[0].sum(-1) + weights[1].sum(-1), 1, 2)
    S0, z0 = initial_state
    first = jnp.asarray(run == 0, jnp.float32)
    num = num + jnp.einsum("bihF,bhFp->bihp", phi_q, S0) * first[..., None, None]
    den = den + jnp.einsum("bihF,bhF->bih", phi_q, z0) * first[..., None]
    y = num / (den + eps)[..., None] * jnp.asarray(valid, jnp.float32)[..., None, None]
    last = run == run[:, -1:]
    dec_last, enc_last = (jnp.asarray(m, jnp.float32)[..., None, None] for m in (last & valid, last & enc))
    keep = jnp.asarray(run[:, -1] == 0, jnp.float32)
    S = (jnp.einsum("bjhF,bjhp->bhFp", _taylor(k) * dec_last, v) + jnp.einsum("bjhF,bjhp->bhFp", _taylor(k_enc) * enc_last,
         v_enc) + keep[:, None, None, None] * S0)
    z = (_taylor(k) * dec_last).sum(1) + (_taylor(k_enc) * enc_last).sum(1) + keep[:, None, None] * z0
    return y, (S, z)


def _attention_kernel(flavour, chunk):
    _require_pallas()
    module = attention_tpu if flavour == "tpu" else attention_gpu
    kernel = functools.partial(module.linear_attention_pallas, chunk_size=chunk, interpret=True)
    return lambda q, k, v, k_enc, v_enc, state, encoder_mask, segment_ids: kernel(
        q, k, v, k_enc, v_enc, encoder_mask, segment_ids, state)


@functools.lru_cache(maxsize=None)
def _attention_value_and_grads(flavour, chunk):
    """Jitted ((y, (S, z)), grads w.r.t. q, k, v, k_enc, v_enc, (S0, z0)); the oracle when flavour is None."""
    fn = _attention_oracle if flavour is None else _attention_kernel(flavour, chunk)

    def run(diff, encoder_mask, segment_ids, weights):
        def loss(diff):
            y, (S, z) = fn(*diff, encoder_mask, segment_ids)
            return jnp.sum(y * weights[0]) + jnp.sum(S * weights[1]) + jnp.sum(z * weights[2]), (y, S, z)

        (_, out), grads = jax.value_and_grad(loss, has_aux=True)(diff)
        return out, grads

    return jax.jit(run)


# (flavour, chunk C, length t, heads, key width f, value width p). TPU: C a multiple of 8, any f, p;
# GPU: C, f, p powers of two >= 16. Row 0 packs runs (ids 1, 2, 3) starting on and off chunk edges and
# ends in padding (id 0); both rows have prefix (encoder) positions; an initial state enters run 0.
ATTENTION_CASES = [("tpu", 8, 19, 2, 4, 3), ("gpu", 16, 35, 1, 16, 16)]


@pytest.mark.parametrize("case", ATTENTION_CASES, ids=lambda c: f"{c[0]}-C{c[1]}-t{c[2]}")
def test_linear_attention_kernel_matches_oracle(case):
    flavour, chunk, length, heads, f, p = case
    rng = np.random.RandomState(0)
    batch, features = 2, 1 + f + f * f
    normal = lambda *shape: jnp.asarray(0.5 * rng.randn(*shape), jnp.float32)  # noqa: E731
    diff = (normal(batch, length, heads, f), normal(batch, length, heads, f), normal(batch, length, heads, p),
            normal(batch, length, heads, f), normal(batch, length, heads, p),
            (jnp.asarray(rng.rand(batch, heads, features, p), jnp.float32),
             jnp.asarray(1.0 + rng.rand(batch, heads, features), jnp.float32)))
    segment_ids = np.ones((batch, length), np.int32)
    segment_ids[0, chunk:] = 2  # a run starting on a chunk edge
    segment_ids[0, chunk + 5:] = 3  # and one inside a chunk
    segment_ids[0, -2:] = 0  # padding
    segment_ids[1, 3:] = 2
    encoder_mask = np.zeros((batch, length), bool)
    encoder_mask[0, :3] = encoder_mask[0, chunk:chunk + 3] = encoder_mask[1, :7] = True
    weights = (normal(batch, length, heads, p), normal(batch, heads, features, p), normal(batch, heads, features))
    args = (jnp.asarray(encoder_mask), jnp.asarray(segment_ids), weights)
    (y, S, z), grads = _attention_value_and_grads(flavour, chunk)(diff, *args)
    (y_ref, S_ref, z_ref), grads_ref = _attention_value_and_grads(None, chunk)(diff, *args)
    for name, got, want in (("y", y, y_ref), ("S", S, S_ref), ("z", z, z_ref)):
        _assert_close(name, got, want, FP32_TOL)
    for (path, g), g_ref in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(grads_ref)):
        _assert_close(f"grad {jax.tree_util.keystr(path)}", g, g_ref, FP32_TOL)
