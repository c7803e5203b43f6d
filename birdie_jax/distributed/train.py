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
import optax
from flax import nnx


from birdie_jax.distributed.rules import DEFAULT_RULES, ShardingRules, batch_sharding, replicated, state_shardings
from birdie_jax.training.accumulate import accumulate_gradients, split_micro_batches  # noqa: F401 (re-exported)
from birdie_jax.training.step import Batch, TrainState, train_step_fn

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


def make_train_step_fn(graphdef: nnx.GraphDef, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                       num_micro: int = 1, **kw) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
    """The pure (un-jitted) train step of :func:`birdie_jax.training.step.train_step_fn`, with
    gradient accumulation over ``num_micro`` micro-batches; wrap it with :func:`shard_train_step`."""
    return train_step_fn(graphdef, tx, schedule, num_micro=num_micro, **kw)
