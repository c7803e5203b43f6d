"""``BirdieController``: the host-side object a training loop drives at evaluation steps.

It keeps the history in fixed-size NumPy buffers, the critic parameters and optimizer
state as JAX arrays, and one PRNG key; each update after the warm-up is one call of the
jitted :func:`~birdie_jax.controller.update.controller_update`. Its whole state is
:meth:`BirdieController.state_dict` — arrays plus a few integers, saved with Orbax — so a
resumed run makes exactly the decisions of an uninterrupted one.
"""

import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from birdie_jax.controller.config import ControllerConfig
from birdie_jax.controller.critic import init_critic, make_critic_optimizer
from birdie_jax.controller.exploration import uniform_class_action
from birdie_jax.controller.reward import class_index, class_onehot, reward
from birdie_jax.controller.schedule import evaluation_steps, exploration_probability, history_capacity, warmup_end
from birdie_jax.controller.sizing import sized_to_run
from birdie_jax.controller.update import controller_update

STATE_VERSION = 1
_SCALARS = ("version", "num_arms", "capacity", "total_steps", "length", "last_step", "has_prev", "dropped_rows",
            "updates", "explored")


class BirdieController:
    """Birdie's reward-driven mixture controller (spec §6.3–§6.7).

    Args:
      arm_classes: the objective class name of each arm, in arm order (e.g. 95 entries
        ``"ntp", "plm", "sc", …``). Classes are numbered in order of first appearance.
      total_steps: N, the run's number of optimizer steps (schedule and exploration scale).
      config: controller constants; unset critic sizes are scaled from ``total_steps`` and
        the number of arms (:func:`~birdie_jax.controller.sizing.sized_to_run`), and
        ``self.config`` holds the sized config.
      seed: seeds the critic's initialisation and every random choice.
      arm_names: a name per arm for the metrics (default ``<class>_<j>``).

    Typical use (``s`` = optimizer steps done, as the training loop counts them)::

        pipeline.set_probabilities(controller.initial_probabilities())   # before step 1
        ...
        if controller.is_evaluation_step(s):
            probs = controller.observe(s, per_arm_validation_losses)   # float64[n], sums to 1
            pipeline.set_probabilities(probs)
            writer.write(s, controller.metrics())

    Checkpoint :meth:`state_dict` with the train state (e.g. one more Orbax item saved with
    ``StandardSave``); on resume build the controller with the same arguments, restore the
    item with ``StandardRestore(abstract_like(controller.state_dict()))``, call
    :meth:`load_state_dict` and set ``controller.probabilities`` in the pipeline.
    """

    def __init__(self, arm_classes: Sequence[str], total_steps: int, config: ControllerConfig = ControllerConfig(),
                 seed: int = 0, *, arm_names: Sequence[str] | None = None):
        if len(arm_classes) == 0:
            raise ValueError("arm_classes is empty")
        if total_steps <= 0:
            raise ValueError(f"total_steps must be > 0, got {total_steps}")
        self.total_steps = int(total_steps)
        self.config = config = sized_to_run(config, self.total_steps, len(arm_classes))
        self.class_names, self.class_ids = class_index(list(arm_classes))
        self.onehot = class_onehot(self.class_ids, len(self.class_names))
        n = self.num_arms = len(arm_classes)
        if arm_names is None:
            counts: dict[str, int] = {}
            arm_names = []
            for c in arm_classes:
                arm_names.append(f"{c}_{counts.get(c, 0)}")
                counts[c] = counts.get(c, 0) + 1
        if len(arm_names) != n or len(set(arm_names)) != n:
            raise ValueError("arm_names must hold one distinct name per arm")
        self.arm_names = tuple(arm_names)
        self.evaluation_steps = evaluation_steps(self.total_steps, config)
        self.warmup_end = warmup_end(self.total_steps, config)
        self._eval_set = frozenset(self.evaluation_steps)

        self._params = init_critic(seed, n, config)
        self._opt_state = make_critic_optimizer(config).init(self._params)
        key = jax.random.key(seed)
        self._opt_treedef = jax.tree.structure(self._opt_state)
        self._key = np.asarray(jax.random.key_data(key))
        h = self.capacity = history_capacity(self.total_steps, config)
        self._loss_rows = np.zeros((h, n), np.float32)
        self._action_rows = np.zeros((h, n), np.float32)
        self._reward_rows = np.zeros((h, n), np.float32)
        self._probs = np.asarray(uniform_class_action(self.onehot), np.float32)
        self._prev_loss = np.zeros((n,), np.float32)  # finite (stored in the history)
        self._prev_loss_raw = np.zeros((n,), np.float32)  # as measured (for the reward)
        self._last_reward = np.zeros((n,), np.float32)
        self._length = 0
        self._last_step = -1
        self._has_prev = False
        self._dropped_rows = 0
        self._updates = 0
        self._explored = False
        self._last_info: dict[str, float] = {}
        self._compiled = None  # the update compiled ahead of time (compile_in_background)
        self._compile_thread: threading.Thread | None = None
        self.background_compile_s = 0.0  # how long the background compile took
        self.compile_wait_s = 0.0  # how long the first update waited for it

    # ------------------------------------------------------------------ schedule

    def is_evaluation_step(self, step: int) -> bool:
        """Whether the schedule measures per-arm validation losses after ``step`` updates."""
        return int(step) in self._eval_set

    def exploration_probability(self, step: int) -> float:
        return exploration_probability(step, self.total_steps, self.config)

    def initial_probabilities(self) -> np.ndarray:
        """float64[n]: the warm-up action, uniform over classes then within a class."""
        return _as_probabilities(uniform_class_action(self.onehot))

    @property
    def probabilities(self) -> np.ndarray:
        """float64[n]: the action in force now (sums to 1)."""
        return _as_probabilities(self._probs)

    @property
    def history_length(self) -> int:
        """T: the number of (loss, action, reward) rows the critic trains on."""
        return self._length

    @property
    def last_step(self) -> int:
        """The step of the latest :meth:`observe` (−1 before the first)."""
        return self._last_step

    # ------------------------------------------------------------------ the update

    def observe(self, step: int, per_arm_losses: Sequence[float]) -> np.ndarray:
        """Records the per-arm validation losses measured after ``step`` updates; returns the
        probabilities to sample with from here on (float64[n], sums to 1).

        The first call only stores the losses. Each later call appends the row
        (previous losses, action used since then, reward(previous, these losses)); from
        the warm-up end on it also runs the jitted update, whose action (or, with
        probability p(step), an exploration action) becomes the new action. Non-finite
        losses get reward 0 and are stored as the arm's previous loss (0 at first).
        """
        step = int(step)
        if step <= self._last_step:
            raise ValueError(f"observe(step={step}) after step {self._last_step}: steps must increase")
        losses = np.asarray(per_arm_losses, np.float32).reshape(-1)
        if losses.shape != (self.num_arms,):
            raise ValueError(f"expected {self.num_arms} per-arm losses, got shape {np.shape(per_arm_losses)}")
        clean = np.where(np.isfinite(losses), losses, self._prev_loss).astype(np.float32)
        if self._has_prev:
            r = np.asarray(reward(self._prev_loss_raw, losses), np.float32)
            self._append(self._prev_loss, self._probs, r)
            self._last_reward = r
            if step >= self.warmup_end:
                self._update(step, clean)
        self._prev_loss, self._prev_loss_raw = clean, losses
        self._has_prev = True
        self._last_step = step
        return self.probabilities

    def _append(self, loss: np.ndarray, action: np.ndarray, r: np.ndarray) -> None:
        capacity = self.capacity - 1  # one slot stays free for candidate scoring
        if self._length == capacity:
            if self._dropped_rows == 0:
                warnings.warn(f"Birdie controller history is full ({capacity} rows): dropping the oldest rows "
                              "(raise controller history_capacity to keep them)", stacklevel=3)
            for buf in (self._loss_rows, self._action_rows, self._reward_rows):
                buf[:capacity - 1] = buf[1:capacity].copy()
            self._length -= 1
            self._dropped_rows += 1
        t = self._length
        self._loss_rows[t], self._action_rows[t], self._reward_rows[t] = loss, action, r
        self._length += 1

    def compile_in_background(self) -> None:
        """Starts compiling the jitted update for this controller's shapes in a thread.

        The training loop calls it at setup, so the compile (seconds, whatever the critic's
        size) overlaps the run's own setup and first steps instead of stalling the first
        update; the first update waits for the thread if it is still running. The compiled
        executable computes exactly what ``controller_update`` does.
        """
        if self._compiled is not None or self._compile_thread is not None:
            return
        args = self._update_args(np.asarray(jax.random.key_data(jax.random.key(0))), 0.0,
                                 np.zeros((self.num_arms,), np.float32))

        def compile_update():
            tick = time.perf_counter()
            try:
                # The host-side JAX calls of observe (reward, key split) compile on first use too.
                reward(np.ones((self.num_arms,), np.float32), np.ones((self.num_arms,), np.float32))
                jax.random.key_data(jax.random.split(jax.random.wrap_key_data(self._key))[0])
                self._compiled = controller_update.lower(*args, cfg=self.config).compile()
            except Exception:  # noqa: BLE001 — the update then compiles (and reports) in the foreground
                self._compiled = None
            self.background_compile_s = time.perf_counter() - tick

        self._compile_thread = threading.Thread(target=compile_update, name="birdie-controller-compile",
                                               daemon=False)  # never killed mid-compile at exit (aborts)
        self._compile_thread.start()

    def _update_args(self, key_data, explore_prob: float, current_loss: np.ndarray) -> tuple:
        return (self._params, self._opt_state, self._loss_rows, self._action_rows, self._reward_rows,
                np.int32(self._length), np.asarray(current_loss, np.float32), self.onehot, np.float32(explore_prob),
                jax.numpy.asarray(key_data))

    def _update(self, step: int, current_loss: np.ndarray) -> None:
        key = jax.random.wrap_key_data(self._key)
        key, sub = jax.random.split(key)
        self._key = np.asarray(jax.random.key_data(key))
        p = self.exploration_probability(step)
        if self._compile_thread is not None:
            tick = time.perf_counter()
            self._compile_thread.join()
            self._compile_thread = None
            self.compile_wait_s = time.perf_counter() - tick
        args = self._update_args(jax.random.key_data(sub), p, current_loss)
        if self._compiled is not None:
            params, opt_state, action, info = self._compiled(*args)
        else:
            params, opt_state, action, info = controller_update(*args, cfg=self.config)
        self._params, self._opt_state = params, opt_state
        self._probs = np.asarray(action, np.float32)
        self._updates += 1
        self._explored = bool(info["explored"])
        mse = np.asarray(info["critic_mse"])
        self._last_info = {"critic_mse_first": float(mse[0]), "critic_mse_last": float(mse[-1]),
                           "predicted_score": float(info["predicted_score"]), "explore_prob": p}

    # ------------------------------------------------------------------ visibility

    def metrics(self) -> dict[str, float]:
        """A flat dict of floats for JSONL/TensorBoard, describing the latest observation.

        Per class c: ``mixture/prob/<c>`` (total probability now in force), ``mixture/loss/<c>``
        and ``mixture/reward/<c>`` (means over the class's arms of the latest losses and
        rewards). Per arm: ``mixture/arm_prob/<arm>``, ``mixture/arm_loss/<arm>``,
        ``mixture/arm_reward/<arm>``. Controller: ``mixture/explored`` (1 if the action in
        force came from exploration), ``mixture/history_len``, ``mixture/updates`` and, after
        an update, ``mixture/explore_prob``, ``mixture/critic_mse_first``,
        ``mixture/critic_mse_last`` (the critic's MSE before its first and last step) and
        ``mixture/predicted_score``.
        """
        probs = self.probabilities
        out: dict[str, float] = {}
        for c, name in enumerate(self.class_names):
            member = self.class_ids == c
            out[f"mixture/prob/{name}"] = float(probs[member].sum())
            if self._has_prev:
                out[f"mixture/loss/{name}"] = float(np.mean(self._prev_loss[member]))
                out[f"mixture/reward/{name}"] = float(np.mean(self._last_reward[member]))
        for i, arm in enumerate(self.arm_names):
            out[f"mixture/arm_prob/{arm}"] = float(probs[i])
            if self._has_prev:
                out[f"mixture/arm_loss/{arm}"] = float(self._prev_loss[i])
                out[f"mixture/arm_reward/{arm}"] = float(self._last_reward[i])
        out["mixture/explored"] = float(self._explored)
        out["mixture/history_len"] = float(self._length)
        out["mixture/updates"] = float(self._updates)
        out.update({f"mixture/{k}": v for k, v in self._last_info.items()})
        return out

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """The whole controller state: a pytree of arrays (scalars as 0-d int32 arrays) that
        Orbax ``StandardSave`` writes; restore with ``StandardRestore`` against a fresh
        controller's ``state_dict()`` (same arms, total_steps and config) and pass the result
        to :meth:`load_state_dict`. The arrays are copies or immutable JAX arrays."""
        scalars = {"version": STATE_VERSION, "num_arms": self.num_arms, "capacity": self.capacity,
                   "total_steps": self.total_steps, "length": self._length, "last_step": self._last_step,
                   "has_prev": int(self._has_prev), "dropped_rows": self._dropped_rows, "updates": self._updates,
                   "explored": int(self._explored)}
        opt_leaves = jax.tree.leaves(self._opt_state)
        return {
            "critic_params": self._params,
            "critic_opt_state": {f"{i:03d}": leaf for i, leaf in enumerate(opt_leaves)},
            "history": {"loss": self._loss_rows.copy(), "action": self._action_rows.copy(),
                        "reward": self._reward_rows.copy()},
            "rng": self._key.copy(),
            "probs": self._probs.copy(),
            "prev_loss": self._prev_loss.copy(),
            "prev_loss_raw": self._prev_loss_raw.copy(),
            "last_reward": self._last_reward.copy(),
            "scalars": {k: np.asarray(v, np.int32) for k, v in scalars.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores a :meth:`state_dict` (possibly as restored by Orbax: NumPy or JAX arrays)."""
        scalars = {k: int(np.asarray(state["scalars"][k])) for k in _SCALARS}
        if scalars["version"] != STATE_VERSION:
            raise ValueError(f"controller state version {scalars['version']} != {STATE_VERSION}")
        for name, mine in (("num_arms", self.num_arms), ("capacity", self.capacity),
                           ("total_steps", self.total_steps)):
            if scalars[name] != mine:
                raise ValueError(f"controller state has {name}={scalars[name]}, this controller {mine}")
        # Through NumPy: Orbax restores device-committed arrays, which would make the jitted
        # update compile a second time (same trace, another cache entry).
        self._params = jax.tree.map(_fresh_array, dict(state["critic_params"]))
        opt = state["critic_opt_state"]
        leaves = [_fresh_array(opt[k]) for k in sorted(opt)]
        self._opt_state = jax.tree.unflatten(self._opt_treedef, leaves)
        history = state["history"]
        self._loss_rows = np.array(history["loss"], np.float32)
        self._action_rows = np.array(history["action"], np.float32)
        self._reward_rows = np.array(history["reward"], np.float32)
        self._key = np.array(state["rng"], np.uint32)
        self._probs = np.array(state["probs"], np.float32)
        self._prev_loss = np.array(state["prev_loss"], np.float32)
        self._prev_loss_raw = np.array(state["prev_loss_raw"], np.float32)
        self._last_reward = np.array(state["last_reward"], np.float32)
        self._length, self._last_step = scalars["length"], scalars["last_step"]
        self._has_prev, self._dropped_rows = bool(scalars["has_prev"]), scalars["dropped_rows"]
        self._updates, self._explored = scalars["updates"], bool(scalars["explored"])
        self._last_info = {}


def _fresh_array(x) -> jax.Array:
    return jax.numpy.asarray(np.asarray(x))


def _as_probabilities(p) -> np.ndarray:
    p = np.asarray(p, np.float64)
    return p / p.sum()
