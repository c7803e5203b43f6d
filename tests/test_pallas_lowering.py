"""The Pallas kernels lower for their hardware without it: TPU (Mosaic) and CUDA (Triton).

``jax.jit(f).trace(...).lower(lowering_platforms=(platform,))`` runs the whole Pallas
lowering (block-shape rules, the kernel body into Mosaic / Triton IR) on this CPU
machine; only the final device compile needs the hardware. Each check goes through the
public API as it runs on that backend (``jax.default_backend`` patched), at a realistic
shape (B 8, T 4096, D 2048, bf16), forward and gradient.

A Pallas import failure is a test failure here (the API raises with the import error).
The SSD and linear-attention kernels have an XLA backward, so their gradients lower no extra kernel call.
"""

import jax
import jax.numpy as jnp
import pytest
from conftest import tiny_model_config
from flax import nnx

from birdie_jax.kernels import linear_scan
from birdie_jax.kernels.linear_attention import linear_attention
from birdie_jax.kernels.ssd import ssd
from birdie_jax.models import LanguageModel

# jax.default_backend() name → (lowering platform, the custom call the kernel lowers to)
PLATFORMS = {"tpu": ("tpu", "tpu_custom_call"), "gpu": ("cuda", "xla.gpu.triton")}


def _lowered_text(fn, args, backend, monkeypatch):
    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    platform, _ = PLATFORMS[backend]
    return jax.jit(fn).trace(*args).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("backend", sorted(PLATFORMS))
def test_linear_scan_pallas_lowers(backend, monkeypatch):
    seq = jax.ShapeDtypeStruct((8, 4096, 2048), jnp.bfloat16)
    h0 = jax.ShapeDtypeStruct((8, 2048), jnp.float32)
    reset = jax.ShapeDtypeStruct((8, 4096), jnp.bool_)

    def loss(a, b, h0, reset):
        h, h_last = linear_scan(a, b, h0=h0, reset=reset, implementation="pallas")
        return jnp.sum(h.astype(jnp.float32)) + jnp.sum(h_last)

    text = _lowered_text(jax.value_and_grad(loss, argnums=(0, 1, 2)), (seq, seq, h0, reset), backend, monkeypatch)
    # One kernel forward, one (reversed) in the backward.
    assert text.count(PLATFORMS[backend][1]) == 2, text.count(PLATFORMS[backend][1])


@pytest.mark.parametrize("backend", sorted(PLATFORMS))
def test_linear_scan_pallas_reverse_lowers(backend, monkeypatch):
    seq = jax.ShapeDtypeStruct((2, 1000, 200), jnp.float32)  # T and D not multiples of the blocks
    fn = lambda a, b: linear_scan(a, b, reverse=True, implementation="pallas")  # noqa: E731
    assert PLATFORMS[backend][1] in _lowered_text(fn, (seq, seq), backend, monkeypatch)


@pytest.mark.parametrize("backend", sorted(PLATFORMS))
def test_ssd_pallas_lowers(backend, monkeypatch):
    # Mamba-2 at d_model 2048: 64 heads of 64, state 128, one group; Q = 64; T = 4000 is not a multiple of Q.
    batch, length, heads, width, groups, size = 8, 4000, 64, 64, 1, 128
    S = jax.ShapeDtypeStruct
    args = (S((batch, length, heads, width), jnp.bfloat16), S((batch, length, heads), jnp.float32),
            S((heads,), jnp.float32), S((batch, length, groups, size), jnp.bfloat16),
            S((batch, length, groups, size), jnp.bfloat16), S((heads,), jnp.float32),
            S((batch, heads, width, size), jnp.float32), S((batch, length), jnp.bool_))

    def loss(x, dt, A, B, C, D, h0, reset):
        y, final = ssd(x, dt, A, B, C, D=D, initial_state=h0, reset=reset, chunk_size=64, implementation="pallas")
        return jnp.sum(y.astype(jnp.float32)) + jnp.sum(final)

    text = _lowered_text(jax.value_and_grad(loss, argnums=tuple(range(7))), args, backend, monkeypatch)
    assert text.count(PLATFORMS[backend][1]) == 1  # the forward kernel; the backward is XLA


@pytest.mark.parametrize("backend", sorted(PLATFORMS))
def test_linear_attention_pallas_lowers(backend, monkeypatch):
    # Based / PLA at d_model 2048: 16 heads, feature width 16, value width 128, chunk 64, with the prefix term.
    batch, length, heads, f, p = 8, 4000, 16, 16, 128
    S = jax.ShapeDtypeStruct
    features = 1 + f + f * f
    args = (S((batch, length, heads, f), jnp.bfloat16), S((batch, length, heads, f), jnp.bfloat16),
            S((batch, length, heads, p), jnp.bfloat16), S((batch, length, heads, f), jnp.bfloat16),
            S((batch, length, heads, p), jnp.bfloat16), S((batch, length), jnp.bool_), S((batch, length), jnp.int32),
            (S((batch, heads, features, p), jnp.float32), S((batch, heads, features), jnp.float32)))

    def loss(q, k, v, k_enc, v_enc, encoder_mask, segment_ids, state):
        y, (S_, z) = linear_attention(q, k, v, k_enc=k_enc, v_enc=v_enc, encoder_mask=encoder_mask,
                                      segment_ids=segment_ids, initial_state=state, implementation="pallas")
        return jnp.sum(y.astype(jnp.float32)) + jnp.sum(S_) + jnp.sum(z)

    text = _lowered_text(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4, 7)), args, backend, monkeypatch)
    # Decoder pass, encoder forward and backward passes; the backward is XLA.
    assert text.count(PLATFORMS[backend][1]) == 3


@pytest.mark.parametrize("architecture,opt_in,backend", [  # one backend each: lowering a model is slow
    ("hawk", dict(scan_implementation="pallas"), "tpu"),
    ("mamba2", dict(ssd_implementation="pallas", mamba_head_dim=16, mamba_d_state=16, mamba_chunk=16), "gpu"),
])
def test_model_config_opts_into_pallas(architecture, opt_in, backend, monkeypatch):
    """``model.scan_implementation`` / ``model.ssd_implementation = pallas``: the training gradient lowers the kernels."""
    model = LanguageModel(tiny_model_config(architecture, **opt_in), rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model)
    tokens = jnp.zeros((2, 32), jnp.int32)
    segment_ids = jnp.ones((2, 32), jnp.int32).at[:, 20:].set(2)

    def loss(params):
        return jnp.sum(nnx.merge(graphdef, params)(tokens, segment_ids).astype(jnp.float32))

    text = _lowered_text(jax.grad(loss), (params,), backend, monkeypatch)
    assert PLATFORMS[backend][1] in text
