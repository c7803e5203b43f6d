"""Kill / corrupt / resume trials: does a run that a cluster keeps killing end where an
uninterrupted one does?

Each trial runs the same command a scheduler would rerun,
``birdie-jax train --config hawk_tiny --resume ...``, in a fresh run folder; it SIGKILLs the
process 1-3 times per trial (a quarter of the kills at a uniformly random time, start-up
included; the others 0-2 s after a new checkpoint is committed, i.e. mid-training), after
most kills damages the newest committed checkpoint while an older one exists (each kind in
turn: truncated array file, deleted array file, 64 flipped bytes, deleted
``state/_METADATA``, deleted ``meta`` item), then reruns the command until it exits 0.
The final parameters are compared bit for bit with an uninterrupted run's.

    nice -n 10 python tools/chaos.py --trials 10 --out docs/reliability/chaos.json

Results (one record per trial and a summary) go to ``--out`` as JSON; docs/reliability.md
quotes them.
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

RUN = ["model.d_model=32", "model.n_layers=1", "model.state_dim=32", "data.seq_len=32", "data.batch_size=4",
       "train.steps=12", "train.checkpoint_every=2", "train.keep_checkpoints=3", "train.eval_every=0",
       "train.warmup_steps=2", "train.log_every=1", "train.tensorboard=false", "train.progress=false"]
CORRUPTIONS = ("truncate_array", "delete_array", "flip_bytes", "delete_state_metadata", "delete_meta")


def command(run_dir: str) -> list[str]:
    return [sys.executable, "-m", "birdie_jax.cli", "train", "--config", "hawk_tiny", "--resume",
            f"train.run_dir={run_dir}", *RUN]


def committed_steps(run_dir: str) -> list[int]:
    folder = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(folder):
        return []
    return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def _array_files(step_dir: str) -> list[str]:
    return sorted(os.path.join(r, f) for r, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs
                  if f"{os.sep}d{os.sep}" in os.path.join(r, f))


def corrupt(step_dir: str, kind: str, rng: random.Random) -> str:
    """Damages one item of a committed step folder; returns what was done."""
    arrays = _array_files(step_dir)
    target = rng.choice(arrays) if arrays else None
    if kind == "truncate_array" and target:
        with open(target, "r+b") as f:
            f.truncate(os.path.getsize(target) // 2)
    elif kind == "delete_array" and target:
        os.remove(target)
    elif kind == "flip_bytes" and target:
        data = bytearray(open(target, "rb").read())
        start = rng.randrange(max(1, len(data) - 64))
        for i in range(start, min(len(data), start + 64)):
            data[i] ^= 0xFF
        open(target, "wb").write(bytes(data))
    elif kind == "delete_state_metadata":
        os.remove(os.path.join(step_dir, "state", "_METADATA"))
    elif kind == "delete_meta":
        shutil.rmtree(os.path.join(step_dir, "meta"))
    else:
        return "none"
    return kind


def run_once(run_dir: str, kill: tuple[str, float] | None) -> dict:
    """One launch of the command, SIGKILLed per ``kill`` unless it ends first: ``("time", s)``
    kills ``s`` seconds after the start (start-up included); ``("checkpoint", s)`` kills ``s``
    seconds after the next checkpoint is committed (so most kills land mid-training)."""
    start = time.perf_counter()
    before = committed_steps(run_dir)
    proc = subprocess.Popen(command(run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "JAX_PLATFORMS": "cpu"})
    killed = False
    deadline = None if kill is None else (start + kill[1] if kill[0] == "time" else None)
    while kill is not None and proc.poll() is None:
        now = time.perf_counter()
        if deadline is None and committed_steps(run_dir) not in ([], before):
            deadline = now + kill[1]
        if deadline is not None and now >= deadline:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    return {"killed": killed, "kill": list(kill) if kill else None, "seconds": round(time.perf_counter() - start, 1),
            "exit": proc.returncode,
            "fallback_warnings": [line for line in err.splitlines() if line.startswith("warning: checkpoint")],
            "started_fresh": "starting from step 0" in out, "errors": [line for line in err.splitlines()
                                                                      if line.startswith("error:")]}


def final_params(run_dir: str) -> list[np.ndarray]:
    import jax  # noqa: PLC0415 — only the parent compares; the runs are subprocesses
    from flax import nnx  # noqa: PLC0415

    from birdie_jax.inference import load_checkpoint  # noqa: PLC0415

    run = load_checkpoint(run_dir)
    assert run.step == 12, run.step
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(run.model))]


def trial(index: int, run_dir: str, reference: list[np.ndarray], full_seconds: float, rng: random.Random,
          damage: list[int]) -> dict:
    kills = rng.randint(1, 3)
    launches, corruptions = [], []
    for _ in range(kills):
        before = committed_steps(run_dir)
        kill = (("time", rng.uniform(0.0, 1.0) * full_seconds) if rng.random() < 0.25
                else ("checkpoint", rng.uniform(0.0, 2.0)))
        launch = run_once(run_dir, kill)
        launch["steps_before"] = before
        launch["steps_after"] = steps = committed_steps(run_dir)
        launches.append(launch)
        if not launch["killed"]:
            break
        if len(steps) >= 2 and rng.random() < 0.8:  # damage the newest step while an older one exists
            step_dir = os.path.join(run_dir, "checkpoints", str(steps[-1]))
            sealed = os.path.exists(os.path.join(step_dir, "birdie_manifest.json"))
            kind = corrupt(step_dir, CORRUPTIONS[damage[0] % len(CORRUPTIONS)], rng)  # every kind in turn
            damage[0] += 1
            corruptions.append({"step": steps[-1], "kind": kind, "sealed": sealed})
    for _ in range(5):  # then the same command until it finishes
        if launches and launches[-1]["exit"] == 0:
            break
        before = committed_steps(run_dir)
        launch = run_once(run_dir, None)
        launch["steps_before"], launch["steps_after"] = before, committed_steps(run_dir)
        launches.append(launch)
    finished = launches[-1]["exit"] == 0
    identical = finished and all(np.array_equal(a, b) for a, b in zip(final_params(run_dir), reference))
    return {"trial": index, "launches": launches, "corruptions": corruptions, "finished": finished,
            "bit_identical": bool(identical)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/reliability/chaos.json")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    work = tempfile.mkdtemp(prefix="birdie_chaos_")
    try:
        reference_run = run_once(os.path.join(work, "reference"), None)
        if reference_run["exit"] != 0:
            raise SystemExit(f"the uninterrupted run failed: {reference_run['errors']}")
        reference = final_params(os.path.join(work, "reference"))
        trials, damage = [], [0]
        for i in range(args.trials):
            trials.append(trial(i, os.path.join(work, f"trial{i}"), reference, reference_run["seconds"], rng, damage))
            print(json.dumps({k: trials[-1][k] for k in ("trial", "finished", "bit_identical")}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    launches = [launch for t in trials for launch in t["launches"]]
    summary = {
        "trials": len(trials),
        "finished": sum(t["finished"] for t in trials),
        "bit_identical": sum(t["bit_identical"] for t in trials),
        "launches": len(launches),
        "kills": sum(launch["killed"] for launch in launches),
        "kills_before_any_checkpoint": sum(launch["killed"] and not launch["steps_after"] for launch in launches),
        "started_fresh_with_resume": sum(launch["started_fresh"] for launch in launches),
        "corruptions": {kind: sum(c["kind"] == kind for t in trials for c in t["corruptions"])
                        for kind in CORRUPTIONS},
        "corrupted_unsealed": sum(not c["sealed"] for t in trials for c in t["corruptions"]),
        "fallback_warnings": sum(len(launch["fallback_warnings"]) for launch in launches),
        "uninterrupted_seconds": reference_run["seconds"],
    }
    result = {"code": commit or "unknown", "command": " ".join(["birdie-jax train --config hawk_tiny --resume train.run_dir=RUN", *RUN]),
              "seed": args.seed, "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other "
              "jobs (run under nice)", "summary": summary, "trials": trials}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
