"""Linear attention with the Based feature map and the PLA prefix term (jrt.md §1, §7.1–7.3, §7.5).

The oracle here is re-derived from jrt.md in float64 numpy, one query at a time:
y_i = Σ_j w_ij v_j / (Σ_j w_ij + eps) with w_ij = 1 + s + s²/2 (s = q_i·k_j/√f) over the
decoder keys j ≤ i and the encoder keys (any j) of i's document, plus the initial state.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from birdie_jax.kernels.linear_attention import (linear_attention, linear_attention_step, num_features,
                                                 taylor_features)

B, T, H, F_IN, P = 2, 11, 2, 4, 3
EPS = 1e-12
# Row 0 packs a 5-token sample (prefix 3), a 4-token sample (prefix 1) and 2 pads; row 1 is
# left-padded by 2, then one 9-token sample whose prefix (4) ends inside a chunk of 3.
SEGMENTS = np.array([[1, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0], [0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3]], np.int32)
PREFIX = np.array([[1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0]], bool)


def _features(x):
    """φ(x) in float64, written out from jrt.md §1.2."""
    f = x.shape[-1]
    outer = np.einsum("...i,...j->...ij", x, x).reshape(*x.shape[:-1], f * f)
    return np.concatenate([np.ones(x.shape[:-1] + (1,)), x / f**0.25, outer / np.sqrt(2 * f)], axis=-1)


def _oracle(q, k, v, ke, ve, prefix, seg, S0=None, z0=None):
    q, k, v, ke, ve = (np.asarray(a, np.float64) for a in (q, k, v, ke, ve))
    b, t, h, f = q.shape
    y = np.zeros(v.shape)
    for r in range(b):
        doc = np.concatenate([[0], np.cumsum(seg[r, 1:] != seg[r, :-1])])
        for i in range(t):
            if seg[r, i] == 0:
                continue
            for hh in range(h):
                num, den = np.zeros(v.shape[-1]), 0.0
                for j in range(t):
                    if doc[j] != doc[i] or seg[r, j] == 0:
                        continue
                    for kk, vv, use in ((k, v, j <= i), (ke, ve, prefix[r, j])):
                        if use:
                            s = q[r, i, hh] @ kk[r, j, hh] / np.sqrt(f)
                            w = 1 + s + s * s / 2
                            num, den = num + w * vv[r, j, hh], den + w
                if S0 is not None and doc[i] == 0:
                    phi = _features(q[r, i, hh])
                    num, den = num + phi @ np.asarray(S0[r, hh], np.float64), den + phi @ np.asarray(z0[r, hh])
                y[r, i, hh] = num / (den + EPS)
    return y


def _inputs(seed, t=T, f=F_IN):
    keys = jax.random.split(jax.random.key(seed), 5)
    q, k, ke = (0.7 * jax.random.normal(key, (B, t, H, f)) for key in keys[:3])
    v, ve = (jax.random.normal(key, (B, t, H, P)) for key in keys[3:])
    return q, k, v, ke, ve


def _state(seed, f=F_IN):
    """A plausible carried state: sums of a few feature ⊗ value products (z ≥ 0 at the constant feature)."""
    q, k, v, _, _ = _inputs(seed, t=3, f=f)
    phi = taylor_features(k)
    return jnp.einsum("bthF,bthp->bhFp", phi, v), phi.sum(1)


# Chunk sizes: 1 (every token its own chunk), 3 (11 = 3·3 + 2; prefixes end inside and on chunk
# boundaries), 64 (one chunk longer than the row).
FORMS = [("quadratic", 64), ("chunked", 1), ("chunked", 3), ("chunked", 64), ("recurrent", 64), ("reference", 64)]
attend = jax.jit(linear_attention, static_argnames=("implementation", "chunk_size"))
step = jax.jit(linear_attention_step)


@pytest.fixture(scope="module")
def case():
    q, k, v, ke, ve = _inputs(0)
    S0, z0 = _state(1)
    return dict(q=q, k=k, v=v, k_enc=ke, v_enc=ve, encoder_mask=jnp.asarray(PREFIX),
                segment_ids=jnp.asarray(SEGMENTS), initial_state=(S0, z0))


def test_taylor_identity_273_features():
    assert num_features(16) == 273
    q, k = np.random.RandomState(0).randn(2, 5, 16)
    s = np.sum(q * k, -1) / 4
    with jax.enable_x64(True):
        phi_q, phi_k = taylor_features(jnp.asarray(q)), taylor_features(jnp.asarray(k))
        assert phi_q.shape == (5, 273) and phi_q.dtype == jnp.float64
        np.testing.assert_allclose(np.sum(phi_q * phi_k, -1), 1 + s + s * s / 2, rtol=1e-12)
    dot = np.sum(taylor_features(jnp.asarray(q, jnp.float32)) * taylor_features(jnp.asarray(k, jnp.float32)), -1)
    np.testing.assert_allclose(dot, 1 + s + s * s / 2, rtol=1e-6)
    assert np.all(dot >= 0.5 - 1e-6)  # ½(s+1)² + ½: the denominator is positive


@pytest.mark.parametrize("form, chunk", FORMS)
def test_every_form_equals_the_oracle(case, form, chunk):
    want = _oracle(case["q"], case["k"], case["v"], case["k_enc"], case["v_enc"], PREFIX, SEGMENTS,
                   *case["initial_state"])
    y, _ = attend(**case, implementation=form, chunk_size=chunk)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("form, chunk", [("quadratic", 64), ("chunked", 3), ("recurrent", 64)])
def test_forms_agree_with_reference_on_state_and_gradients(case, form, chunk):
    def run(impl, c):
        def loss(q, k, v, ke, ve, S0, z0):
            y, (S, z) = linear_attention(q, k, v, k_enc=ke, v_enc=ve, encoder_mask=case["encoder_mask"],
                                         segment_ids=case["segment_ids"], initial_state=(S0, z0),
                                         implementation=impl, chunk_size=c)
            weights = jnp.arange(y.size, dtype=jnp.float32).reshape(y.shape) / y.size
            return jnp.sum(weights * y) + 1e-3 * jnp.sum(jnp.sin(S)) + 1e-3 * jnp.sum(jnp.cos(z)), (S, z)

        args = (case["q"], case["k"], case["v"], case["k_enc"], case["v_enc"], *case["initial_state"])
        return jax.jit(jax.grad(loss, argnums=tuple(range(7)), has_aux=True))(*args)

    grads, state = run(form, chunk)
    want_grads, want_state = run("reference", 64)
    for got, want in zip(state, want_state):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    for got, want in zip(grads, want_grads):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_without_prefix_is_based_causal_linear_attention():
    q, k, v, ke, ve = _inputs(2)
    seg = jnp.asarray(SEGMENTS)
    y, _ = attend(q, k, v, segment_ids=seg)
    none = np.zeros_like(PREFIX)
    np.testing.assert_allclose(y, _oracle(q, k, v, ke, ve, none, SEGMENTS), rtol=1e-4, atol=1e-5)
    y_enc, _ = attend(q, k, v, k_enc=ke, v_enc=ve, encoder_mask=jnp.asarray(none), segment_ids=seg)
    np.testing.assert_allclose(y_enc, y, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("m, l", [(0, 6), (3, 3), (4, 7), (4, 4)])
def test_prefill_then_decode_equals_parallel(m, l):
    """jrt.md §7.2: prefill L tokens (prefix M ≤ L) with the parallel form, decode the rest one by one."""
    q, k, v, ke, ve = _inputs(3)
    prefix = jnp.arange(T)[None].repeat(B, 0) < m
    full, _ = attend(q, k, v, k_enc=ke, v_enc=ve, encoder_mask=prefix, chunk_size=3)
    out, state = attend(q[:, :l], k[:, :l], v[:, :l], k_enc=ke[:, :l], v_enc=ve[:, :l],
                        encoder_mask=prefix[:, :l], chunk_size=3)
    decoded = [out]
    for i in range(l, T):
        y, state = step(q[:, i], k[:, i], v[:, i], state)
        decoded.append(y[:, None])
    np.testing.assert_allclose(jnp.concatenate(decoded, 1), full, atol=1e-5, rtol=1e-5)


def test_two_chunks_with_carried_state_equal_one_pass(case):
    """A state handed from one call to the next (the mixer contract) continues the row's last document."""
    args = {k: v for k, v in case.items() if k != "initial_state"}
    full, final = attend(**args, chunk_size=4)
    cut = 7  # row 0: inside the second sample (after its prefix); row 1: after the prefix

    def part(sl, state):
        return attend(**{k: v[:, sl] for k, v in args.items()}, initial_state=state, chunk_size=4)

    first, state = part(slice(0, cut), None)
    second, state = part(slice(cut, T), state)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), full, atol=1e-5, rtol=1e-5)
    for got, want in zip(state, final):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)


