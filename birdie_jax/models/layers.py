"""Small building blocks shared by every architecture: norm, dense, gated MLP, resets."""

import jax
import jax.numpy as jnp
from flax import nnx

from birdie_jax.config import ModelConfig
from birdie_jax.array_types import Array, Hidden, SegmentIds
from birdie_jax.models.token_matmul import TokenLinear


def dtype_of(name: str) -> jnp.dtype:
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


class RMSNorm(nnx.Module):
    """Root-mean-square norm with a learnable scale; statistics in float32."""

    def __init__(self, width: int, *, eps: float = 1e-6, init_scale: float = 1.0, param_dtype=jnp.float32):
        self.scale = nnx.Param(jnp.full((width,), init_scale, param_dtype))
        self.eps = eps

    def __call__(self, x: Array) -> Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def dense(cfg: ModelConfig, d_in: int, d_out: int, rngs: nnx.Rngs, *, bias: bool = False, scale: float = 1.0) -> TokenLinear:
    """A linear layer in the config's compute/parameter dtypes (an ``nnx.Linear`` run as one 2-D matmul).

    ``init: fan_in``: truncated normal with variance ``scale``/fan-in. ``init: normal``:
    N(0, init_std); the layers that shrink their init for depth (``scale`` ≠ 1: the
    projections back into the residual) get init_std/√(2·n_layers) (GPT-2 / Based).
    """
    if cfg.init == "normal":
        std = cfg.init_std if scale == 1.0 else cfg.init_std / (2 * cfg.n_layers) ** 0.5
        kernel_init = nnx.initializers.normal(std)
    else:
        kernel_init = nnx.initializers.variance_scaling(scale, "fan_in", "truncated_normal")
    return TokenLinear(
        d_in,
        d_out,
        use_bias=bias,
        dtype=dtype_of(cfg.dtype),
        param_dtype=dtype_of(cfg.param_dtype),
        kernel_init=kernel_init,
        rngs=rngs,
    )


class GatedMLP(nnx.Module):
    """W_down(GeLU(W_gate x) * W_up x), hidden width ``cfg.mlp_hidden`` (biases with ``cfg.linear_bias``)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        bias = cfg.linear_bias
        self.gate = dense(cfg, cfg.d_model, cfg.mlp_hidden, rngs, bias=bias)
        self.up = dense(cfg, cfg.d_model, cfg.mlp_hidden, rngs, bias=bias)
        self.down = dense(cfg, cfg.mlp_hidden, cfg.d_model, rngs, bias=bias, scale=1.0 / cfg.n_layers)

    def __call__(self, x: Hidden) -> Hidden:
        return self.down(jax.nn.gelu(self.gate(x)) * self.up(x))


class BlockDiagonalLinear(nnx.Module):
    """x [... h·w] → y [... h·w]: block j maps x[j·w:(j+1)·w] by kernel[j] [w w] plus bias[j] [w]."""

    def __init__(self, cfg: ModelConfig, width: int, blocks: int, rngs: nnx.Rngs):
        w = width // blocks
        init = nnx.initializers.variance_scaling(1.0, "fan_in", "truncated_normal", in_axis=1, out_axis=2)
        self.kernel = nnx.Param(init(rngs.params(), (blocks, w, w), dtype_of(cfg.param_dtype)))
        self.bias = nnx.Param(jnp.zeros((blocks, w), dtype_of(cfg.param_dtype)))
        self.dtype = dtype_of(cfg.dtype)

    def __call__(self, x: Array) -> Array:
        blocks, w, _ = self.kernel.shape
        xb = x.astype(self.dtype).reshape(*x.shape[:-1], blocks, w)
        y = jnp.einsum("...hi,hio->...ho", xb, self.kernel[...].astype(self.dtype)) + self.bias[...].astype(self.dtype)
        return y.reshape(x.shape)


class SwiGLUMLP(nnx.Module):
    """fc2(SiLU(gate) ⊙ y) with (y, gate) the halves of fc1(x); the *second* half is the gate (Based/JRT)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.fc1 = dense(cfg, cfg.d_model, 2 * cfg.mlp_hidden, rngs)
        self.fc2 = dense(cfg, cfg.mlp_hidden, cfg.d_model, rngs, scale=1.0 / cfg.n_layers)

    def __call__(self, x: Hidden) -> Hidden:
        y, gate = jnp.split(self.fc1(x), 2, axis=-1)
        return self.fc2(jax.nn.silu(gate) * y)


def make_mlp(cfg: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
    """The MLP block named by ``cfg.mlp``."""
    return SwiGLUMLP(cfg, rngs) if cfg.mlp == "swiglu" else GatedMLP(cfg, rngs)


def segment_starts(segment_ids: SegmentIds) -> Array:
    """bool[b t]: True where a new segment begins inside the row (never at t = 0).

    The state entering a row (an initial state) flows into its first token; every later
    document start resets the recurrence so packed documents never see each other.
    """
    changed = segment_ids[:, 1:] != segment_ids[:, :-1]
    return jnp.concatenate([jnp.zeros((segment_ids.shape[0], 1), bool), changed], axis=1)


def positions_from_segments(segment_ids: SegmentIds) -> Array:
    """int32[b t]: position of each token inside its segment (restarts at 0 per segment)."""
    b, t = segment_ids.shape
    index = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
    start = jnp.where(segment_starts(segment_ids), index, 0)
    return index - jax.lax.cummax(start, axis=1)
