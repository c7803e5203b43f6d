"""Hand mutation testing: break the code on purpose, one line at a time, and check a test fails.

Each mutation replaces one exact snippet of a source file, runs the tests chosen to catch
it (``pytest -x``) and restores the file (always, even on Ctrl-C). A mutation is
**killed** when pytest reports failing tests (exit status 1); a collection error or a
timeout does not count. The targets are the modules issue 16 asked about (objectives,
reward and critic, linear_scan, the sample layout) plus the pieces the same issue
added or re-checked.

Usage::

    python tools/mutation_check.py                 # all, writes docs/mutations.json and docs/mutations.md
    python tools/mutation_check.py --only reward   # those whose name contains "reward" (the others' results kept)
    python tools/mutation_check.py --list

Runs the tests of each mutation in a fresh process (about 10-60 s each on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


T_OBJ = "tests/test_objectives.py"
T_CTL = "tests/test_controller.py"
T_SCAN = "tests/test_linear_scan.py"
MUTATIONS = (
    # ---------------------------------------------------------------- objectives
    Mutation("objectives: n_m truncates instead of rounding", "birdie_jax/objectives/spans.py",
             "return min(length, max(1, round_half_up(rate * length)))", "return min(length, max(1, int(rate * length)))",
             (f"{T_OBJ}::test_span_corruption_exact_counts",), "n_m = max(1, round(r·L))"),
    Mutation("objectives: spans may touch the end (k cap off by one)", "birdie_jax/objectives/spans.py",
             "length - n_masked + 1))", "length - n_masked + 2))",
             (f"{T_OBJ}::test_span_corruption_exact_counts",), "k <= L − n_m + 1"),
    Mutation("objectives: infilling sentinel before its span", "birdie_jax/objectives/objectives.py",
             "labels = np.insert(x[mask], np.cumsum(c.lengths), sentinels)",
             "labels = np.insert(x[mask], np.cumsum(c.lengths) - c.lengths, sentinels)",
             (f"{T_OBJ}::test_infill_table1_format",), "labels = span_1 S_1 span_2 S_2 …"),
    Mutation("objectives: autoencoding never shuffles", "birdie_jax/objectives/objectives.py",
             "    if arm.shuffle:\n        units = [units[i]", "    if False:\n        units = [units[i]",
             (f"{T_OBJ}::test_autoencoding_shuffle_permutes_units",), "shuffle permutes the units"),
    Mutation("objectives: deshuffling ignores its fraction", "birdie_jax/objectives/objectives.py",
             "m = min(len(x), round_half_up(fraction * len(x)))", "m = len(x)",
             (f"{T_OBJ}::test_deshuffle_fraction_is_honoured",), "only round(p·L) positions move"),
    Mutation("objectives: PLM split from 4 instead of ceil(L/2)", "birdie_jax/objectives/objectives.py",
             "s = int(rng.integers(math.ceil(n / 2), n + 1))", "s = int(rng.integers(PLM_MIN_SIDE, n + 1))",
             (f"{T_OBJ}::test_plm_split_bounds",), "s ~ U{⌈L/2⌉..L}"),
    Mutation("objectives: selective-copying query on the wrong side", "birdie_jax/objectives/objectives.py",
             "parts = query + context if query_before else context + query",
             "parts = context + query if query_before else query + context",
             (f"{T_OBJ}::test_selective_copy_paper_example",), "paper A.5 example"),
    Mutation("objectives: validity filter without the min_len override", "birdie_jax/objectives/arms.py",
             "    return max(min_len, m)\n", "    return min_len\n",
             (f"{T_OBJ}::test_grid_counts_order_and_validity_filter",), "min_len' = max(min_len, m)"),
    Mutation("merging: infilling sample size without the sentinels in the labels", "birdie_jax/objectives/dedup.py",
             "return length + 2 * k if", "return length + k if",
             ("tests/test_arm_merging.py::test_sample_size_matches_the_built_samples",), "|prefix| + |labels|"),
    Mutation("merging: probability of a group not summed", "birdie_jax/objectives/dedup.py",
             "p[[j for j in range(len(arms)) if group_of[j] == i]].sum()", "p[i]",
             ("tests/test_arm_merging.py::test_fixed_weights_of_merged_arms_are_summed",), "mass summed"),
    # ---------------------------------------------------------------- reward and critic
    Mutation("reward: the paper's sign slip", "birdie_jax/controller/reward.py",
             "d = (new - old) / (old + 1e-8)", "d = (old - new) / (old + 1e-8)",
             (f"{T_CTL}::test_reward_test_vectors",), "a loss decrease is rewarded"),
    Mutation("reward: NaN not mapped to 0", "birdie_jax/controller/reward.py",
             "return jnp.where(jnp.isnan(r), 0.0, r) + 0.0", "return r + 0.0",
             (f"{T_CTL}::test_reward_test_vectors",), "NaN → 0"),
    Mutation("reward: class weights not 1/N_c", "birdie_jax/controller/reward.py",
             "return onehot @ (1.0 / jnp.maximum(onehot.sum(axis=0), 1.0))", "return onehot @ jnp.ones(onehot.shape[1])",
             (f"{T_CTL}::test_class_normalised_score_hand_case",), "Σ_c (1/N_c) Σ_i r̂_i"),
    Mutation("critic: one RMSNorm for both halves", "birdie_jax/controller/critic.py",
             '_rms_norm(action, params["action_norm"])', '_rms_norm(action, params["loss_norm"])',
             (f"{T_CTL}::test_critic_forward_matches_the_plain_reference",), "separate input norms"),
    Mutation("critic: input gate not squashed", "birdie_jax/controller/critic.py",
             "return f, jax.nn.sigmoid(i) * z, jax.nn.gelu(o)", "return f, i * z, jax.nn.gelu(o)",
             (f"{T_CTL}::test_critic_forward_matches_the_plain_reference",), "i = σ(W_i x̂)"),
    Mutation("critic: candidates continue from the wrong history row", "birdie_jax/controller/critic.py",
             "jnp.maximum(length - 1, 0), axis=2", "jnp.maximum(length - 2, 0), axis=2",
             (f"{T_CTL}::test_one_step_scoring_matches_the_plain_reference",), "read at position T"),
    Mutation("controller: action is the best candidate, not the top-8 mean", "birdie_jax/controller/selection.py",
             "action = jnp.mean(candidates[best], axis=0)", "action = candidates[best[0]]",
             (f"{T_CTL}::test_action_is_the_renormalised_mean_of_the_top_k",), "mean of the top 8"),
    # ---------------------------------------------------------------- linear_scan
    Mutation("linear_scan: reference ignores resets", "kernels/linear_scan/reference.py",
             "carried = jnp.where(reset_t[:, None], jnp.zeros_like(h_prev), h_prev)", "carried = h_prev",
             (T_SCAN, "tests/test_distributed.py::test_linear_scan_sharded_without_a_sequence_axis_is_linear_scan"),
             "h_t = b_t at a reset"),
    Mutation("linear_scan: scan ignores resets", "kernels/linear_scan/xla.py",
             "        a = jnp.where(reset[:, :, None], jnp.zeros_like(a), a)\n", "        a = a\n",
             (T_SCAN,), "every implementation equals the reference"),
    Mutation("linear_scan: chunk padding with a = 0", "kernels/linear_scan/xla.py",
             "a = jnp.concatenate([a, jnp.ones((batch, extra, channels), a.dtype)], axis=1)",
             "a = jnp.concatenate([a, jnp.zeros((batch, extra, channels), a.dtype)], axis=1)",
             (T_SCAN,), "identity padding steps"),
    Mutation("linear_scan: backward ignores resets", "kernels/linear_scan/xla.py",
             "        a32 = jnp.where(reset[:, :, None], jnp.zeros_like(a32), a32)\n", "        a32 = a32\n",
             (T_SCAN,), "gradients equal the reference's"),
    # ---------------------------------------------------------------- layout and leaks
    Mutation("layout: y[0] in BG's slot (no BG)", "birdie_jax/data/layout.py",
             "inputs = np.concatenate([prefix, np.asarray([bg_id], np.int32), labels[:-1]])",
             "inputs = np.concatenate([prefix, labels[:1], labels[:-1]])",
             (f"{T_OBJ}::test_layout_regions_positions_and_arm_ids",), "BG predicts y[0]"),
    Mutation("layout: BG in the prefix region", "birdie_jax/data/layout.py",
             "    region[:c] = REGION_PREFIX\n", "    region[:c + 1] = REGION_PREFIX\n",
             (f"{T_OBJ}::test_layout_regions_positions_and_arm_ids",), "region = 2 from BG on"),
    Mutation("packing: positions do not restart per segment", "birdie_jax/data/packing.py",
             'row["positions"][start:end] = np.arange(n, dtype=np.int32)',
             'row["positions"][start:end] = np.arange(start, end, dtype=np.int32)',
             (f"{T_OBJ}::test_layout_regions_positions_and_arm_ids",), "positions restart at 0"),
    Mutation("bidirectional: reverse carry crosses into the causal region", "birdie_jax/models/bidirectional.py",
             "    return causal | segment_end\n", "    return segment_end\n",
             ("tests/test_leaks.py::test_changing_a_label_slot_changes_no_earlier_logit[gated_ssm-all]",),
             "no future label leaks"),
    # ---------------------------------------------------------------- dependencies
    Mutation("dependencies: an imported package left undeclared", "pyproject.toml",
             '    "absl-py>=1.0,<3",', "",
             ("tests/test_dependencies.py::test_every_import_is_declared",), "declare what the code imports"),
    Mutation("dependencies: a declared package nothing imports", "pyproject.toml",
             '    "absl-py>=1.0,<3",', '    "absl-py>=1.0,<3",\n    "requests>=2,<3",',
             ("tests/test_dependencies.py::test_every_declared_requirement_is_imported",), "no dead dependency"),
    # ---------------------------------------------------------------- analyses
    Mutation("passkey: every cell scored as depth 0", "birdie_jax/evals/passkey.py",
             "accuracy[i, j] = np.mean(", "accuracy[i, 0] = np.mean(",
             ("tests/test_analysis.py::test_passkey_scores_each_cell",), "accuracy per (length, depth)"),
    Mutation("copy: accuracy over the output's length", "birdie_jax/evals/copy.py",
             "return sum(a == b for a, b in zip(output, target)) / len(target)",
             "return sum(a == b for a, b in zip(output, target)) / max(len(output), 1)",
             ("tests/test_analysis.py::test_copy_task_scores_characters",), "missing characters count as wrong"),
)


def run_one(m: Mutation, timeout: int) -> dict:
    """Applies ``m``, runs its tests, restores the file; the record of what happened."""
    path = os.path.join(ROOT, m.path)
    with open(path, encoding="utf-8") as f:
        original = f.read()
    if original.count(m.old) != 1:
        return {"name": m.name, "path": m.path, "status": "not applicable (snippet not found exactly once)"}
    start = time.perf_counter()
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m.old, m.new))
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                 env={**os.environ, "JAX_PLATFORMS": "cpu"})
            rc, tail = run.returncode, run.stdout.strip().splitlines()[-1:] or [""]
        except subprocess.TimeoutExpired:
            rc, tail = None, ["timeout"]
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(original)
    failed = [line.split(" ")[1] for line in (run.stdout.splitlines() if rc is not None else [])
              if line.startswith("FAILED ")]
    status = "killed" if rc == 1 else ("survived" if rc == 0 else f"error (pytest exit {rc})")
    return {"name": m.name, "path": m.path, "spec": m.why, "tests": list(m.tests), "status": status,
            "killed_by": failed[:1], "summary": tail[0], "seconds": round(time.perf_counter() - start, 1)}


def markdown(records: list[dict]) -> str:
    lines = ["# Mutation report", "",
             "Written by `python tools/mutation_check.py` (do not edit by hand; data in `docs/mutations.json`).",
             "Each row breaks one line of the code on purpose and runs the tests chosen to catch it;",
             "**killed** means a test failed. The machine (2 shared CPU cores) only sets the times.", "",
             "| mutation | file | what it breaks | status | failing test |", "|---|---|---|---|---|"]
    for r in records:
        test = r.get("killed_by", [""])[0] if r.get("killed_by") else ""
        lines.append(f"| {r['name']} | `{r['path']}` | {r.get('spec', '')} | {r['status']} | `{test}` |")
    killed = sum(r["status"] == "killed" for r in records)
    lines += ["", f"{killed} of {len(records)} mutations killed."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default=None, help="run the mutations whose name contains this")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--timeout", type=int, default=900, help="seconds per mutation run")
    p.add_argument("--json", default=os.path.join(ROOT, "docs", "mutations.json"))
    p.add_argument("--markdown", default=os.path.join(ROOT, "docs", "mutations.md"))
    args = p.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only is None or args.only in m.name]
    if args.list:
        for m in chosen:
            print(f"{m.name}  [{m.path}]  -> {' '.join(m.tests)}")
        return 0
    records = []
    for m in chosen:
        records.append(run_one(m, args.timeout))
        r = records[-1]
        print(f"{r['status']:>10}  {m.name}  ({r.get('seconds', 0)} s) {' '.join(r.get('killed_by', []))}",
              flush=True)
    if os.path.isfile(args.json):  # --only: keep the other mutations' last results
        with open(args.json, encoding="utf-8") as f:
            old = {r["name"]: r for r in json.load(f)["mutations"]}
        new = {r["name"]: r for r in records}
        records = [new.get(m.name, old.get(m.name)) for m in MUTATIONS if m.name in new or m.name in old]
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"mutations": records}, f, indent=1)
        f.write("\n")
    with open(args.markdown, "w", encoding="utf-8") as f:
        f.write(markdown(records))
    return 0 if all(r["status"] == "killed" for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
