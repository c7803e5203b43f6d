"""Orbax checkpoints of the train state, the data-iterator state and run metadata.

Each checkpoint is a step folder with items ``state`` (params, optimizer, step, RNG,
intervention state), ``data`` (the Grain iterator, so a resumed run sees the same
batches), ``meta`` (config, tokenizer and mixture, to refuse resuming a run with another
model) and, in Birdie runs, ``controller`` (the mixture controller's arrays). Orbax writes into a
temporary folder and renames it when complete, so a crash never leaves a half-written
checkpoint in place of the last good one.
"""

import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from birdie_jax.errors import CheckpointError

FORMAT_VERSION = 1


class Checkpointer:
    """Saves and restores checkpoints under ``directory`` (keeps the last ``keep``)."""

    def __init__(self, directory: str, *, keep: int = 3, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            create=not read_only, read_only=read_only, enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "data", "meta", "controller"),
                                             options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_iterator: Any, meta: dict, controller: Any = None) -> None:
        """Starts an asynchronous save; training goes on while it is written."""
        args = {"state": ocp.args.StandardSave(state),
                "meta": ocp.args.JsonSave({**meta, "format_version": FORMAT_VERSION, "step": int(step)})}
        if controller is not None:
            args["controller"] = ocp.args.StandardSave(controller)
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**args), force=True)

    def read_meta(self, step: int | None = None) -> dict:
        step = self._step(step)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 — any failure here means an unreadable folder
            raise CheckpointError(f"checkpoint {self.directory} step {step} has no readable metadata: {e}") from None
        return dict(out["meta"])

    def restore(self, abstract_state: Any, data_iterator: Any = None, step: int | None = None,
                abstract_controller: Any = None) -> Any:
        """Restores the train state (and the data iterator in place, if given); with
        ``abstract_controller`` returns ``(state, controller_state)``."""
        step = self._step(step)
        args = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        if abstract_controller is not None:
            args["controller"] = ocp.args.StandardRestore(abstract_controller)
        try:
            out = self.manager.restore(step, args=ocp.args.Composite(**args))
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {self.directory} step {step} does not match this model/optimizer: {e}") from None
        if abstract_controller is not None:
            return out["state"], out["controller"]
        return out["state"]

    def _step(self, step: int | None) -> int:
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        return step

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding structs of a pytree, the restore target Orbax expects."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def find_checkpoint_dir(path: str) -> str:
    """Accepts a run folder or its ``checkpoints`` subfolder; returns the latter."""
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint path {path!r} does not exist")
    sub = os.path.join(path, "checkpoints")
    return sub if os.path.isdir(sub) else path