def test_packed_samples_are_isolated(case):
    """jrt.md §7.5: other samples and pads change nothing; cross-sample gradients are exactly zero."""
    args = {k: v for k, v in case.items() if k != "initial_state"}
    packed, _ = attend(**args)
    for start, stop, row in ((0, 5, 0), (5, 9, 0), (2, 11, 1)):
        alone, _ = attend(**{k: v[row:row + 1, start:stop] for k, v in args.items()})
        np.testing.assert_allclose(packed[row, start:stop], alone[0], atol=1e-6, rtol=1e-5)
    np.testing.assert_array_equal(packed[0, 9:], 0.0)  # pads output 0
    np.testing.assert_array_equal(packed[1, :2], 0.0)

    def second_sample_output(*xs):
        y, _ = linear_attention(*xs[:3], k_enc=xs[3], v_enc=xs[4], encoder_mask=args["encoder_mask"],
                                segment_ids=args["segment_ids"])
        return jnp.sum(y[0, 5:9])

    grads = jax.jit(jax.grad(second_sample_output, argnums=tuple(range(5))))(*(args[n] for n in ("q", "k", "v", "k_enc", "v_enc")))
    for g in grads:
        assert np.all(np.asarray(g[0, :5]) == 0) and np.all(np.asarray(g[0, 9:]) == 0) and np.all(np.asarray(g[1]) == 0)
        assert np.any(np.asarray(g[0, 5:9]) != 0)


