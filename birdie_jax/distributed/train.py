"""Sharded train steps: state creation on the mesh, jitted steps with explicit
shardings and donation, and gradient accumulation over micro-batches.

Typical wiring (see ``docs/distributed.md``)::

    mesh = make_mesh(MeshConfig(data=-1, fsdp=8))
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build_model(cfg, seed=cfg.seed)))
    init = lambda: init_train_state(nnx.split(build_model(cfg, seed=cfg.seed))[1], tx, cfg.seed)
    state = init_sharded(init, mesh)                       # born sharded, never whole on one device
    step_fn = make_train_step_fn(graphdef, tx, schedule, num_micro=4)
    train_step = shard_train_step(step_fn, state, mesh)    # jit(in/out shardings, donation)
    state, metrics = train_step(state, global_batch(local_batch, batch_sharding(mesh)))
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jax.sharding import PartitionSpec

from birdie_jax.distributed.mesh import BATCH_AXES
from birdie_jax.distributed.rules import DEFAULT_RULES, ShardingRules, batch_sharding, replicated, state_shardings
from birdie_jax.training.step import Batch, TrainState, batch_loss

LossAndGrad = Callable[[Any, Batch], tuple[tuple[jax.Array, dict], Any]]


def abstract_of(tree: Any) -> Any:
    """``ShapeDtypeStruct`` pytree of arrays or structs (shardings dropped)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def init_sharded(init_fn: Callable[[], Any], mesh, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """Runs ``init_fn()`` (no arguments, returns the train state) jitted so that every
    leaf is created directly with its sharding from :func:`state_shardings`.

    ``jax.eval_shape`` gives the state's structure without computing it; the jitted init
    then materialises each device's shard only, so a model larger than one device's
    memory can be created. Values equal an unsharded ``init_fn()``.
    """
    abstract = jax.eval_shape(init_fn)
    shardings = state_shardings(abstract, mesh, rules)
    with jax.set_mesh(mesh):
        return jax.jit(init_fn, out_shardings=shardings)()


def place_state(state: Any, mesh, rules: ShardingRules = DEFAULT_RULES) -> Any:
    """``device_put`` an existing (e.g. single-device or restored) state onto ``mesh`` by the rules."""
    return jax.device_put(state, state_shardings(abstract_of(state), mesh, rules))


def shard_train_step(train_step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict]], abstract_state: Any,
                     mesh, *, batch_spec: Any = None, rules: ShardingRules = DEFAULT_RULES,
                     donate: bool = True) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """``jax.jit(train_step_fn)`` with explicit input/output shardings and donation.

    Args:
      train_step_fn: ``(state, batch) -> (state, metrics)``, pure (e.g.
        :func:`make_train_step_fn`, or ``birdie_jax.training.step.make_train_step``'s
        result: a jitted function is inlined).
      abstract_state: the state or its ``ShapeDtypeStruct`` pytree (only shapes, dtypes
        and paths are read).
      mesh: the mesh.
      batch_spec: sharding of the batch: a ``NamedSharding`` (applied to every field) or a
        pytree of them; default :func:`batch_sharding` (rows over ``data``×``fsdp``, time
        over ``sequence`` when > 1).
      rules: the sharding rules of the state.
      donate: donate the input state (its buffers are reused for the output state).

    Returns:
      ``step(state, batch) -> (state, metrics)``, the state sharded by the rules in and
      out, metrics replicated. The call runs under ``jax.set_mesh(mesh)`` so sequence-
      parallel kernels called with ``mesh=None`` find the mesh.
    """
    shardings = state_shardings(abstract_of(abstract_state), mesh, rules)
    if batch_spec is None:
        batch_spec = batch_sharding(mesh)
    jitted = jax.jit(train_step_fn, in_shardings=(shardings, batch_spec), out_shardings=(shardings, replicated(mesh)),
                     donate_argnums=(0,) if donate else ())

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        with jax.set_mesh(mesh):
            return jitted(state, batch)

    step.jitted = jitted  # for .lower(...) / cost and memory analysis
    step.state_shardings = shardings
    return step


