"""Orbax checkpoints of the train state, the data-iterator state and run metadata.

Each checkpoint is a step folder with items ``state`` (params, optimizer, step, RNG,
intervention state), ``data`` (the Grain iterator, so a resumed run sees the same
batches), ``meta`` (config, tokenizer and mixture, to refuse resuming a run with another
model) and, in Birdie runs, ``controller`` (the mixture controller's arrays). Orbax writes into a
temporary folder and renames it when complete, so a crash never leaves a half-written
checkpoint in place of the last good one; a checksum manifest then guards each committed
step against later damage (truncated, deleted or altered files).
"""

import os
import shutil
import sys
import threading
from typing import Any

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from birdie_jax.errors import CheckpointError
from birdie_jax.training import manifest

FORMAT_VERSION = 1
#: Where ``set_aside`` moves damaged steps (inside the checkpoint folder; never deleted).
DAMAGED_DIR = "damaged"


class Checkpointer:
    """Saves and restores checkpoints under ``directory`` (keeps the last ``keep``).

    Every committed step gets a checksum manifest (:mod:`birdie_jax.training.manifest`),
    written by a background thread once Orbax has committed it, so training is not held
    up. Restoring verifies it; a damaged step is reported on one line and the newest
    intact earlier step is used instead (the damaged folder is left where it is). Older
    steps are pruned only after a newer step has been sealed, so pruning never removes
    the last intact checkpoint.
    """

    def __init__(self, directory: str, *, keep: int = 3, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self.restored_step: int | None = None
        options = ocp.CheckpointManagerOptions(create=not read_only, read_only=read_only,
                                               enable_async_checkpointing=True)
        self.manager = ocp.CheckpointManager(self.directory, item_names=("state", "data", "meta", "controller"),
                                             options=options)
        self._sealer: threading.Thread | None = None
        self._reported: set[int] = set()

    def latest_step(self) -> int | None:
        """The newest committed step (intact or not); None if there is none."""
        return self.manager.latest_step()

    def steps(self) -> list[int]:
        """Committed steps on disk, oldest first (Orbax renames a step folder into place when
        it is complete, so half-written saves are not listed)."""
        if not os.path.isdir(self.directory):
            return []
        return sorted(int(n) for n in os.listdir(self.directory)
                      if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, state: Any, data_iterator: Any, meta: dict, controller: Any = None) -> None:
        """Starts an asynchronous save; training goes on while it is written and sealed."""
        self._join_sealer()
        args = {"state": ocp.args.StandardSave(state),
                "meta": ocp.args.JsonSave({**meta, "format_version": FORMAT_VERSION, "step": int(step)})}
        if controller is not None:  # host values (each process holds the same): saved once, by process 0
            args["controller"] = ocp.args.StandardSave(jax.tree.map(np.asarray, controller))
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self.manager.save(step, args=ocp.args.Composite(**args), force=True)
        if jax.process_index() == 0:  # one process seals and prunes the shared folder
            self._sealer = threading.Thread(target=self._seal, args=(int(step),), name=f"seal-{step}", daemon=True)
            self._sealer.start()

    def _seal(self, step: int) -> None:
        """Waits for Orbax to commit ``step``, writes its manifest, then prunes older steps."""
        try:
            self.manager.wait_until_finished()
            if not os.path.isdir(self.step_dir(step)):
                return
            manifest.write_manifest(self.step_dir(step), step)
            for old in self.steps()[:-self.keep]:
                if old < step:
                    shutil.rmtree(self.step_dir(old), ignore_errors=True)
        except Exception as e:  # noqa: BLE001 — a failed seal leaves the step unsealed, never breaks training
            print(f"warning: could not write the checksum manifest of checkpoint step {step}: {e}", file=sys.stderr)

    def _join_sealer(self) -> None:
        if self._sealer is not None:
            self._sealer.join()
            self._sealer = None

    def verify(self, step: int) -> tuple[str, str]:
        """``(intact | unsealed | damaged, detail)`` of a committed step."""
        if not os.path.isdir(self.step_dir(step)):
            return manifest.DAMAGED, "its folder is missing"
        return manifest.verify(self.step_dir(step))

    def _report(self, step: int, detail: str) -> None:
        if step not in self._reported and jax.process_index() == 0:
            print(f"warning: checkpoint step {step} in {self.directory} is damaged ({detail}); falling back to "
                  "the previous intact step (the damaged folder is kept)", file=sys.stderr, flush=True)
        self._reported.add(step)

    def _candidates(self, step: int | None) -> list[int]:
        if step is not None:
            return [step]
        candidates = self.steps()[::-1]
        if not candidates:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        return candidates

    def _first_readable(self, step: int | None, read: Any) -> Any:
        """``read(step)`` on ``step`` or, when None, on the newest step that verifies and
        reads; damaged steps are reported once and skipped. Orbax signals a damaged item
        with a bare ``Exception``, so this is the one place that catches it."""
        problems = []
        for candidate in self._candidates(step):
            verdict, detail = self.verify(candidate)
            if verdict == manifest.DAMAGED:
                problems.append(f"step {candidate}: {detail}")
                if step is None:
                    self._report(candidate, detail)
                continue
            try:
                return candidate, read(candidate)
            except (ValueError, KeyError, TypeError) as e:
                if verdict == manifest.INTACT:  # the files are as written: a mismatch, not damage
                    raise CheckpointError(f"checkpoint {self.directory} step {candidate} does not match this "
                                          f"model/optimizer: {e}") from None
                detail = f"unreadable: {_summary(e)}"
            except Exception as e:  # noqa: BLE001 — Orbax's bare Exception for missing/truncated items
                detail = f"unreadable: {_summary(e)}"
            problems.append(f"step {candidate}: {detail}")
            if step is None:
                self._report(candidate, detail)
        if step is not None:
            raise CheckpointError(f"checkpoint {self.directory} {problems[0]} (damaged)")
        raise CheckpointError(f"no intact checkpoint in {self.directory} ({'; '.join(problems)})")

    def read_meta(self, step: int | None = None) -> dict:
        """The run metadata of ``step`` (default: the newest intact step)."""
        _, out = self._first_readable(step, lambda s: self.manager.restore(
            s, args=ocp.args.Composite(meta=ocp.args.JsonRestore())))
        return dict(out["meta"])

    def restore(self, abstract_state: Any, data_iterator: Any = None, step: int | None = None,
                abstract_controller: Any = None) -> Any:
        """Restores the train state (and the data iterator in place, if given) of ``step``
        (default: the newest intact step, which :attr:`restored_step` then names); with
        ``abstract_controller`` returns ``(state, controller_state)``."""
        args = {"state": ocp.args.StandardRestore(abstract_state)}
        if data_iterator is not None:
            args["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        if abstract_controller is not None:
            args["controller"] = ocp.args.StandardRestore(abstract_controller)
        self.restored_step, out = self._first_readable(
            step, lambda s: self.manager.restore(s, args=ocp.args.Composite(**args)))
        if abstract_controller is not None:
            return out["state"], out["controller"]
        return out["state"]

    def set_aside(self, after: int) -> list[int]:
        """Moves the (damaged) steps newer than ``after`` to ``<directory>/damaged/<step>``, so
        a resumed run can write those steps again; returns them. Nothing is deleted."""
        _sync_processes("birdie_jax_set_aside_list")  # every process lists before process 0 moves
        moved = [s for s in self.steps() if s > after]
        _sync_processes("birdie_jax_set_aside_listed")
        if moved and jax.process_index() == 0:
            os.makedirs(os.path.join(self.directory, DAMAGED_DIR), exist_ok=True)
            for s in moved:
                target = os.path.join(self.directory, DAMAGED_DIR, str(s))
                n = 1
                while os.path.exists(target):
                    target, n = os.path.join(self.directory, DAMAGED_DIR, f"{s}.{n}"), n + 1
                os.replace(self.step_dir(s), target)
        _sync_processes("birdie_jax_set_aside_moved")
        if moved:
            self.manager.reload()
        return moved

    def wait(self) -> None:
        self.manager.wait_until_finished()
        self._join_sealer()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self._join_sealer()
        self.manager.close()


def _summary(error: Exception, limit: int = 160) -> str:
    """The first sentence-ish of an Orbax/TensorStore error, for a one-line report."""
    text = (str(error).splitlines() or [""])[0].split(" See full")[0].strip() or type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _sync_processes(name: str) -> None:
    """A barrier across processes (a no-op for one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415

        multihost_utils.sync_global_devices(name)


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding structs of a pytree, the restore target Orbax expects."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def find_checkpoint_dir(path: str) -> str:
    """Accepts a run folder or its ``checkpoints`` subfolder; returns the latter."""
    if not path.strip():
        raise CheckpointError("the checkpoint path is empty; give a run folder")
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint path {path!r} does not exist")
    sub = os.path.join(path, "checkpoints")
    return sub if os.path.isdir(sub) else path
