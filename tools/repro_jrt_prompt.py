"""CPU-scale reproduction of JRT-Prompt (Just Read Twice, arXiv 2407.05483 §4, Table 1).

Causal recurrent models (Hawk, Mamba-2, Based) and a Transformer are trained with next-token
prediction on the same documents for the same tokens — ``data.corpus: mix``: the built-in
text beside SQuAD-style QA and FDA/SWDE-like key–value documents — then evaluated zero-shot
by the JRT-Prompt harness (``birdie-jax eval jrt``, :mod:`birdie_jax.evals.jrt`): *contains*
with the default prompt and with the JRT-Prompt (context read twice) on the ``squad`` and ``kv``
tasks, the same examples for both prompts. The evaluation examples come from their own seeds
(the harness's ``default_rng([seed, ...])``) over the built-in text each run held out, never
from the training documents' seeds.

Writes ``jrt_prompt.json`` (everything), ``jrt_prompt.png`` (default vs JRT per model and task)
and ``jrt_prompt_history.json`` (every run of the script: what was tried) into ``--out``, and its
own section of the ``reproductions.md`` beside ``--out``. Each (model, seed) run leaves its result
in ``--runs``: a rerun with the same settings reuses it.

    python tools/repro_jrt_prompt.py                       # the documented run (< 30 min, 2 cores)
    python tools/repro_jrt_prompt.py --steps 4000 --width 256 --seeds 0 1 2 --examples 200   # larger
    python tools/repro_jrt_prompt.py --markdown-only       # redraw the plot, rewrite the section
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from repro_common import LOADS, cached, log, write_json, write_section  # noqa: E402

import birdie_jax  # noqa: E402
from birdie_jax.data.mix import held_out_text  # noqa: E402
from birdie_jax.evals import Evaluator, run_task  # noqa: E402

SECTION = "repro_jrt_prompt"
PREFIX = "jrt_prompt"
LABELS = {"hawk": "Hawk", "mamba2": "Mamba-2", "based": "Based", "transformer": "Transformer"}
RECURRENT = ("hawk", "mamba2", "based")
TASK_LABELS = {"squad": "SQuAD-style QA", "kv": "key–value extraction (FDA/SWDE-like)"}
# The paper's Table 1 averages (contains, default → JRT-Prompt; spec jrt.md §4).
PAPER = {"Based 1.3B/50B": (40.3, 51.8), "Transformer++ 1.3B/50B": (47.8, 57.8), "Mamba-2 2.7B": (48.9, 58.8),
         "Mamba 1.4B": (39.3, 50.1), "GLA 1.3B": (36.7, 48.9)}


def model_overrides(model: str, width: int, layers: int) -> list[str]:
    """Config overrides for one architecture at ``width`` × ``layers`` (heads of width 32..64)."""
    heads = max(1, width // 64)
    common = [f"model.d_model={width}", f"model.n_layers={layers}", f"model.num_heads={heads}",
              f"model.head_dim={width // heads}"]
    per_model = {
        "hawk": ["model.architecture=hawk", f"model.state_dim={width}"],
        "mamba2": ["model.architecture=mamba2", "model.mamba_head_dim=32", "model.mamba_d_state=32",
                   "model.mamba_chunk=64"],
        # Based: gated short convolutions, causal Taylor linear attention (f = 16) and a short sliding
        # window, each followed by a SwiGLU MLP (the layout of configs/based_small.yaml, one period).
        "based": ["model.architecture=hybrid", "model.layers=[gated_conv+mlp, based+mlp, swa+mlp]",
                  "model.la_feature_dim=16", "model.swa_window=16", "model.mlp=swiglu", "model.mlp_multiple=8",
                  "model.init=normal", "model.norm_eps=1e-5", "model.embed_scale=false"],
        "transformer": ["model.architecture=transformer"],
    }
    if model not in per_model:
        raise SystemExit(f"error: unknown model {model!r}; choose from {', '.join(per_model)}")
    return common + per_model[model]


def mix_override(args) -> str:
    return "data.mix={" + ", ".join(f"{k}: {v}" for k, v in args.mix.items()) + "}"


def train_config(args, model: str, seed: int, run_dir: str):
    return birdie_jax.load_config(
        "hawk_tiny", *model_overrides(model, args.width, args.layers), "mixture=clm", "data.corpus=mix",
        mix_override(args), f"data.mix_qa_length={args.length}", f"data.mix_kv_length={args.length}",
        f"data.seq_len={args.seq_len}", f"data.batch_size={args.batch_size}", "data.validation_fraction=0.05",
        f"train.steps={args.steps}", f"train.learning_rate={args.lr}", f"train.warmup_steps={max(1, args.steps // 20)}",
        "train.tensorboard=false", "train.progress=false", "train.eval_every=0", "train.checkpoint_every=0",
        f"train.log_every={max(1, args.steps // 10)}", f"seed={seed}", f"train.run_dir={run_dir}", f"name={model}")


def unit_settings(args, model: str, seed: int) -> dict:
    """Everything one (model, seed) result depends on: its cache key."""
    keys = ("steps", "width", "layers", "batch_size", "seq_len", "lr", "length", "examples", "eval_seed", "mix")
    return {"model": model, "seed": seed, **{k: getattr(args, k) for k in keys}}


def unit_path(args, model: str, seed: int) -> str:
    settings = unit_settings(args, model, seed)
    digest = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    return os.path.join(args.runs, f"{model}_seed{seed}_{digest}")


def train_and_evaluate(args, model: str, seed: int) -> dict:
    """Trains one model and scores both prompts on both tasks."""
    run_dir = unit_path(args, model, seed)
    cfg = train_config(args, model, seed, run_dir)
    birdie_jax.train(cfg, quiet=True, resume=True)  # a run finished before this result was saved is not redone
    final_loss, train_s = _training_record(run_dir)
    run = birdie_jax.load_checkpoint(run_dir)
    tick = time.time()
    evaluator = Evaluator(run.model, run.tokenizer, batch_size=args.eval_batch, progress=False)
    result = run_task("jrt", evaluator, documents=held_out_text(run.config), num_examples=args.examples,
                      seed=args.eval_seed, length=args.length)
    return {**unit_settings(args, model, seed), "parameters": birdie_jax.count_parameters(run.model),
            "state_floats": _state_floats(run.model), "final_loss": final_loss,
            "tokens": args.steps * args.batch_size * args.seq_len, "train_seconds": round(train_s, 1),
            "eval_seconds": round(time.time() - tick, 1), "tasks": result["tasks"],
            "sample_outputs": result["examples"]}


def _training_record(run_dir: str) -> tuple[float, float]:
    """(last logged training loss, training wall seconds summed over the run's starts) from its metrics.jsonl."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    loss = [r["loss"] for r in records if "loss" in r][-1]
    return float(loss), float(sum(r["time/wall_s"] for r in records if "time/wall_s" in r))


def _state_floats(model) -> int | None:
    """Decode-state floats per sequence (None for the Transformer, whose cache grows with the context)."""
    if model.cfg.architecture == "transformer":
        return None
    return int(birdie_jax.state_size(model))


def summarize(units: list[dict], models: list[str], examples: int) -> dict:
    """Per model and task: mean default / JRT over seeds, their gain and its 95 % half-width."""
    table = {}
    for model in models:
        rows = [u for u in units if u["model"] == model]
        tasks = {}
        for task in TASK_LABELS:
            default = [next(t["default"] for t in u["tasks"] if t["task"] == task) for u in rows]
            twice = [next(t["twice"] for t in u["tasks"] if t["task"] == task) for u in rows]
            tasks[task] = {"default": float(np.mean(default)), "twice": float(np.mean(twice)),
                           "gain": float(np.mean(twice) - np.mean(default)),
                           "band": _band(default, twice, examples), "per_seed_default": default,
                           "per_seed_twice": twice}
        mean_default = float(np.mean([t["default"] for t in tasks.values()]))
        mean_twice = float(np.mean([t["twice"] for t in tasks.values()]))
        table[model] = {"tasks": tasks, "default": mean_default, "twice": mean_twice, "gain": mean_twice - mean_default,
                        "band": float(np.sqrt(np.mean([t["band"] ** 2 for t in tasks.values()]) / len(tasks))),
                        "parameters": rows[0]["parameters"], "state_floats": rows[0]["state_floats"],
                        "final_loss": float(np.mean([u["final_loss"] for u in rows]))}
    recurrent = [m for m in models if m in RECURRENT]
    return {"models": table,
            "recurrent_gain": float(np.mean([table[m]["gain"] for m in recurrent])) if recurrent else None,
            "transformer_gain": table["transformer"]["gain"] if "transformer" in table else None}


def _band(default: list[float], twice: list[float], examples: int) -> float:
    """95 % half-width of a gain: 1.96 standard errors of the difference of two proportions measured
    on ``examples`` examples per seed (unpaired: an upper bound for these paired prompts)."""
    n = examples * len(default)
    p, q = float(np.mean(default)), float(np.mean(twice))
    return float(1.96 * np.sqrt((p * (1 - p) + q * (1 - q)) / n))


def plot(summary: dict, path: str) -> None:
    """Grouped bars: for each model and task, default vs JRT-Prompt on the full 0–1 scale (min–max over
    seeds as error bars when there are several)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    models = list(summary["table"]["models"])
    fig, axes = plt.subplots(1, len(TASK_LABELS), figsize=(10, 4.2), dpi=110, sharey=True)
    x = np.arange(len(models))
    for ax, task in zip(np.atleast_1d(axes), TASK_LABELS):
        for i, (key, label) in enumerate((("default", "default prompt"), ("twice", "JRT-Prompt"))):
            rows = [summary["table"]["models"][m]["tasks"][task] for m in models]
            values = [r[key] for r in rows]
            spread = [[v - min(r[f"per_seed_{key}"]) for v, r in zip(values, rows)],
                      [max(r[f"per_seed_{key}"]) - v for v, r in zip(values, rows)]]
            several = len(rows[0][f"per_seed_{key}"]) > 1
            ax.bar(x + (i - 0.5) * 0.38, values, 0.38, label=label, yerr=spread if several else None, capsize=3)
        ax.set_xticks(x, [LABELS[m] for m in models])
        ax.set_title(TASK_LABELS[task])
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("contains (share of examples)")
    axes[0].legend()
    fig.suptitle("JRT-Prompt vs the default prompt, zero-shot (same training tokens per model)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _parse_mix(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"--mix takes NAME=WEIGHT,... (e.g. builtin=0.4,qa=0.3,kv=0.3), "
                                         f"got {text!r}") from None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["hawk", "mamba2", "based", "transformer"],
                   choices=list(LABELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (each model, each seed)")
    p.add_argument("--steps", type=int, default=500, help="training steps (every model)")
    p.add_argument("--width", type=int, default=128, help="d_model of every model")
    p.add_argument("--layers", type=int, default=3, help="layers of every model")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512, help="training row length (tokens = bytes)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (warmup 5 %%, cosine)")
    p.add_argument("--mix", type=_parse_mix, default={"builtin": 0.2, "qa": 0.4, "kv": 0.4},
                   help="training corpus shares of characters (data.mix), NAME=WEIGHT,...")
    p.add_argument("--length", type=int, default=48,
                   help="tokens of text per passage: training QA/key–value documents and evaluation alike")
    p.add_argument("--examples", type=int, default=48, help="evaluation examples per task")
    p.add_argument("--eval-seed", type=int, default=1, help="seed of the evaluation examples")
    p.add_argument("--eval-batch", type=int, default=16)
    p.add_argument("--out", default="docs/reproductions", help="JSON and PNG folder; the page is beside it")
    p.add_argument("--runs", default="runs/repro_jrt_prompt", help="run folders and per-run results (resume)")
    p.add_argument("--markdown-only", action="store_true", help="redraw the plot and rewrite the section from the JSON")
    args = p.parse_args(argv)
    if "based" in args.models and args.layers < 3:
        p.error("Based needs --layers >= 3 (gated convolution, linear attention, sliding window)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    paths = {name: os.path.join(args.out, f"{PREFIX}{suffix}")
             for name, suffix in (("json", ".json"), ("png", ".png"), ("history", "_history.json"))}
    page = os.path.join(os.path.dirname(os.path.abspath(args.out)), "reproductions.md")
    if args.markdown_only:
        with open(paths["json"]) as f:
            summary = json.load(f)
        plot(summary, paths["png"])
        write_section(SECTION, markdown(summary, _history(paths["history"]), args.out), page)
        return 0
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    units, reused_count = [], 0
    for seed in args.seeds:
        for model in args.models:
            path = f"{unit_path(args, model, seed)}.json"
            reused = os.path.exists(path)
            reused_count += reused
            if not reused:
                log(f"training and evaluating {LABELS[model]}, seed {seed}")
            unit = cached(path, lambda m=model, s=seed: train_and_evaluate(args, m, s))
            units.append(unit)
            scores = ", ".join(f"{t['task']} {t['default']:.2f} → {t['twice']:.2f}" for t in unit["tasks"])
            log(f"{LABELS[model]} seed {seed}{' (reused)' if reused else ''}: loss {unit['final_loss']:.3f}, {scores}")
    times = os.times()
    summary = {
        "command": "python tools/repro_jrt_prompt.py" + _flags(argv),
        "settings": {k: v for k, v in vars(args).items() if k != "markdown_only"},
        "machine": {"jax": __import__("jax").__version__, "cpu_count": os.cpu_count(), "platform": platform.platform()},
        "units": units, "table": summarize(units, args.models, args.examples), "paper": PAPER,
        "wall_seconds": round(time.time() - t0, 1), "cpu_seconds": round(times.user + times.system, 1),
        "reused_runs": reused_count,
        "run_seconds": round(sum(u["train_seconds"] + u["eval_seconds"] for u in units), 1),
        "load_average": [round(min(LOADS), 1), round(max(LOADS), 1)] if LOADS else None,
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    write_json(paths["json"], summary)
    history = _history(paths["history"]) + [_history_entry(summary)]
    write_json(paths["history"], history)
    plot(summary, paths["png"])
    write_section(SECTION, markdown(summary, history, args.out), page)
    log(f"done in {summary['wall_seconds']} s; wrote {args.out} and the {SECTION} section of {page}")
    return 0


def _flags(argv) -> str:
    argv = sys.argv[1:] if argv is None else argv
    return "".join(f" {a}" for a in argv)


def _history(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def _history_entry(summary: dict) -> dict:
    s, t = summary["settings"], summary["table"]
    return {"finished": summary["finished"], "command": summary["command"],
            "settings": {k: s[k] for k in ("models", "seeds", "steps", "width", "layers", "batch_size", "seq_len",
                                           "lr", "mix", "length", "examples", "eval_seed")},
            "models": {m: {"default": r["default"], "twice": r["twice"], "final_loss": r["final_loss"]}
                       for m, r in t["models"].items()},
            "recurrent_gain": t["recurrent_gain"], "transformer_gain": t["transformer_gain"],
            "wall_seconds": summary["wall_seconds"]}


def _sample_outputs(unit: dict) -> list[dict]:
    """A run's sample outputs; results saved by the first version of this script kept them under
    ``examples`` (the key of the number of evaluation examples in the settings)."""
    legacy = unit.get("examples")
    return unit.get("sample_outputs", legacy if isinstance(legacy, list) else [])


def _cell(text: str) -> str:
    """Text shown inside a markdown table cell (code span; pipes and backticks escaped)."""
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`" if text.strip() else "(empty)"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _gain(x: float, band: float) -> str:
    return f"{100 * x:+.1f} ± {100 * band:.1f}"


def verdict(summary: dict, with_samples: bool = False) -> list[str]:
    """Plain sentences on what matched the paper and what did not, from the numbers alone."""
    t = summary["table"]
    models = t["models"]
    lines = []
    for m in [m for m in models if m in RECURRENT]:
        r = models[m]
        shown = r["gain"] - r["band"] > 0
        lines.append(f"- **{LABELS[m]}**: JRT-Prompt {'helps' if shown else 'does not measurably help'} "
                     f"({_pct(r['default'])} → {_pct(r['twice'])}, gain {_gain(r['gain'], r['band'])} points"
                     + ("" if shown else "; the 95 % band includes 0 or the gain is negative") + ").")
    if "transformer" in models:
        r = models["transformer"]
        lines.append(f"- **Transformer**: {_pct(r['default'])} → {_pct(r['twice'])} "
                     f"(gain {_gain(r['gain'], r['band'])} points).")
    if t["recurrent_gain"] is not None and t["transformer_gain"] is not None:
        rg, tg = t["recurrent_gain"], t["transformer_gain"]
        lines.append(f"- Mean gain of the recurrent models {100 * rg:+.1f} points vs the Transformer's {100 * tg:+.1f}: "
                     + ("the recurrent models gain more, as the paper's argument predicts (a recurrent state must "
                        "choose what to keep before it sees the question)." if rg > tg else
                        "the recurrent models do **not** gain more than the Transformer here."))
        if "based" in models and models["transformer"]["default"] > 0:
            b, tr = models["based"], models["transformer"]
            lines.append(f"- Based with JRT-Prompt {'reaches' if b['twice'] >= tr['default'] else 'stays below'} the "
                         f"Transformer's default-prompt score ({_pct(b['twice'])} vs {_pct(tr['default'])}; the paper: "
                         "51.8 vs 47.8 at 1.3B/50B).")
    if all(r["default"] < 0.05 and r["twice"] < 0.05 for r in models.values()):
        lines.append("- **Not reproduced: no model recalls the answers at this budget with either prompt** (every score "
                     "under 5 %), so there is no effect to compare; the miniature is below the scale where the effect "
                     "can be seen (the paper: 360M–2.7B parameters trained on 10–50B tokens)."
                     + (" The outputs above show what the models produce instead." if with_samples else ""))
    return lines


def markdown(summary: dict, history: list[dict], out: str) -> str:
    """The section of docs/reproductions.md (every number comes from ``summary`` and ``history``)."""
    s, t, m = summary["settings"], summary["table"], summary["machine"]
    rel = os.path.basename(os.path.normpath(out))
    load = summary["load_average"]
    mix = ", ".join(f"{k} {v:g}" for k, v in s["mix"].items())
    lines = [
        "## JRT-Prompt: reading the context twice, zero-shot (JRT Table 1)", "",
        "Command (writes everything below):", "", f"    {summary['command']}", "",
        f"Measured: the {len(summary['units'])} (model, seed) runs' own training and evaluation time sums to "
        f"**{summary['run_seconds'] / 60:.1f} minutes** (per run in the JSON"
        + (f"; {summary['reused_runs']} of them were trained by an earlier invocation with the same settings, listed "
           "under *What was tried*, and reused here" if summary["reused_runs"] else "") +
        f"); this invocation took {summary['wall_seconds'] / 60:.1f} minutes of wall time and "
        f"{summary['cpu_seconds'] / 60:.1f} CPU-minutes on {m['cpu_count']} CPU cores (jax {m['jax']}), finished "
        f"{summary['finished']}. The machine was shared with other engineers' jobs (1-minute load average "
        f"{load[0]:.1f}–{load[1]:.1f} on {m['cpu_count']} cores while it ran), so these times are upper bounds of what "
        "the run needs alone. "
        f"JSON: [`{rel}/{PREFIX}.json`]({rel}/{PREFIX}.json) (every run's settings, losses and scores), "
        f"[`{rel}/{PREFIX}_history.json`]({rel}/{PREFIX}_history.json) (every run of the script).", "",
        "**Setup.** Each model is trained from scratch with next-token prediction (`mixture=clm`, causal) on the "
        f"same documents for the same tokens: `data.corpus: mix` with shares of characters {mix} (the built-in "
        "text; SQuAD-style passages with one inserted fact, the question and the answer; FDA/SWDE-like key–value "
        f"documents, prompt `{{doc}}. {{Key}}:` then the value), {s['length']} tokens (bytes) of text per passage, "
        f"{s['steps']} steps of {s['batch_size']} × {s['seq_len']} tokens, d_model {s['width']}, {s['layers']} "
        f"layers, peak learning rate {s['lr']:g}, seeds {', '.join(map(str, s['seeds']))}. Hawk: RG-LRU blocks with "
        "MLPs; Mamba-2: SSD blocks (state 32 per head); Based: gated short convolution, causal Taylor linear "
        "attention (f = 16) and a 16-token sliding window, each with a SwiGLU MLP; Transformer: RoPE attention "
        "with MLPs. Then `birdie-jax eval jrt` (`birdie_jax.evals.jrt`) on "
        f"{s['examples']} examples per task (seed {s['eval_seed']}, passages from the built-in text each run held "
        "out): the default prompt and the JRT-Prompt (`{question} {context}\\n{context} {cloze}` for QA, "
        "`Information about {Key}. {doc}.\\n{doc}. {Key}:` for key–value) on the same examples, greedy decoding "
        "to the first newline, metric *contains* (the answer appears in the output). The evaluation examples are "
        "drawn from seeds of their own, never the training documents'; nothing was tuned on them.", "",
        "| model | parameters | training loss | QA default → JRT | key–value default → JRT | mean default → JRT "
        "| gain (points) |",
        "|---|---|---|---|---|---|---|"]
    for model, r in t["models"].items():
        qa, kv = r["tasks"]["squad"], r["tasks"]["kv"]
        lines.append(f"| {LABELS[model]} | {r['parameters']:,} | {r['final_loss']:.3f} | {_pct(qa['default'])} → "
                     f"{_pct(qa['twice'])} | {_pct(kv['default'])} → {_pct(kv['twice'])} | {_pct(r['default'])} → "
                     f"{_pct(r['twice'])} | {_gain(r['gain'], r['band'])} |")
    if t["recurrent_gain"] is not None:
        lines += ["", f"Mean gain over the recurrent models: **{100 * t['recurrent_gain']:+.1f} points**"
                  + (f"; the Transformer: **{100 * t['transformer_gain']:+.1f} points**."
                     if t["transformer_gain"] is not None else ".")]
    samples = []
    for unit in [u for u in summary["units"] if u["seed"] == s["seeds"][0]]:
        for task in TASK_LABELS:
            e = next((x for x in _sample_outputs(unit) if x["task"] == task), None)
            if e is not None:
                samples.append(f"| {LABELS[unit['model']]} | …{_cell(e['prompt_end'][-40:])} | {_cell(e['answers'][0])} | "
                             f"{_cell(e['default'][:32])} | {_cell(e['twice'][:32])} |")
    if samples:
        lines += ["", "What the models answer (seed " + str(s["seeds"][0]) + ", the first evaluation example of each "
                  "task; the prompt's last characters, the gold answer, then the greedy output with the default prompt "
                  "and with JRT-Prompt; models without a row were evaluated before the outputs were recorded):", "",
                  "| model | prompt ends | gold | default prompt | JRT-Prompt |", "|---|---|---|---|---|", *samples]
    lines += ["", "Scores are *contains* in percent (mean over seeds); ± is the 95 % half-width of the gain from "
              f"{s['examples']} examples per task and seed (two-proportion standard error, an upper bound for these "
              "paired prompts). Error bars in the plot (with several seeds): min–max over seeds.", "",
              f"![default vs JRT-Prompt per model and task]({rel}/{PREFIX}.png)", "",
              "**The paper** (Table 1, six tasks, *contains*): JRT-Prompt adds **+11.0 ± 1.3 points** averaged over "
              "16 models (≈ +11.3 over the recurrent ones); averages default → JRT: "
              + "; ".join(f"{k} {a} → {b}" for k, (a, b) in summary["paper"].items())
              + ". So in the paper the Transformer++ gains too (+10.0), and Based with JRT-Prompt beats the "
              "Transformer++ with the default prompt.", "",
              "### What matched and what did not (as measured)", ""]
    lines += verdict(summary, bool(samples))
    if len(history) > 1:
        lines += ["", "### What was tried", "",
                  "Every run of the script so far (`" + f"{rel}/{PREFIX}_history.json" + "`); the table above is the run "
                  f"that wrote `{PREFIX}.json` (finished {summary['finished']}). Mean *contains* default → JRT per model, in percent:", "",
                  "| finished | steps | width × layers | batch × length | passage | examples | "
                  + " | ".join(LABELS[m] for m in LABELS) + " | recurrent gain | Transformer gain | minutes |",
                  "|---|---|---|---|---|---|" + "---|" * len(LABELS) + "---|---|---|"]
        for h in history:
            hs = h["settings"]
            cells = [f"{_pct(h['models'][m]['default'])} → {_pct(h['models'][m]['twice'])}" if m in h["models"]
                     else "—" for m in LABELS]
            rg = "—" if h["recurrent_gain"] is None else f"{100 * h['recurrent_gain']:+.1f}"
            tg = "—" if h["transformer_gain"] is None else f"{100 * h['transformer_gain']:+.1f}"
            lines.append(f"| {h['finished']} | {hs['steps']} | {hs['width']} × {hs['layers']} | {hs['batch_size']} × "
                         f"{hs['seq_len']} | {hs['length']} | {hs['examples']} | " + " | ".join(cells)
                         + f" | {rg} | {tg} | {h['wall_seconds'] / 60:.1f} |")
    sizes = [r["parameters"] for r in t["models"].values()]
    lines += ["", f"Scale: models of {min(sizes):,}–{max(sizes):,} parameters trained on "
              f"{s['steps'] * s['batch_size'] * s['seq_len'] / 1e6:.1f}M tokens on a shared 2-core CPU, against the paper's 360M–2.7B models trained on 10–50B tokens and evaluated on real FDA, SWDE, "
              "SQuAD, TriviaQA, NQ and Drop. Rerun with a larger budget by flags (`--steps`, `--width`, `--layers`, "
              "`--seeds`, `--models`, `--examples`; `--help`); `--markdown-only` rewrites this section from the "
              "JSON."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
