"""Birdie's critic (spec §6.4): a small causal Gated SSM over the controller's history.

Pure functions over a parameter dict (no NNX module), so the whole controller update —
training loop and candidate scoring — traces into one jitted function.

Input row t = [loss_t (n), action_t (n)]; output row t = the predicted reward of each arm
for the interval that began at loss_t and ran action_t. Architecture: separate RMSNorms
(learnable scale, init 0.1) for the loss half and the action half → Linear 2n→d →
L causal pre-norm residual Gated SSM blocks (spec §7.1: x̂ = RMSNorm(x); i = σ(W_i x̂),
z = W_z x̂, o = GeLU(W_o x̂), f = σ(W_f x̂ + b_f); h_t = f_t⊙h_{t−1} + i_t⊙z_t;
y = x + W_out(o⊙h)) → RMSNorm → Linear d→n, no output nonlinearity. Everything in float32.

Axis letters: b batch, t history position, n arms, d critic width, s state width,
l layers, k candidates.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from birdie_jax.array_types import Array
from birdie_jax.controller.config import ControllerConfig
from birdie_jax.controller.sizing import require_sized
from birdie_jax.kernels import linear_scan

Params = dict

# Leaves that get weight decay; norms, biases and the forget gate (spec §7.1) do not.
_DECAYED = ("embed_kernel", "in_kernel", "out_kernel", "head_kernel")


def _rms_norm(x: Array, scale: Array, eps: float = 1e-6) -> Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _dense_init(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    """Fan-in scaled truncated normal (±2σ), as ``variance_scaling(scale, "fan_in", "truncated_normal")``."""
    x = rng.standard_normal(shape)
    bad = np.abs(x) > 2
    while bad.any():
        x[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(x) > 2
    return (x * np.sqrt(scale / shape[-2]) / 0.87962566103423978).astype(np.float32)


def init_critic(seed: int | np.random.Generator, num_arms: int, cfg: ControllerConfig) -> Params:
    """Random critic parameters from a NumPy seed (instant: no compilation).

    Dense kernels: fan-in scaled truncated normal (the output projections scaled by
    1/layers); biases 0; block and final norms 1; input norms ``cfg.input_norm_init``;
    forget-gate biases so that σ(b) spans [0.9, 0.999] across the state channels.
    """
    require_sized(cfg, ("critic_width", "critic_state"))
    rng = np.random.default_rng(seed)
    n, d, s, layers = num_arms, cfg.critic_width, cfg.critic_state, cfg.critic_layers
    keep = np.linspace(0.9, 0.999, s)
    params = {
        "loss_norm": np.full((n,), cfg.input_norm_init),
        "action_norm": np.full((n,), cfg.input_norm_init),
        "embed_kernel": _dense_init(rng, (2 * n, d)),
        "embed_bias": np.zeros((d,)),
        "blocks": {
            "norm": np.ones((layers, d)),
            "in_kernel": _dense_init(rng, (layers, d, 3 * s)),
            "forget_kernel": _dense_init(rng, (layers, d, s)),
            "forget_bias": np.tile(np.log(keep / (1 - keep)), (layers, 1)),
            "out_kernel": _dense_init(rng, (layers, s, d), 1.0 / layers),
        },
        "final_norm": np.ones((d,)),
        "head_kernel": _dense_init(rng, (d, n)),
        "head_bias": np.zeros((n,)),
    }
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)


def _embed(params: Params, loss: Array, action: Array) -> Array:
    """[..., n] loss and action → [..., d], each half with its own RMSNorm."""
    x = jnp.concatenate([_rms_norm(loss, params["loss_norm"]), _rms_norm(action, params["action_norm"])], axis=-1)
    return x @ params["embed_kernel"] + params["embed_bias"]


def _gates(block: Params, x: Array) -> tuple[Array, Array, Array]:
    xn = _rms_norm(x, block["norm"])
    i, z, o = jnp.split(xn @ block["in_kernel"], 3, axis=-1)
    f = jax.nn.sigmoid(xn @ block["forget_kernel"] + block["forget_bias"])
    return f, jax.nn.sigmoid(i) * z, jax.nn.gelu(o)


def _head(params: Params, x: Array) -> Array:
    return _rms_norm(x, params["final_norm"]) @ params["head_kernel"] + params["head_bias"]


def critic_forward(params: Params, loss_rows: Array, action_rows: Array, *, return_states: bool = False):
    """Predicted rewards float32[b t n] for history rows float32[b t n] (causal in t).

    With ``return_states`` also the per-layer recurrent states float32[l b t s] (the state
    after row t), from which :func:`critic_step` continues.
    """
    x = _embed(params, loss_rows, action_rows)

    def block_fn(x, block):
        f, iz, o = _gates(block, x)
        h, _ = linear_scan(f, iz)
        return x + (o * h) @ block["out_kernel"], (h if return_states else None)

    x, states = jax.lax.scan(block_fn, x, params["blocks"])
    preds = _head(params, x)
    return (preds, states) if return_states else preds


def critic_step(params: Params, states: Array, loss_row: Array, action_row: Array) -> tuple[Array, Array]:
    """One more row after the states float32[l b s] (b may be 1 and broadcast against the
    rows' batch): (predicted rewards float32[b n], new states float32[l b s])."""
    x = _embed(params, loss_row, action_row)

    def block_fn(x, inputs):
        block, h_prev = inputs
        f, iz, o = _gates(block, x)
        h = f * h_prev + iz
        return x + (o * h) @ block["out_kernel"], h

    x, new_states = jax.lax.scan(block_fn, x, (params["blocks"], states))
    return _head(params, x), new_states


def critic_mse(params: Params, loss_rows: Array, action_rows: Array, targets: Array, mask: Array) -> Array:
    """Mean squared error over the valid rows (mask bool[t]) of one history float32[t n]."""
    preds = critic_forward(params, loss_rows[None], action_rows[None])[0]
    weights = mask.astype(jnp.float32)[:, None]
    return jnp.sum((preds - targets) ** 2 * weights) / (jnp.maximum(weights.sum(), 1.0) * targets.shape[-1])


def learning_rate_schedule(cfg: ControllerConfig):
    """Constant ``learning_rate``, or (``cyclic_lr``) a triangle between ``cyclic_lr_min`` and
    ``learning_rate`` with half-period ``cyclic_half_period`` critic steps. The step count lives
    in the optimizer state, so the cycle continues across updates (warm start)."""
    if not cfg.cyclic_lr:
        return cfg.learning_rate
    low, high, half = cfg.cyclic_lr_min, cfg.learning_rate, cfg.cyclic_half_period

    def schedule(count):
        phase = jnp.mod(count, 2 * half) / half  # 0 → 2
        return low + (high - low) * (1.0 - jnp.abs(phase - 1.0))

    return schedule


def make_critic_optimizer(cfg: ControllerConfig) -> optax.GradientTransformation:
    """Global-norm clipping then AdamW (decay only on the dense kernels)."""
    return optax.chain(optax.clip_by_global_norm(cfg.grad_clip),
                       optax.adamw(learning_rate_schedule(cfg), weight_decay=cfg.weight_decay, mask=_decay_mask))


def _decay_mask(params: Params) -> Params:
    return {k: ({kk: kk in _DECAYED for kk in v} if isinstance(v, dict) else k in _DECAYED)
            for k, v in params.items()}


def train_critic(params: Params, opt_state, loss_rows: Array, action_rows: Array, targets: Array, mask: Array,
                 key: Array, cfg: ControllerConfig):
    """``cfg.critic_steps`` AdamW steps of :func:`critic_mse` in one ``lax.fori_loop``.

    Returns (params, opt_state, mse float32[critic_steps]): the MSE seen by each step
    (before its update), so ``mse[0]`` is the warm-started fit and ``mse[-1]`` the last.
    """
    tx = make_critic_optimizer(cfg)
    grad_fn = jax.value_and_grad(critic_mse)
    eps = cfg.input_noise

    def body(i, carry):
        params, opt_state, trace = carry
        loss_in, action_in = loss_rows, action_rows
        if eps > 0:  # static: multiplicative input noise ×U(1−ε, 1+ε)
            k1, k2 = jax.random.split(jax.random.fold_in(key, i))
            loss_in = loss_in * jax.random.uniform(k1, loss_in.shape, jnp.float32, 1 - eps, 1 + eps)
            action_in = action_in * jax.random.uniform(k2, action_in.shape, jnp.float32, 1 - eps, 1 + eps)
        mse, grads = grad_fn(params, loss_in, action_in, targets, mask)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, trace.at[i].set(mse)

    trace = jnp.zeros((cfg.critic_steps,), jnp.float32)
    return jax.lax.fori_loop(0, cfg.critic_steps, body, (params, opt_state, trace))


def candidate_rewards(params: Params, loss_rows: Array, action_rows: Array, length: Array, current_loss: Array,
                      candidates: Array) -> Array:
    """Predicted rewards float32[k n] of each candidate action, read at its own position T.

    Runs the history (rows 0..T−1 of the padded float32[t n] buffers; rows ≥ T are ignored
    by causality) once, then steps once per candidate from the state after row T−1 with
    input [current_loss, candidate].
    """
    _, states = critic_forward(params, loss_rows[None], action_rows[None], return_states=True)  # [l 1 t s]
    last = jax.lax.dynamic_index_in_dim(states, jnp.maximum(length - 1, 0), axis=2, keepdims=False)  # [l 1 s]
    last = jnp.where(length > 0, last, 0.0)
    loss = jnp.broadcast_to(current_loss, candidates.shape)
    preds, _ = critic_step(params, last, loss, candidates)
    return preds

