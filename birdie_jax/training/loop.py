"""The training loop: data → jitted steps → metrics, evaluation, checkpoints, plots.

``train(cfg)`` is the Python entry point behind ``birdie-jax train``. A run folder holds
``config.yaml``, ``metrics.jsonl``, ``loss.png``, ``tb/`` and ``checkpoints/``.
"""

import dataclasses
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from birdie_jax.config import Config, ModelConfig, config_to_yaml
from birdie_jax.data.corpus import corpus_documents, split_documents
from birdie_jax.data.pipeline import make_batch_dataset, make_batch_iterator
from birdie_jax.errors import BirdieError, CheckpointError, ConfigError
from birdie_jax.models import build_model
from birdie_jax.plotting import plot_loss_curve
from birdie_jax.tokenizer import build_tokenizer
from birdie_jax.data.streams import ContinuingStreams
from birdie_jax.data.stream_rows import StreamRows
from birdie_jax.training import initial_state as interventions
from birdie_jax.training.checkpoint import Checkpointer, abstract_like
from birdie_jax.training.metrics import MetricsWriter, Progress, read_metrics
from birdie_jax.training import history
from birdie_jax.training.nonfinite import NonFiniteGuard
from birdie_jax.training.runlock import RunLock
from birdie_jax.training.optim import learning_rate_schedule, make_optimizer
from birdie_jax.controller import BirdieController
from birdie_jax.controller.plot import plot_mixture
from birdie_jax.objectives import build_mixture
from birdie_jax.training.posttrain import adopt_source_model, calibrate_statistics, initialise_from
from birdie_jax.distributed import (batch_sharding, init_sharded, is_main_process, make_mesh, place_state,
                                    process_data_slice, shard_train_step, sharded_abstract, to_host)
from birdie_jax.training.step import class_metrics, init_train_state, train_step_fn
from birdie_jax.training.validation import Validator
from birdie_jax.data.sources import task_data
from birdie_jax.evals.training import RecallEvaluation
from birdie_jax.prompt_format import training_format


@dataclasses.dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: str
    step: int
    final_loss: float
    val_loss: float | None
    params: nnx.State
    model: nnx.Module


def run_meta(cfg: Config, tokenizer, mixture) -> dict:
    """Metadata stored with every checkpoint: enough to rebuild the model, check a resume
    and restore the mixture's live probabilities."""
    return {"config": cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "mixture": mixture.get_state()}


# Model fields that change how a step computes, never the parameters: a resume may change them.
RESUMABLE_MODEL_FIELDS = ("remat",)


def check_compatible(saved: dict, cfg: Config, tokenizer, where: str) -> None:
    """Refuses a checkpoint written for another model shape or tokenizer."""
    saved_model = saved.get("config", {}).get("model")
    ours = cfg.to_dict()["model"]
    if saved_model is None:
        raise CheckpointError(f"{where} holds no config metadata; it was not written by birdie_jax")
    defaults = dataclasses.asdict(ModelConfig())  # a field newer than the checkpoint was saved at its default
    diff = [k for k in ours if saved_model.get(k, defaults[k]) != ours[k] and not (k == "vocab_size" and ours[k] is None)
            and k not in RESUMABLE_MODEL_FIELDS]
    if diff:
        details = ", ".join(f"model.{k}: checkpoint {saved_model.get(k)!r} vs config {ours[k]!r}" for k in diff)
        raise CheckpointError(f"{where} was written by another config ({details})")
    if saved.get("tokenizer") != tokenizer.to_dict():
        raise CheckpointError(f"{where} was written with another tokenizer: {saved.get('tokenizer')}")


def train(cfg: Config, *, resume: bool = False, stop_after: int | None = None, quiet: bool = False,
          allow_config_change: bool = False) -> TrainResult:
    """Trains ``cfg`` and returns the final state.

    Args:
      cfg: the experiment.
      resume: continue from the newest intact checkpoint in ``cfg.train.run_dir`` (exactly:
        same parameters, optimizer state, data position, mixture, controller and RNG as an
        uninterrupted run); with no checkpoint yet, start from step 0 (one command serves
        the first start and every restart).
      stop_after: stop (after checkpointing) once this many steps are done, as if killed.
      quiet: no progress output.
      allow_config_change: let ``resume`` change the seed, data or mixture settings
        (refused otherwise; recorded in ``history.jsonl``).

    The run folder is locked (:class:`~birdie_jax.training.runlock.RunLock`) before
    anything is written in it; a run that fails before it starts leaves no new folder.
    """
    run_dir = os.path.abspath(cfg.train.run_dir)
    existed = {p: os.path.exists(p) for p in (run_dir, os.path.join(run_dir, "checkpoints"))}
    lock = _lock_run_dir(run_dir)
    try:
        return _train(cfg, resume=resume, stop_after=stop_after, quiet=quiet, allow_config_change=allow_config_change)
    finally:
        if lock is not None:
            lock.release()
        for path in sorted(existed, reverse=True):  # what this call created and left empty
            if not existed[path] and os.path.isdir(path) and not os.listdir(path) and is_main_process():
                os.rmdir(path)


