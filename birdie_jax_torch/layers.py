"""Shared pieces: parameters from safetensors, RMSNorm, dense, segment-masked conv, linear scans.

Plain loops over time, float32 recurrences: the readable reference, like the JAX side's
``linear_scan_reference``. Tensors are named with our dotted names and kept in our layout
(dense kernels ``[in, out]``), so ``y = x @ kernel``.
"""

import torch
from torch import nn


class Params:
    """The tensors under one name prefix (``blocks.0.mixer.``), checked on access."""

    def __init__(self, tensors: dict[str, torch.Tensor], prefix: str = ""):
        self.tensors, self.prefix = tensors, prefix

    def __getitem__(self, name: str) -> torch.Tensor:
        key = self.prefix + name
        if key not in self.tensors:
            raise KeyError(f"tensor {key!r} is missing from the safetensors file")
        return self.tensors[key]

    def __contains__(self, name: str) -> bool:
        return self.prefix + name in self.tensors

    def sub(self, name: str) -> "Params":
        return Params(self.tensors, f"{self.prefix}{name}.")


def parameter(value: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(value.float().clone(), requires_grad=False)


class Dense(nn.Module):
    """y = x @ kernel (+ bias), kernel [in, out] as stored."""

    def __init__(self, p: Params):
        super().__init__()
        self.kernel = parameter(p["kernel"])
        self.bias = parameter(p["bias"]) if "bias" in p else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.kernel
        return y if self.bias is None else y + self.bias


class RMSNorm(nn.Module):
    def __init__(self, p: Params, eps: float):
        super().__init__()
        self.scale, self.eps = parameter(p["scale"]), eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.scale


def gelu(x: torch.Tensor) -> torch.Tensor:
    """The tanh-approximated GeLU that JAX's ``jax.nn.gelu`` computes by default."""
    return nn.functional.gelu(x, approximate="tanh")


def segment_starts(segment_ids: torch.Tensor) -> torch.Tensor:
    """bool[b t]: a new segment begins here (never at t = 0)."""
    starts = torch.zeros_like(segment_ids, dtype=torch.bool)
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    return starts


def reverse_resets(segment_ids: torch.Tensor, prefix_mask: torch.Tensor | None) -> torch.Tensor:
    """bool[b t]: where a reverse scan restarts: causal positions, segment ends, the row's end."""
    causal = torch.ones_like(segment_ids, dtype=torch.bool) if prefix_mask is None else ~prefix_mask.bool()
    ends = torch.ones_like(causal)
    ends[:, :-1] = segment_ids[:, :-1] != segment_ids[:, 1:]
    return causal | ends


def scan(a: torch.Tensor, b: torch.Tensor, reset: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """h_t = a_t·h_{t∓1} + b_t over [b t n] from a zero state; the carry is zero where ``reset``."""
    h = torch.zeros_like(b[:, 0])
    out = torch.empty_like(b)
    steps = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    for t in steps:
        h = a[:, t] * torch.where(reset[:, t, None], torch.zeros_like(h), h) + b[:, t]
        out[:, t] = h
    return out


def recurrence(a, b, segment_ids, prefix_mask, bidirectional: bool) -> torch.Tensor:
    """Causal scan, or (bidirectional) forward over the first half of channels and reverse
    over the second half within each sample's prefix (Birdie §3.1)."""
    forward_reset = segment_starts(segment_ids)
    if not bidirectional:
        return scan(a, b, forward_reset)
    half = a.shape[-1] // 2
    return torch.cat([scan(a[..., :half], b[..., :half], forward_reset),
                      scan(a[..., half:], b[..., half:], reverse_resets(segment_ids, prefix_mask), reverse=True)], -1)


class CausalConv(nn.Module):
    """y_t = bias + Σ_j w_j x_{t−j}, a tap counting only inside the same segment."""

    def __init__(self, p: Params):
        super().__init__()
        self.weight, self.bias = parameter(p["weight"]), parameter(p["bias"])

    def forward(self, x: torch.Tensor, segment_ids: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        y = torch.zeros_like(x) + self.bias
        for j in range(self.weight.shape[0]):
            if j >= t:
                break
            same = (segment_ids[:, j:] == segment_ids[:, : t - j])[..., None]
            y[:, j:] = y[:, j:] + torch.where(same, x[:, : t - j] * self.weight[j], torch.zeros_like(x[:, j:]))
        return y


def positions_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """int[b t]: position inside the segment."""
    index = torch.arange(segment_ids.shape[1]).expand_as(segment_ids)
    start = torch.where(segment_starts(segment_ids), index, torch.zeros_like(index))
    return index - torch.cummax(start, dim=1).values