def test_bfloat16_inputs_accumulate_in_float32(case):
    args = {k: v for k, v in case.items() if k != "initial_state"}
    low = {k: (v.astype(jnp.bfloat16) if v.dtype == jnp.float32 else v) for k, v in args.items()}
    y, (S, z) = attend(**low)
    want, _ = attend(**args)
    assert y.dtype == jnp.bfloat16 and S.dtype == z.dtype == jnp.float32
    np.testing.assert_allclose(y.astype(jnp.float32), want, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("kwargs, message", [
    (dict(implementation="flash"), "unknown implementation 'flash'"),
    (dict(chunk_size=0), "chunk_size must be a positive int"),
    (dict(k_enc=jnp.zeros((B, T, H, F_IN))), "give k_enc, v_enc and encoder_mask together"),
    (dict(segment_ids=jnp.ones((B, T + 1), jnp.int32)), "segment_ids must be int"),
    (dict(initial_state=(jnp.zeros((B, H, 5, P)), jnp.zeros((B, H, 5)))), r"initial_state \(S, z\) has shapes"),
])
def test_bad_arguments_name_the_problem(kwargs, message):
    q, k, v, _, _ = _inputs(4)
    with pytest.raises(ValueError, match=message):
        linear_attention(q, k, v, **kwargs)
