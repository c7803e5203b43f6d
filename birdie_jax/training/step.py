"""Pure, jitted train and eval steps over (graphdef, parameters).

The train state is a plain pytree ``{"params", "opt_state", "step", "rng"}`` so that
jit, donation, sharding and Orbax all see ordinary arrays.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from birdie_jax.config import InitialStateConfig
from birdie_jax.data.layout import IGNORE_ID
from birdie_jax.training import initial_state as interventions
from birdie_jax.distributed.multihost import to_host
from birdie_jax.training.accumulate import accumulate_gradients
from birdie_jax.training.carry import QUALIFIED_KINDS, real_text_state
from birdie_jax.tokenizer import OBJECTIVE_CLASSES

NUM_CLASSES = len(OBJECTIVE_CLASSES)

TrainState = dict[str, Any]
Batch = dict[str, jax.Array]


def token_losses(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-token cross-entropy float32[b t] and the label mask bool[b t] (targets != IGNORE)."""
    mask = targets != IGNORE_ID
    safe = jnp.where(mask, targets, 0)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), safe)
    return jnp.where(mask, losses, 0.0), mask


def batch_loss(graphdef: nnx.GraphDef, params: nnx.State, batch: Batch, class_lookup: jax.Array | None = None,
               initial_state: list | None = None, return_state: bool = False,
               term_weights: tuple[float, float] | None = None) -> tuple[jax.Array, dict]:
    """Mean cross-entropy over the label tokens of the batch, plus counts.

    With ``term_weights`` (the ``jrt`` mixture) the loss is instead w_NTP·L_NTP + w_MLM·L_MLM,
    each term the mean over its own tokens (decoder / prefix labels), and the aux holds
    ``loss_ntp``, ``loss_mlm`` and their token counts.

    With ``class_lookup`` (arm id → objective-class index) and an ``arm_ids`` field, the
    aux also holds per-class loss sums and label counts, for per-objective metrics. Rows
    start from ``initial_state`` (None: zeros); ``return_state`` puts each row's final
    state in ``aux["final_state"]``.
    """
    model = nnx.merge(graphdef, params)
    prefix_mask = batch["region"] != 2 if "region" in batch else None
    out = model(batch["inputs"], batch["segment_ids"], prefix_mask, state=initial_state, return_state=return_state)
    logits, final_state = out if return_state else (out, None)
    losses, mask = token_losses(logits, batch["targets"])
    n = jnp.maximum(mask.sum(), 1)
    correct = (jnp.argmax(logits, -1) == batch["targets"]) & mask
    aux = {"label_tokens": mask.sum(), "accuracy": correct.sum() / n}
    if class_lookup is not None and "arm_ids" in batch:
        arm = batch["arm_ids"]
        cls = jnp.where(arm >= 0, class_lookup[jnp.clip(arm, 0, class_lookup.shape[0] - 1)], -1)
        onehot = (cls[..., None] == jnp.arange(NUM_CLASSES)) & mask[..., None]  # [b t c]
        aux["class_loss_sum"] = jnp.einsum("btc,bt->c", onehot.astype(jnp.float32), losses)
        aux["class_tokens"] = onehot.sum((0, 1))
    if return_state:
        aux["final_state"] = final_state
    if term_weights is not None:
        from birdie_jax.objectives.jrt import ntp_mlm_loss  # noqa: PLC0415

        loss, terms = ntp_mlm_loss(losses, mask, prefix_mask, term_weights)
        return loss, {**aux, **terms}
    return losses.sum() / n, aux


def class_metrics(aux: dict, prefix: str = "loss") -> dict[str, float]:
    """Host-side ``{prefix}/{class}: mean loss`` for the classes present in the batch."""
    if "class_loss_sum" not in aux:
        return {}
    sums, counts = np.asarray(aux["class_loss_sum"]), np.asarray(aux["class_tokens"])
    return {f"{prefix}/{name}": float(sums[i] / counts[i]) for i, name in enumerate(OBJECTIVE_CLASSES) if counts[i]}


def init_train_state(params: nnx.State, tx: optax.GradientTransformation, seed: int,
                     extras: dict | None = None) -> TrainState:
    """The train state; ``extras`` holds intervention state (carried states, statistics)."""
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32),
             "rng": jax.random.key_data(jax.random.key(seed))}
    if extras:
        state["extras"] = extras
    return state


