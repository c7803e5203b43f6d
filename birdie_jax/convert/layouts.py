"""Weight layouts shared by the PyTorch-side conversions (pure NumPy, bit-exact both ways)."""

import numpy as np

from birdie_jax.errors import CheckpointError


def linear_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Our dense kernel [in, out] → torch ``nn.Linear.weight`` [out, in]."""
    return np.ascontiguousarray(kernel.T)


def linear_from_torch(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight.T)


def conv_to_torch(weight: np.ndarray) -> np.ndarray:
    """Our causal conv taps [w, c] (tap j reads x[t−j]) → depthwise ``nn.Conv1d.weight`` [c, 1, w]
    (left-padded by w−1, so index k reads x[t−(w−1)+k])."""
    return np.ascontiguousarray(weight[::-1].T[:, None, :])


def conv_from_torch(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight[:, 0, :].T[::-1])


def norm_offset_to_torch(scale: np.ndarray, name: str) -> np.ndarray:
    """Our RMSNorm scale s → Gemma's weight w with s = 1 + w; refuses an s that w cannot hold exactly."""
    weight = (scale.astype(np.float32) - np.float32(1)).astype(scale.dtype)
    if not np.array_equal((weight.astype(np.float32) + np.float32(1)).astype(scale.dtype), scale):
        raise CheckpointError(f"norm scale {name} is not exactly 1 + w in {scale.dtype}; it cannot be exported exactly")
    return weight


def norm_offset_from_torch(weight: np.ndarray) -> np.ndarray:
    """Gemma's weight w → our scale 1 + w, in float32 as Gemma computes it."""
    return weight.astype(np.float32) + np.float32(1)