def split_micro_batches(batch: Batch, num_micro: int) -> Batch:
    """``{k: [B, ...]}`` → ``{k: [num_micro, B / num_micro, ...]}``, micro-batch j = rows
    ``[j·B/num_micro, (j+1)·B/num_micro)``.

    Under a mesh (``jax.set_mesh``, as :func:`shard_train_step` does) the stacked
    micro-batches are then constrained to ``P(None, ("data", "fsdp"), "sequence")`` so every
    micro-batch is split over all data-parallel devices (a one-off reshuffle of the token
    ids before the loop, instead of micro-batches living on a subset of the devices).

    The reshuffle moves only int32 token ids (``B·T·4`` bytes per field), negligible
    next to one micro-batch's activations.
    """
    def split(x):
        if x.shape[0] % num_micro:
            raise ValueError(f"gradient accumulation: batch of {x.shape[0]} rows does not split into "
                             f"{num_micro} micro-batches")
        return x.reshape((num_micro, x.shape[0] // num_micro) + x.shape[1:])

    micro = jax.tree.map(split, batch)
    mesh = jax.sharding.get_abstract_mesh()
    sizes = dict(mesh.shape) if mesh is not None else {}
    rows = tuple(a for a in BATCH_AXES if sizes.get(a, 1) > 1)
    if rows or sizes.get("sequence", 1) > 1:
        per_device_rows = 1
        for a in rows:
            per_device_rows *= sizes[a]

        def constrain(x):
            if x.shape[1] % per_device_rows:
                return x
            time = "sequence" if sizes.get("sequence", 1) > 1 and x.ndim >= 3 else None
            if time and x.shape[2] % sizes["sequence"]:
                time = None
            return jax.lax.with_sharding_constraint(x, PartitionSpec(None, rows or None, time))

        micro = jax.tree.map(constrain, micro)
    return micro


def accumulate_gradients(loss_and_grad_fn: LossAndGrad, params: Any, batch: Batch,
                         num_micro: int) -> tuple[tuple[jax.Array, dict], Any]:
    """Gradients of the full batch, computed ``num_micro`` micro-batches at a time.

    Args:
      loss_and_grad_fn: ``(params, micro_batch) -> ((loss, aux), grads)`` where ``loss`` is
        the mean over the micro-batch's label tokens and ``aux["label_tokens"]`` their
        count (``jax.value_and_grad(batch_loss, has_aux=True)``). Other ``aux`` scalars are
        taken to be per-label-token means (like ``accuracy``) and combined token-weighted.
      params: the parameters.
      batch: the full batch ``{field: [B, ...]}``.
      num_micro: number of micro-batches (1: a single call, no loop).

    Returns:
      ``((loss, aux), grads)`` as one call on the full batch would give: the loss and the
      gradients are ``sum_j n_j · mean_j / sum_j n_j`` (label-token weighted), so k
      micro-batches give the same update as one full-batch step; ``aux["label_tokens"]``
      is the total. Accumulation runs in ``lax.scan`` (one micro-batch's activations live
      at a time); the gradient sum is kept in the parameters' dtype.
    """
    if num_micro == 1:
        return loss_and_grad_fn(params, batch)
    micro = split_micro_batches(batch, num_micro)

    def one(carry, mb):
        loss_sum, aux_sums, tokens, grad_sum = carry
        (loss, aux), grads = loss_and_grad_fn(params, mb)
        n = aux["label_tokens"].astype(jnp.float32)
        weight = jnp.maximum(n, 1.0)  # undoes the mean's max(n, 1) exactly; a micro-batch without labels adds 0
        grad_sum = jax.tree.map(lambda s, g: s + (g * weight).astype(s.dtype), grad_sum, grads)
        aux_sums = {k: aux_sums[k] + aux[k].astype(jnp.float32) * weight for k in aux_sums}
        return (loss_sum + loss.astype(jnp.float32) * weight, aux_sums, tokens + n, grad_sum), None

    abstract_aux = jax.eval_shape(lambda: loss_and_grad_fn(params, jax.tree.map(lambda x: x[0], micro))[0][1])
    other = [k for k in abstract_aux if k != "label_tokens"]
    init = (jnp.zeros((), jnp.float32), {k: jnp.zeros((), jnp.float32) for k in other}, jnp.zeros((), jnp.float32),
            jax.tree.map(jnp.zeros_like, params))
    (loss_sum, aux_sums, tokens, grad_sum), _ = jax.lax.scan(one, init, micro)
    denom = jnp.maximum(tokens, 1.0)
    grads = jax.tree.map(lambda g: (g / denom).astype(g.dtype), grad_sum)
    aux = {k: v / denom for k, v in aux_sums.items()}
    aux["label_tokens"] = tokens.astype(abstract_aux["label_tokens"].dtype)
    return (loss_sum / denom, aux), grads


def make_train_step_fn(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                       num_micro: int = 1, loss_fn: Callable = batch_loss
                       ) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The pure (un-jitted) train step of :func:`birdie_jax.training.step.make_train_step`,
    with gradient accumulation over ``num_micro`` micro-batches; wrap it with
    :func:`shard_train_step` (or ``jax.jit``).

    Same state, update and metrics (``loss``, ``grad_norm``, ``lr``, ``label_tokens``,
    ``accuracy``) as the unsharded step; with ``num_micro > 1`` they are those of the full
    batch (label-token weighted).
    """
    def loss_and_grad(params, batch):
        return jax.value_and_grad(loss_fn, argnums=1, has_aux=True)(graphdef, params, batch)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
        (loss, aux), grads = accumulate_gradients(loss_and_grad, state["params"], batch, num_micro)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        rng = jax.random.key_data(jax.random.fold_in(jax.random.wrap_key_data(state["rng"]), state["step"]))
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(state["step"]), **aux}
        new_state = {**state, "params": params, "opt_state": opt_state, "step": state["step"] + 1, "rng": rng}
        return new_state, metrics

    return train_step
