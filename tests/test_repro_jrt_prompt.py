"""Smoke test of tools/repro_jrt_prompt.py: tiny sizes, a few steps, everything written under tmp_path."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def repro():
    spec = importlib.util.spec_from_file_location("repro_jrt_prompt", os.path.join(ROOT, "tools", "repro_jrt_prompt.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_end_to_end_resumes_and_rewrites_only_its_section(repro, tmp_path, capsys):
    page = tmp_path / "reproductions.md"
    page.write_text("# Reproductions\n\n<!-- repro_birdie:start -->\nother script\n<!-- repro_birdie:end -->\n")
    docs_page = os.path.join(ROOT, "docs", "reproductions.md")
    docs_before = open(docs_page).read()
    out = tmp_path / "repro"
    argv = ["--models", "hawk", "--steps", "2", "--width", "32", "--layers", "1", "--seq-len", "64",
            "--batch-size", "2", "--length", "16", "--examples", "2", "--eval-batch", "2",
            "--out", str(out), "--runs", str(tmp_path / "runs")]
    assert repro.main(argv) == 0
    summary = json.loads((out / "jrt_prompt.json").read_text())
    (unit,) = summary["units"]
    assert unit["model"] == "hawk" and unit["steps"] == 2 and unit["tokens"] == 2 * 2 * 64
    assert {t["task"] for t in unit["tasks"]} == {"squad", "kv"}
    assert all(0 <= t[k] <= 1 for t in unit["tasks"] for k in ("default", "twice"))
    assert {e["task"] for e in unit["sample_outputs"]} == {"squad", "kv"} and unit["train_seconds"] > 0
    row = summary["table"]["models"]["hawk"]
    assert row["gain"] == pytest.approx(row["twice"] - row["default"])
    assert summary["wall_seconds"] > 0 and summary["load_average"] and summary["reused_runs"] == 0
    assert (out / "jrt_prompt.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "other script" in text and "<!-- repro_jrt_prompt:start -->" in text
    assert "python tools/repro_jrt_prompt.py --models hawk --steps 2" in text and "| Hawk |" in text

    # A rerun with the same settings reuses the finished run; the history keeps both.
    assert repro.main(argv) == 0
    again = json.loads((out / "jrt_prompt.json").read_text())
    assert again["reused_runs"] == 1 and again["units"] == summary["units"]
    assert len(json.loads((out / "jrt_prompt_history.json").read_text())) == 2
    assert "What was tried" in page.read_text()

    (out / "jrt_prompt.png").unlink()
    assert repro.main(argv + ["--markdown-only"]) == 0
    assert (out / "jrt_prompt.png").exists()
    assert open(docs_page).read() == docs_before  # docs/ untouched


def test_bad_flags_are_one_line_errors(repro, capsys):
    with pytest.raises(SystemExit) as e:
        repro.parse_args(["--models", "based", "--layers", "2"])
    assert e.value.code == 2 and "Based needs --layers >= 3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        repro.parse_args(["--mix", "builtin:1"])
    assert e.value.code == 2 and "--mix takes NAME=WEIGHT" in capsys.readouterr().err
