"""A plain reference for Birdie's critic and reward (spec §6.3, §6.4, §7.1), independent of
``birdie_jax.controller``: this module imports nothing from the package. NumPy, float64,
one history row at a time (an explicit recurrence, no scan), written from the spec's text;
it reads the parameter dict by its leaf names only.

Critic row t: [loss_t, action_t] → each half through its own RMSNorm (learnable scale) →
Linear 2n→d → L residual pre-norm Gated SSM blocks (x̂ = RMSNorm(x); i, z, o = x̂·W_in split
in three; f = σ(x̂·W_f + b_f); h_t = f_t⊙h_{t−1} + σ(i)⊙z; x += (GeLU(o)⊙h)·W_out) → RMSNorm →
Linear d→n. RMSNorm: x / √(mean(x²) + 1e−6) · scale; GeLU in its tanh form.
"""

from __future__ import annotations

import math

import numpy as np

RMS_EPS = 1e-6


def reward(old, new):
    """Spec §6.3: d = (new − old)/(old + 1e−8); R = clip(−100·e·tanh(e·√(old·new)·d³), −1, 1); NaN → 0."""
    old, new = np.asarray(old, np.float64), np.asarray(new, np.float64)
    with np.errstate(invalid="ignore"):
        d = (new - old) / (old + 1e-8)
        r = np.clip(-100 * math.e * np.tanh(math.e * np.sqrt(old * new) * d**3), -1.0, 1.0)
    return np.where(np.isnan(r), 0.0, r)


def _rms_norm(x, scale):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + RMS_EPS) * scale


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def critic_predictions(params, loss_rows, action_rows):
    """Predicted rewards float64[t n] for one history float[t n] (row t sees rows 0..t)."""
    p = {k: (np.asarray(v, np.float64) if not isinstance(v, dict) else
             {kk: np.asarray(vv, np.float64) for kk, vv in v.items()}) for k, v in params.items()}
    blocks = p["blocks"]
    layers, state = blocks["forget_bias"].shape
    h = np.zeros((layers, state))
    out = []
    for loss, action in zip(np.asarray(loss_rows, np.float64), np.asarray(action_rows, np.float64), strict=True):
        x = np.concatenate([_rms_norm(loss, p["loss_norm"]), _rms_norm(action, p["action_norm"])])
        x = x @ p["embed_kernel"] + p["embed_bias"]
        for layer in range(layers):
            xn = _rms_norm(x, blocks["norm"][layer])
            i, z, o = np.split(xn @ blocks["in_kernel"][layer], 3)
            f = _sigmoid(xn @ blocks["forget_kernel"][layer] + blocks["forget_bias"][layer])
            h[layer] = f * h[layer] + _sigmoid(i) * z
            x = x + (_gelu(o) * h[layer]) @ blocks["out_kernel"][layer]
        out.append(_rms_norm(x, p["final_norm"]) @ p["head_kernel"] + p["head_bias"])
    return np.asarray(out)


def candidate_predictions(params, loss_rows, action_rows, length, current_loss, candidates):
    """Spec §6.5 step 2: for each candidate, the history rows 0..T−1 then [current_loss,
    candidate] at row T; the prediction read at row T. float64[k n]."""
    rows_l = np.asarray(loss_rows)[:length]
    rows_a = np.asarray(action_rows)[:length]
    return np.asarray([critic_predictions(params, np.vstack([rows_l, current_loss]), np.vstack([rows_a, c]))[-1]
                       for c in np.asarray(candidates)])