def train_step_fn(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                  class_lookup: np.ndarray | None = None, initial_state_cfg: InitialStateConfig | None = None,
                  num_micro: int = 1, term_weights: tuple[float, float] | None = None
                  ) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The pure train step ``(state, batch) -> (state, metrics)``.

    ``term_weights``: the ``jrt`` mixture's NTP and MLM weights (see :func:`batch_loss`).

    With an ``initial_state_cfg`` other than zero, each row starts from the intervention's
    state and the step carries/fits the final states in ``state["extras"]``. With
    ``num_micro > 1`` the gradient is accumulated over that many micro-batches of rows
    (the same update as one full-batch step).

    ``metrics["finite"]`` says whether the loss and the gradient norm were finite; when
    they were not, the returned state keeps the old parameters, optimizer state and
    intervention state (only the step counter and the RNG advance).
    """
    lookup = None if class_lookup is None else jnp.asarray(class_lookup, jnp.int32)
    init_cfg = initial_state_cfg or InitialStateConfig()

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"])
        extras = state.get("extras", {})
        zero = nnx.merge(graphdef, state["params"]).init_state(batch["inputs"].shape[0])
        start = interventions.initial_state(init_cfg, zero, extras, jax.random.fold_in(key, 1), batch)
        if start is not None:
            batch = {**batch, "initial_state": start}

        def loss_and_grad(params, b):
            b = dict(b)
            return jax.value_and_grad(batch_loss, argnums=1, has_aux=True)(
                graphdef, params, b, lookup, b.pop("initial_state", None), bool(extras), term_weights)

        (loss, aux), grads = accumulate_gradients(loss_and_grad, state["params"], batch, num_micro)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        final_state = aux.pop("final_state", None)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state["step"]), "finite": finite, **aux}
        applied = {"params": params, "opt_state": opt_state}
        if extras:
            rows = None
            if init_cfg.kind in QUALIFIED_KINDS:  # never carry or fit a padding or short-document state
                final_state, rows = real_text_state(graphdef, state["params"], batch, final_state,
                                                    init_cfg.min_carry_fraction)
            applied["extras"] = interventions.update_extras(init_cfg, extras, final_state, rows)
        kept = {k: state[k] for k in applied}
        new_state = {**state, **keep_if_not_finite(finite, applied, kept), "step": state["step"] + 1,
                     "rng": jax.random.key_data(key)}
        return new_state, metrics

    return train_step


def keep_if_not_finite(finite: jax.Array, new: Any, old: Any) -> Any:
    """``new`` where ``finite`` (a bool[] scalar) holds, else ``old``, leaf by leaf: a step whose
    loss or gradient norm is not finite leaves parameters and optimizer state untouched
    (decided on the device, so checking costs no host round trip)."""
    return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)


def make_train_step(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    class_lookup: np.ndarray | None = None, initial_state_cfg: InitialStateConfig | None = None,
                    num_micro: int = 1) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """:func:`train_step_fn`, jitted on one device, donating the old state."""
    return jax.jit(train_step_fn(graphdef, tx, schedule, class_lookup, initial_state_cfg, num_micro),
                   donate_argnums=0)


def make_eval_step(graphdef: nnx.GraphDef) -> Callable[[nnx.State, Batch], dict]:
    """A jitted ``(params, batch) -> {"loss_sum", "label_tokens", "correct"}``."""

    def eval_step(params: nnx.State, batch: Batch) -> dict:
        batch = {k: v for k, v in batch.items() if k != "arm_ids"}
        loss, aux = batch_loss(graphdef, params, batch)
        n = aux["label_tokens"]
        return {"loss_sum": loss * n, "label_tokens": n, "correct": aux["accuracy"] * n}

    return jax.jit(eval_step)


def evaluation_totals(eval_step, params: nnx.State, batches: list[Batch]) -> dict[str, float]:
    """Summed loss, label count and correct greedy predictions over fixed batches."""
    totals = {"loss_sum": 0.0, "label_tokens": 0.0, "correct": 0.0}
    for batch in batches:
        out = to_host(eval_step(params, batch))
        for k in totals:
            totals[k] += float(out[k])
    return totals


def evaluate(eval_step, params: nnx.State, batches: list[Batch]) -> dict[str, float]:
    """Token-weighted validation loss and greedy accuracy over fixed batches."""
    totals = evaluation_totals(eval_step, params, batches)
    n = max(totals["label_tokens"], 1.0)
    return {"val_loss": totals["loss_sum"] / n, "val_accuracy": totals["correct"] / n}


def make_arm_eval_step(graphdef: nnx.GraphDef, num_tags: int) -> Callable[[nnx.State, Batch], dict]:
    """A jitted ``(params, batch) -> {"loss_sum", "label_tokens", "correct"}``, each float32[num_tags],
    summed per ``arm_ids`` tag, so rows of many arms share one forward pass."""

    def arm_eval_step(params: nnx.State, batch: Batch) -> dict:
        model = nnx.merge(graphdef, params)
        logits = model(batch["inputs"], batch["segment_ids"], batch["region"] != 2)
        losses, mask = token_losses(logits, batch["targets"])
        correct = (jnp.argmax(logits, -1) == batch["targets"]) & mask
        onehot = ((batch["arm_ids"][..., None] == jnp.arange(num_tags)) & mask[..., None]).astype(jnp.float32)
        return {"loss_sum": jnp.einsum("btc,bt->c", onehot, losses), "label_tokens": onehot.sum((0, 1)),
                "correct": jnp.einsum("btc,bt->c", onehot, correct.astype(jnp.float32))}

    return jax.jit(arm_eval_step)


def evaluate_per_arm(arm_eval_step, params: nnx.State, batches: list[Batch], arm_names: list[str],
                     arm_classes: list[str]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Per-arm {name: {"loss", "accuracy"}} and per-class ``val_loss/<class>``, ``val_accuracy/<class>``.

    ``batches`` hold rows of every arm, tagged by ``arm_ids`` (arm i has tag i).
    """
    totals = {k: np.zeros(len(arm_names) + 1) for k in ("loss_sum", "label_tokens", "correct")}
    for batch in batches:
        out = to_host(arm_eval_step(params, batch))
        for k in totals:
            totals[k] += np.asarray(out[k])[: len(arm_names) + 1]
    per_arm = {name: {"loss": totals["loss_sum"][i] / max(totals["label_tokens"][i], 1.0),
                      "accuracy": totals["correct"][i] / max(totals["label_tokens"][i], 1.0)}
               for i, name in enumerate(arm_names)}
    metrics = {}
    for cls in dict.fromkeys(arm_classes):
        idx = [i for i, c in enumerate(arm_classes) if c == cls]
        n = max(totals["label_tokens"][idx].sum(), 1.0)
        metrics[f"val_loss/{cls}"] = float(totals["loss_sum"][idx].sum() / n)
        metrics[f"val_accuracy/{cls}"] = float(totals["correct"][idx].sum() / n)
    return per_arm, metrics