def _lock_run_dir(run_dir: str) -> RunLock | None:
    """Process 0 locks the run folder; every process learns whether it succeeded."""
    lock, error = None, None
    if is_main_process():
        try:
            lock = RunLock(run_dir).acquire()
        except BirdieError as e:
            error = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415

        ok = bool(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not ok and error is None:
            error = BirdieError(f"run folder {run_dir} is locked by another run (reported by process 0)")
    if error is not None:
        raise error
    return lock


def _train(cfg: Config, *, resume: bool, stop_after: int | None, quiet: bool, allow_config_change: bool) -> TrainResult:
    if cfg.init_from:
        cfg = adopt_source_model(cfg)
    tcfg = cfg.train
    run_dir = os.path.abspath(tcfg.run_dir)
    tokenizer = build_tokenizer(cfg.data.tokenizer, num_sentinels=cfg.data.num_sentinels)
    if cfg.model.vocab_size is not None and cfg.model.vocab_size < tokenizer.vocab_size:
        raise ConfigError(f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's "
                          f"vocabulary ({tokenizer.vocab_size})")
    task = task_data(cfg, tokenizer)  # generated recall tasks / prompt-answer pairs (None: a text corpus)
    if task is None:
        documents = corpus_documents(cfg.data)
        train_docs, val_docs = split_documents(documents, cfg.data.validation_fraction, cfg.seed)
    else:
        if cfg.data.packing == "stream":
            raise ConfigError(f"data.packing=stream joins text documents into one stream; data.corpus="
                              f"{cfg.data.corpus} (format {cfg.data.format}) is laid out per example "
                              "(use data.packing=document)")
        train_docs, val_docs = task.train, task.validation
    recall = RecallEvaluation(cfg, tokenizer, val_docs if task is None else None)

    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"), keep=tcfg.keep_checkpoints)
    saved_meta, resume = _check_run_dir(checkpointer, cfg, tokenizer, run_dir, resume, allow_config_change, quiet)
    mixture = build_mixture(cfg.mixture, tokenizer, seq_len=cfg.data.seq_len)
    controller = None
    if cfg.mixture.name == "birdie" and task is None:
        controller = BirdieController(mixture.arm_classes, tcfg.steps, cfg.controller, seed=cfg.seed,
                                      arm_names=mixture.arm_names)
        mixture.set_probabilities(controller.initial_probabilities())
        controller.compile_in_background()  # overlaps the update's compile with setup (docs/benchmarks.md)

    mesh = make_mesh(cfg.mesh)
    shard, shards = process_data_slice(mesh, cfg.data.batch_size)
    _check_batch_layout(cfg, mesh, shards)
    init_cfg = cfg.initial_state
    tx = make_optimizer(tcfg)

    def initial_train_state():  # built inside jit by init_sharded: each device creates only its shard
        model = build_model(cfg, seed=cfg.seed, vocab_size=tokenizer.vocab_size)
        extras = interventions.init_extras(init_cfg, model.init_state(cfg.data.batch_size))
        return init_train_state(nnx.split(model)[1], tx, cfg.seed, extras)

    graphdef = nnx.graphdef(nnx.eval_shape(lambda: build_model(cfg, seed=cfg.seed, vocab_size=tokenizer.vocab_size)))
    abstract = jax.eval_shape(initial_train_state)
    interventions.check_supported(init_cfg.kind, jax.eval_shape(
        lambda: nnx.merge(graphdef, abstract["params"]).init_state(1)), cfg.model.architecture)
    iterator = _training_iterator(cfg, tokenizer, train_docs, task.transform if task else mixture, shard, shards)
    if resume:
        restored = checkpointer.restore(sharded_abstract(abstract, mesh), iterator, abstract_controller=(
            abstract_like(controller.state_dict()) if controller else None))
        state = restored[0] if controller else restored
        if controller:
            controller.load_state_dict(restored[1])
        if checkpointer.restored_step != saved_meta.get("step"):  # fell back past a step with readable metadata
            saved_meta = checkpointer.read_meta(checkpointer.restored_step)
        set_aside = checkpointer.set_aside(checkpointer.restored_step)
        if set_aside and is_main_process():
            history.record(run_dir, "fallback", checkpointer.restored_step, damaged_steps_set_aside=set_aside,
                           moved_to=os.path.join(checkpointer.directory, "damaged"))
        if "mixture" in saved_meta:
            mixture.set_state(saved_meta["mixture"])
    elif cfg.init_from:
        model = build_model(cfg, seed=cfg.seed, vocab_size=tokenizer.vocab_size)
        model, extras = initialise_from(cfg, model, interventions.init_extras(init_cfg, model.init_state(
            cfg.data.batch_size)))
        state = init_train_state(nnx.split(model)[1], tx, cfg.seed, extras)
        if init_cfg.kind == "fitted_noise" and init_cfg.calibration_batches and float(extras["stats"][0]["count"]) == 0:
            state["extras"]["stats"] = calibrate_statistics(cfg, tokenizer, train_docs, graphdef, state["params"],
                                                            extras["stats"])
        state = place_state(state, mesh)
    else:
        state = init_sharded(initial_train_state, mesh)
    start = int(state["step"])

    main = is_main_process()  # only process 0 writes run files, metrics and progress
    if main:
        os.makedirs(run_dir, exist_ok=True)
        kept = history.write_config(run_dir, config_to_yaml(cfg))
        changes = history.data_changes(saved_meta["config"], cfg.to_dict()) if resume else {}
        history.record(run_dir, "resume" if resume else "start", start, config_changes={
            k: list(v) for k, v in changes.items()}, previous_config=kept)
    guard = NonFiniteGuard(tcfg.on_nonfinite, saved_meta.get("nonfinite_skipped", 0) if resume else 0)
    writer = MetricsWriter(run_dir, tensorboard=tcfg.tensorboard, wandb_project=cfg.name if tcfg.wandb else None,
                           config=cfg.to_dict(), resume_step=start if resume else None, enabled=main)
    validator = Validator(cfg, tokenizer, val_docs, mixture, graphdef, place=lambda b: to_mesh(b, mesh),
                          sample_transform=task.transform if task else None)
    term_weights = None
    if cfg.mixture.name == "jrt":
        from birdie_jax.objectives.jrt import term_weights as jrt_term_weights  # noqa: PLC0415

        term_weights = jrt_term_weights(cfg.mixture.mlm_weight, cfg.mixture.mlm_normalized)
    train_step = shard_train_step(train_step_fn(graphdef, tx, learning_rate_schedule(tcfg),
                                                None if cfg.mixture.name in ("clm", "jrt") else mixture.class_lookup,
                                                init_cfg, tcfg.grad_accum, term_weights), abstract, mesh)
    progress = Progress(tcfg.steps, start, enabled=tcfg.progress and not quiet and main, log_every=tcfg.log_every)
    if start == 0:
        parameters = sum(x.size for x in jax.tree.leaves(abstract["params"]))
        state_floats = sum(x.size for x in jax.tree.leaves(jax.eval_shape(
            lambda: nnx.merge(graphdef, abstract["params"]).init_state(1))) if jnp.issubdtype(x.dtype, jnp.floating))
        progress.note(f"{cfg.model.architecture}: {parameters:,} parameters, state {state_floats:,} floats/sequence;"
                      f" mixture {cfg.mixture.name} ({len(mixture.arms)} distinct arms of {mixture.merged_count});"
                      f" mesh {dict(mesh.shape)}; run folder {run_dir}")

    last_loss, val_loss, pending = math.nan, None, None
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    end = tcfg.steps if stop_after is None else min(stop_after, tcfg.steps)

    def flush() -> None:  # log the step whose metrics are still on the device
        nonlocal pending, last_loss
        if pending is not None:
            last_loss = _log_step(writer, progress, pending[0], to_host(pending[1]), tokens_per_step, tcfg.log_every,
                                  guard)
            pending = None

    timer = {"validation_s": 0.0, "controller_s": 0.0}
    run_start = time.perf_counter()
    try:
        for step in range(start, end):
            batch = global_batch(next(iterator), mesh)
            state, metrics = train_step(state, batch)
            flush()  # the previous step's metrics, read while this one runs
            pending = (step + 1, metrics)
            done = step + 1
            general = validator.ntp_batches and tcfg.eval_every and (done % tcfg.eval_every == 0 or done == tcfg.steps)
            per_arm = validator.arm_batches and (controller.is_evaluation_step(done) if controller else general)
            if general or per_arm:
                flush()
                tick = time.perf_counter()
                val = validator.next_token(state["params"]) if general else {}
                if per_arm:
                    losses, per_class = validator.per_arm(state["params"])
                    val.update(per_class)
                    if controller:
                        timer["validation_s"] += time.perf_counter() - tick
                        tick = time.perf_counter()
                        mixture.set_probabilities(controller.observe(done, losses))
                        timer["controller_s"] += time.perf_counter() - tick
                        tick = time.perf_counter()
                        val.update(controller.metrics())
                timer["validation_s"] += time.perf_counter() - tick
                if general and recall.tasks:
                    val.update(recall(graphdef, state["params"]))
                val_loss = val.get("val_loss", val_loss)
                writer.write(done, val)
                if "val_loss" in val:
                    progress.note(f"step {done}: validation loss {val_loss:.4f}, accuracy {val['val_accuracy']:.3f}")
                progress.restart_clock()
            if (tcfg.checkpoint_every and done % tcfg.checkpoint_every == 0) or done in (tcfg.steps, end):
                flush()
                checkpointer.save(done, state, iterator, {**run_meta(cfg, tokenizer, mixture),
                                                          "nonfinite_skipped": guard.skipped},
                                  controller.state_dict() if controller else None)
                progress.restart_clock()
        flush()
        if end > start:  # where this session's wall time went (controller share: docs/benchmarks.md)
            wall = time.perf_counter() - run_start
            writer.write(end, {"time/wall_s": wall, **{f"time/{k}": v for k, v in timer.items()},
                               "time/controller_share": timer["controller_s"] / wall,
                               **({"time/controller_background_compile_s": controller.background_compile_s,
                                   "time/controller_compile_wait_s": controller.compile_wait_s}
                                  if controller else {})})
    finally:
        progress.close()
        checkpointer.close()
        writer.close()
    records = read_metrics(writer.path) if main else []
    if records:
        plot_loss_curve(records, os.path.join(run_dir, "loss.png"), title=f"{cfg.name}: {cfg.model.architecture}")
        if controller:
            plot_mixture(run_dir)
    final = nnx.merge(graphdef, state["params"])
    final.prompt_format = training_format(cfg)
    return TrainResult(run_dir, int(state["step"]), last_loss, val_loss, state["params"], final)


def _check_run_dir(checkpointer: Checkpointer, cfg: Config, tokenizer, run_dir: str, resume: bool,
                   allow_config_change: bool = False, quiet: bool = False) -> tuple[dict | None, bool]:
    """Refuses to overwrite a run, or to resume a different one (another model, or other data
    settings unless ``allow_config_change``); returns (the saved metadata, whether to resume):
    a resume with no checkpoint yet starts from step 0."""
    existing = checkpointer.latest_step()
    if existing is not None and not resume:
        raise CheckpointError(f"{run_dir} already holds checkpoints (latest step {existing}); pass --resume to "
                              "continue that run or choose another train.run_dir")
    if not resume:
        return None, False
    if existing is None:
        if not quiet and is_main_process():
            print(f"--resume: no checkpoint in {run_dir}/checkpoints yet; starting from step 0", flush=True)
        return None, False
    saved = checkpointer.read_meta()
    check_compatible(saved, cfg, tokenizer, f"{run_dir}/checkpoints")
    changes = history.data_changes(saved.get("config", {}), cfg.to_dict())
    if changes and not allow_config_change:
        raise CheckpointError(f"--resume with other data settings than the run in {run_dir} "
                              f"({history.describe_changes(changes)}); pass --allow-config-change to accept them "
                              "(recorded in history.jsonl) or restore the settings")
    return saved, True


def _training_iterator(cfg: Config, tokenizer, documents, mixture, shard: int, shards: int):
    """This process's batch stream (its rows of each global batch): packed samples of the
    mixture, or continuing streams for TBTT."""
    rows = cfg.data.batch_size // shards
    if cfg.data.process_split == "rows" and shards > 1:  # pack the global batch, keep this process's rows
        if cfg.initial_state.kind == "tbtt" or cfg.data.packing == "stream":
            raise ConfigError("data.process_split=rows is not available with initial_state=tbtt or "
                              "data.packing=stream")
        start = shard * rows
        return iter(make_batch_dataset(documents, tokenizer, seq_len=cfg.data.seq_len, batch_size=cfg.data.batch_size,
                                       seed=cfg.seed, shuffle=cfg.data.shuffle, num_workers=cfg.data.num_workers,
                                       sample_transform=mixture).map(
            lambda batch: {k: v[start:start + rows] for k, v in batch.items()}))
    if cfg.data.packing == "stream":
        if cfg.mixture.name != "clm":
            raise ConfigError(f"data.packing=stream cuts one document stream into next-token rows and needs "
                              f"mixture=clm; mixture={cfg.mixture.name} makes prefix samples per document "
                              "(use data.packing=document)")
        return StreamRows(documents, tokenizer, seq_len=cfg.data.seq_len, batch_size=rows, seed=cfg.seed,
                          per_row=cfg.initial_state.kind == "tbtt", shuffle=cfg.data.shuffle, shard_index=shard,
                          shard_count=shards)
    if cfg.initial_state.kind == "tbtt":
        if cfg.mixture.name != "clm":
            raise ConfigError(f"initial_state=tbtt with data.packing=document continues documents across batches "
                              f"and needs mixture=clm; mixture={cfg.mixture.name} needs prefixes per document "
                              "(use mixture=clm, or data.packing=stream with mixture=clm)")
        return ContinuingStreams(documents, tokenizer, seq_len=cfg.data.seq_len, batch_size=rows,
                                 seed=cfg.seed, shuffle=cfg.data.shuffle, shard_index=shard, shard_count=shards)
    return make_batch_iterator(documents, tokenizer, seq_len=cfg.data.seq_len, batch_size=rows,
                               seed=cfg.seed, shuffle=cfg.data.shuffle, num_workers=cfg.data.num_workers,
                               sample_transform=mixture, shard_index=shard, shard_count=shards)


def _check_batch_layout(cfg: Config, mesh, shards: int) -> None:
    """The global batch must split over processes, batch mesh axes and micro-batches."""
    sizes = dict(mesh.shape)
    rows = sizes.get("data", 1) * sizes.get("fsdp", 1)
    b = cfg.data.batch_size
    if b % rows or b % shards or (b // cfg.train.grad_accum) % rows or b % cfg.train.grad_accum:
        raise ConfigError(f"data.batch_size={b} must be a multiple of mesh.data × mesh.fsdp = {rows} and of "
                          f"train.grad_accum={cfg.train.grad_accum} (with each micro-batch a multiple of {rows})")
    if cfg.data.seq_len % sizes.get("sequence", 1):
        raise ConfigError(f"data.seq_len={cfg.data.seq_len} must be a multiple of mesh.sequence={sizes['sequence']}")


def global_batch(local: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """This process's rows → the global batch, rows over data × fsdp (time over sequence)."""
    return {k: jax.make_array_from_process_local_data(batch_sharding(mesh, ndim=np.ndim(v)), np.asarray(v))
            for k, v in local.items()}


def to_mesh(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
    """A batch every process holds whole (validation) → a global array sharded like training batches."""
    return {k: jax.make_array_from_callback(np.shape(v), batch_sharding(mesh, ndim=np.ndim(v)),
                                            lambda index, v=v: np.asarray(v)[index]) for k, v in batch.items()}


def _log_step(writer: MetricsWriter, progress: Progress, step: int, metrics: dict[str, Any],
              tokens: int, log_every: int, guard: NonFiniteGuard) -> float:
    skipped = guard.check(step, metrics)  # raises under train.on_nonfinite=stop
    if skipped:
        progress.note(f"step {step}: {skipped} is not finite; batch skipped ({guard.skipped} so far)")
        writer.write(step, {"nonfinite": skipped, "nonfinite_skipped": guard.skipped})
        return math.nan
    loss = float(metrics["loss"])
    progress.update(step, loss, tokens)
    if step % log_every == 0:
        scalars = {k: float(v) for k, v in metrics.items() if np.ndim(v) == 0 and k != "finite"}
        writer.write(step, scalars | class_metrics(metrics) | {"time": time.time()})
    return loss
