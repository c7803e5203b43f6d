"""Smoke test of tools/repro_birdie.py: tiny sizes, a few steps, everything written under tmp_path."""

import importlib.util
import json
import os
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "repro_birdie.py"
TINY = ["--archs", "hawk", "--variants", "clm", "--seeds", "0", "--steps", "1", "--d-model", "16",
        "--layers", "1", "--state-dim", "8", "--seq-len", "64", "--batch-size", "2", "--entries", "2", "2",
        "--train-queries", "1", "1", "--queries", "1", "2", "--qa-length", "48", "--eval-examples", "1",
        "--infilling-items", "4"]


def _tool():
    spec = importlib.util.spec_from_file_location("repro_birdie", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_repro_birdie_end_to_end(tmp_path):
    tool = _tool()
    out, runs, page = tmp_path / "reproductions", tmp_path / "runs", tmp_path / "reproductions.md"
    docs_page = Path(tool.__file__).resolve().parents[1] / "docs" / "reproductions.md"
    before = docs_page.read_text() if docs_page.exists() else None
    args = [*TINY, "--out", str(out), "--runs", str(runs)]
    assert tool.main(args) == 0
    payload = json.loads((out / "birdie_results.json").read_text())
    (run,) = payload["runs"]
    assert (run["arch"], run["variant"], run["seed"]) == ("hawk", "clm", 0)
    assert run["prompt_format"] == {"as_prefix": False, "paradigm": None}  # NTP: a causal prompt
    assert set(run["phonebook_by_k"]) == {"1", "2"} and 0 <= run["phonebook"] <= 1
    assert payload["summary"]["hawk/clm"]["phonebook"]["seeds"] == [run["phonebook"]]
    assert payload["wall_seconds"] > 0 and len(payload["load_average"]) == 2 and payload["reused_runs"] == 0
    for png in ("birdie_phonebook.png", "birdie_summary.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    text = page.read_text()
    assert "<!-- repro_birdie:start -->" in text and "hawk NTP (clm)" in text
    assert "reproductions/birdie_phonebook.png" in text and payload["command"] in text
    assert (docs_page.read_text() if docs_page.exists() else None) == before  # docs/ untouched

    # A rerun reuses the finished runs (no training); --markdown-only rewrites the section from the JSON.
    assert tool.main(args) == 0
    again = json.loads((out / "birdie_results.json").read_text())
    assert again["reused_runs"] == 1 and again["runs"] == payload["runs"]
    page.write_text("# Reproductions\n")
    os.remove(out / "birdie_summary.png")
    assert tool.main([*args, "--markdown-only"]) == 0
    assert "hawk NTP (clm)" in page.read_text() and (out / "birdie_summary.png").exists()


def _row(variant, seed, phonebook):
    return {"arch": "hawk", "variant": variant, "seed": seed, "phonebook": phonebook, "squad_contains": 0.0,
            "squad_f1": 0.0, "infilling": 0.25, "final_loss": 1.0, "phonebook_by_k": {"1": phonebook}}


def test_orderings_compare_seed_means_and_each_seed():
    tool = _tool()
    runs = [_row("birdie", 0, 0.5), _row("birdie", 1, 0.2), _row("clm", 0, 0.1), _row("clm", 1, 0.3),
            _row("birdie_causal", 0, 0.5), _row("birdie_causal", 1, 0.2)]
    summary = tool.aggregate(runs, ["hawk"], ["birdie", "birdie_causal", "clm"])
    assert summary["hawk/birdie"]["phonebook"] == {"seeds": [0.5, 0.2], "mean": 0.35, "min": 0.2, "max": 0.5}
    checks = {(c["claim"], c["metric"]): c for c in tool.orderings(runs, summary, ["hawk"])}
    assert set(claim for claim, _ in checks) == {"Birdie > NTP", "bidirectional ≥ causal"}
    ntp = checks[("Birdie > NTP", "phonebook")]  # mean 0.35 > 0.2, but seed 1 reverses it (0.2 < 0.3)
    assert ntp["holds_on_mean"] and not ntp["holds_every_seed"] and abs(ntp["gap"] - 0.15) < 1e-12
    assert abs(ntp["paired_gaps"][0] - 0.4) < 1e-12 and abs(ntp["paired_gaps"][1] + 0.1) < 1e-12
    tie = checks[("bidirectional ≥ causal", "phonebook")]  # equal: holds for ≥
    assert tie["holds_on_mean"] and tie["holds_every_seed"]
    strict_tie = checks[("Birdie > NTP", "infilling")]  # equal: does not hold for >
    assert not strict_tie["holds_on_mean"] and not strict_tie["holds_every_seed"]
