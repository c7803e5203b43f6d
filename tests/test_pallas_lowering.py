"""The Pallas kernels lower for their hardware without it: TPU (Mosaic) and CUDA (Triton).

``jax.jit(f).trace(...).lower(lowering_platforms=(platform,))`` runs the whole Pallas
lowering (block-shape rules, the kernel body into Mosaic / Triton IR) on this CPU
machine; only the final device compile needs the hardware. Each check goes through the
public API as it runs on that backend (``jax.default_backend`` patched), at a realistic
shape (B 8, T 4096, D 2048, bf16), forward and gradient.

A Pallas import failure is a test failure here (the API raises with the import error).
"""

import jax
import jax.numpy as jnp
import pytest

from birdie_jax.kernels import linear_scan

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
