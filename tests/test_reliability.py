"""Runs that survive what clusters do to them: non-finite steps, damaged checkpoints, two
writers on one folder, restarts with the same command, and bad input at the edges."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from birdie_jax.cli import main
from birdie_jax.config import load_config
from birdie_jax.errors import BirdieError, CheckpointError
from birdie_jax.inference import load_checkpoint
from birdie_jax.training.checkpoint import Checkpointer, abstract_like
from birdie_jax.training.loop import train

SMALL = ("model.d_model=32", "model.n_layers=1", "model.state_dim=32", "data.seq_len=32", "data.batch_size=2",
         "train.warmup_steps=1", "train.eval_every=0", "train.checkpoint_every=1", "train.log_every=1",
         "train.tensorboard=false", "train.progress=false", "train.steps=3")


def _cfg(run_dir, *extra):
    return load_config("hawk_tiny", *SMALL, f"train.run_dir={run_dir}", *extra)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-step run with a checkpoint per step, started with --resume on an empty folder."""
    run_dir = tmp_path_factory.mktemp("rel") / "run"
    result = train(_cfg(run_dir), resume=True, quiet=True)
    return run_dir, result


# --------------------------------------------------------------------------- finite or nothing


def test_a_nonfinite_step_keeps_the_old_state_inside_the_step():
    from birdie_jax.models import build_model
    from birdie_jax.training.step import init_train_state, make_train_step

    cfg = _cfg("unused")
    model = build_model(cfg, seed=0, vocab_size=384)
    graphdef, params = nnx.split(model)
    tx = optax.adam(1e-2)
    step = make_train_step(graphdef, tx, lambda _: 1e-2)
    rows = np.arange(64, dtype=np.int32).reshape(2, 32) % 200
    batch = {"inputs": jnp.asarray(rows), "targets": jnp.asarray(rows), "segment_ids": jnp.ones((2, 32), jnp.int32)}
    clean = init_train_state(jax.tree.map(jnp.copy, params), tx, 0)  # the step donates its input
    poisoned = jax.tree.map(jnp.copy, params)
    poisoned["embed"]["embedding"][...] = poisoned["embed"]["embedding"][...].at[5].set(jnp.inf)
    state = init_train_state(poisoned, tx, 0)
    before = [x.copy() for x in _leaves({"p": state["params"], "o": state["opt_state"]})]
    after, metrics = step(state, batch)
    assert not bool(metrics["finite"]) and not np.isfinite(float(metrics["loss"]))
    for a, b in zip(_leaves({"p": after["params"], "o": after["opt_state"]}), before):
        np.testing.assert_array_equal(a, b)  # not applied: bit for bit the old state
    assert int(after["step"]) == 1
    before = _leaves(clean["params"])
    after, metrics = step(clean, batch)
    assert bool(metrics["finite"]) and any(not np.array_equal(a, b) for a, b in zip(_leaves(after["params"]), before))


def test_nan_at_step_k_stops_leaving_step_k_minus_1_latest_and_finite_then_skip_continues(tmp_path):
    cfg = _cfg(tmp_path, "train.learning_rate=1e6", "train.warmup_steps=0", "train.steps=8", "train.grad_clip=0")
    with pytest.raises(BirdieError, match=r"step \d+: .*(loss|gradient norm).* is not finite") as info:
        train(cfg, quiet=True)
    k = int(str(info.value).split()[1].rstrip(":"))
    assert k >= 2
    run = load_checkpoint(str(tmp_path))
    assert run.step == k - 1
    assert all(np.isfinite(x).all() for x in _leaves(nnx.state(run.model)))
    resumed = train(_cfg(tmp_path, "train.learning_rate=1e6", "train.warmup_steps=0", "train.steps=8",
                         "train.grad_clip=0", "train.on_nonfinite=skip"), resume=True, quiet=True)
    assert resumed.step == 8
    with open(tmp_path / "metrics.jsonl") as f:
        counts = [r["nonfinite_skipped"] for r in map(json.loads, f) if "nonfinite_skipped" in r]
    assert counts and counts == list(range(1, len(counts) + 1))
    run = load_checkpoint(str(tmp_path))
    assert run.step == 8 and all(np.isfinite(x).all() for x in _leaves(nnx.state(run.model)))


# --------------------------------------------------------------------------- verified checkpoints


def _files(step_dir):
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs if "manifest" not in f)


def _array_file(step_dir):
    return max((p for p in _files(step_dir) if f"{os.sep}d{os.sep}" in p), key=os.path.getsize)


def _truncate(step_dir):
    path = _array_file(step_dir)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip(step_dir):
    path = _array_file(step_dir)
    data = bytearray(open(path, "rb").read())
    for i in range(len(data) // 2, len(data) // 2 + 64):
        data[i] ^= 0xA5
    open(path, "wb").write(bytes(data))


def _unseal(step_dir):
    os.remove(os.path.join(step_dir, "birdie_manifest.json"))


CORRUPTIONS = {
    "truncated_array": _truncate,
    "missing_array": lambda d: os.remove(_array_file(d)),
    "flipped_bytes": _flip,
    "missing_state_metadata": lambda d: os.remove(os.path.join(d, "state", "_METADATA")),
    "unreadable_meta": lambda d: shutil.rmtree(os.path.join(d, "meta")),
    "truncated_array_without_manifest": lambda d: (_unseal(d), _truncate(d)),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_each_damage_falls_back_to_the_previous_step_with_one_line(run, tmp_path, capfd, kind):
    run_dir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    CORRUPTIONS[kind](str(copy / "checkpoints" / "3"))
    capfd.readouterr()
    loaded = load_checkpoint(str(copy))
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert loaded.step == 2
    assert len(warnings) == 1 and "step 3" in warnings[0] and "damaged" in warnings[0]
    assert os.path.isdir(copy / "checkpoints" / "3")  # never deleted


def test_resume_past_a_damaged_checkpoint_equals_the_uninterrupted_run(run, tmp_path):
    run_dir, full = run
    shutil.copytree(run_dir, tmp_path / "r")
    _flip(str(tmp_path / "r" / "checkpoints" / "3"))
    resumed = train(_cfg(tmp_path / "r"), resume=True, quiet=True)
    assert resumed.step == 3
    for a, b in zip(_leaves(resumed.params), _leaves(full.params)):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path / "r" / "checkpoints" / "damaged") == ["3"]
    with open(tmp_path / "r" / "history.jsonl") as f:
        events = [json.loads(line)["event"] for line in f]
    assert events[-2:] == ["fallback", "resume"]


def test_pruning_never_removes_the_last_sealed_checkpoint(tmp_path, monkeypatch):
    from birdie_jax.training import manifest

    state = {"w": jnp.arange(8.0)}
    ckpt = Checkpointer(str(tmp_path), keep=1)
    ckpt.save(1, state, None, {})
    ckpt.wait()
    monkeypatch.setattr(manifest, "write_manifest", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    ckpt.save(2, {"w": state["w"] + 1}, None, {})  # committed but never sealed
    ckpt.close()
    assert ckpt.steps() == [1, 2]
    assert ckpt.verify(1)[0] == "intact" and ckpt.verify(2)[0] == "unsealed"
    reader = Checkpointer(str(tmp_path), read_only=True)
    np.testing.assert_array_equal(np.asarray(reader.restore(abstract_like(state))["w"]), np.arange(8.0) + 1)
    reader.close()


# --------------------------------------------------------------------------- lock, auto-resume, config changes


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from birdie_jax.training.runlock import RunLock
    RunLock(sys.argv[1]).acquire()
    print("LOCKED", flush=True)
    time.sleep(120)
""")


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holder_is_stale(tmp_path, capsys):
    run_dir = tmp_path / "locked"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "LOCKED"
        code = main(["train", "--config", "hawk_tiny", f"train.run_dir={run_dir}"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1
        assert err.startswith("error: ") and f"locked by process {holder.pid} on " in err
        assert sorted(os.listdir(run_dir)) == [".lock"]  # the second process wrote nothing
    finally:
        holder.kill()
        holder.wait()
    from birdie_jax.training.runlock import RunLock

    with RunLock(str(run_dir)) as lock:  # the killed holder's lock file is stale
        assert json.loads(open(lock.path).read())["pid"] == os.getpid()
    assert not os.path.exists(run_dir / ".lock")


def test_resume_on_an_empty_folder_trains_from_step_zero(run):
    run_dir, result = run
    assert result.step == 3
    with open(run_dir / "history.jsonl") as f:
        first = json.loads(f.readline())
    assert (first["event"], first["step"]) == ("start", 0)


def test_resume_with_changed_data_is_refused_then_allowed_and_recorded(run, tmp_path):
    run_dir, _ = run
    shutil.copytree(run_dir, tmp_path / "r")
    before = sorted(os.listdir(tmp_path / "r"))
    with pytest.raises(CheckpointError, match=r"data.batch_size: 2 -> 4.*--allow-config-change"):
        train(_cfg(tmp_path / "r", "data.batch_size=4"), resume=True, quiet=True)
    assert sorted(os.listdir(tmp_path / "r")) == before  # a refused resume leaves nothing behind
    result = train(_cfg(tmp_path / "r", "data.shuffle=false", "train.steps=4"), resume=True, quiet=True,
                   allow_config_change=True)
    assert result.step == 4
    with open(tmp_path / "r" / "history.jsonl") as f:
        last = json.loads(f.readlines()[-1])
    assert last["event"] == "resume" and last["config_changes"] == {"data.shuffle": [True, False]}
    old = load_config(str(tmp_path / "r" / "config_versions" / "1.yaml"))
    assert old.data.shuffle and not load_config(str(tmp_path / "r" / "config.yaml")).data.shuffle


def test_resume_without_checkpoint_from_the_command_line_says_so(tmp_path, capsys):
    from birdie_jax.training import loop

    cfg = _cfg(tmp_path / "r")
    ckpt = Checkpointer(str(tmp_path / "r" / "checkpoints"))
    try:
        assert loop._check_run_dir(ckpt, cfg, None, str(tmp_path / "r"), True) == (None, False)
    finally:
        ckpt.close()
    out = capsys.readouterr().out
    assert "no checkpoint" in out and "starting from step 0" in out


# --------------------------------------------------------------------------- input edges


@pytest.mark.parametrize("override, message", [
    ("data.corpus=", "data.corpus is empty"),
    ("data.corpus=   ", "data.corpus is empty"),
    ("train.run_dir=", "train.run_dir is empty"),
    ("data.tokenizer=", "data.tokenizer is empty"),
    ("train.learning_rate=nan", "train.learning_rate must be a finite number"),
    ("train.learning_rate=.inf", "train.learning_rate must be a finite number"),
    ("model.rglru_c=-inf", "model.rglru_c must be a finite number"),
    ("train.on_nonfinite=ignore", "train.on_nonfinite must be one of"),
])
def test_empty_paths_and_nonfinite_numbers_are_one_line_errors(capsys, tmp_path, override, message):
    code = main(["train", "--config", "hawk_tiny", f"train.run_dir={tmp_path}/run", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not os.path.exists(tmp_path / "run")


def test_non_utf8_config_and_prompt_and_nan_temperature(capsys, tmp_path, run):
    run_dir, _ = run
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    cases = [(["train", "--config", str(bad)], "not UTF-8"),
             (["train", "--config", " "], "empty"),
             (["generate", "--checkpoint", str(run_dir), "--prompt", "caf\udce9"], "--prompt is not valid UTF-8"),
             (["generate", "--checkpoint", str(run_dir), "--prompt", "x", "--temperature", "nan"], "temperature"),
             (["generate", "--checkpoint", "", "--prompt", "x"], "checkpoint path is empty")]
    for argv, message in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1, (argv, err)
