"""tools/repro_pla_mqar.py end to end at tiny size, the state count it plots, and the config reload it relies on."""

import importlib.util
import json
import os

import pytest

from birdie_jax.config import config_from_dict, load_config
from birdie_jax.models import config_state_size

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools")
FEATURES = 1 + 16 + 16 * 16  # Taylor features of f = 16: 1, x, vec(x ⊗ x)


def _script():
    spec = importlib.util.spec_from_file_location("repro_pla_mqar", os.path.join(TOOLS, "repro_pla_mqar.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _harness(mixer: str, *extra: str):
    return load_config("jrt_rnn_tiny", f"model.layers=[gated_conv,{mixer}]", "model.n_layers=2", "model.d_model=32",
                       "model.num_heads=2", "model.head_dim=16", *extra)


def test_config_state_size_counts_the_mixer_states_by_hand():
    d, heads, head_dim = 32, 2, 16
    conv = 2 * (2 * d)  # the gated convolution keeps the last w - 1 = 2 inputs of its 2d-wide branch
    linear_attention = heads * FEATURES * head_dim + heads * FEATURES  # S and z
    assert config_state_size(_harness("based")) == conv + linear_attention
    assert config_state_size(_harness("pla", "mixture=jrt")) == conv + linear_attention  # PLA keeps Based's state
    assert config_state_size(_harness("transformer"), cache_len=40) == conv + 2 * 40 * heads * head_dim
    assert config_state_size(_harness("hawk", "model.state_dim=24")) == conv + 24 + 3 * 24  # h, conv window w=4
    d_inner, n_heads = 2 * d, 2 * d // 8
    mamba = n_heads * 8 * 4 + 3 * (d_inner + 2 * 4)  # H·P·N SSM state, conv window over x, B, C
    assert config_state_size(_harness("mamba2", "model.mamba_head_dim=8", "model.mamba_d_state=4")) == conv + mamba


def test_a_saved_config_reloads_embed_scale_none():
    """'none' is one of model.embed_scale's choices: a saved run must not come back with √d scaling."""
    cfg = load_config("jrt_rnn_tiny", "model.embed_scale=none")
    assert cfg.model.embed_scale == "none"
    assert config_from_dict(cfg.to_dict()).model.embed_scale == "none"


def test_script_runs_resumes_and_rewrites_only_its_section(tmp_path):
    script = _script()
    page = tmp_path / "page.md"
    page.write_text("# Reproductions\n\n<!-- other:start -->\nkept\n<!-- other:end -->\n")
    out = tmp_path / "out"
    argv = ["--models", "based", "pla", "--widths", "16", "--settings", "16:2", "--steps", "2", "--batch-size", "2",
            "--warmup", "1", "--train-examples", "16", "--test-examples", "4", "--out", str(out),
            "--runs", str(tmp_path / "runs"), "--page", str(page)]
    assert script.main(argv) == 0
    payload = json.loads((out / "pla_mqar.json").read_text())
    assert {r["model"] for r in payload["runs"]} == {"based", "pla"} and payload["runs_trained"] == 2
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in payload["runs"])
    assert payload["pla_vs_based"][0]["same_state"]
    assert payload["wall_s"] > 0 and payload["load_average"]["max"] >= payload["load_average"]["min"]
    assert (out / "pla_mqar.png").stat().st_size > 0
    assert sorted(os.listdir(out / "pla_mqar_runs")) == ["based_d16_T16_n2_s0.json", "pla_d16_T16_n2_s0.json"]
    text = page.read_text()
    assert "kept" in text and "<!-- repro_pla_mqar:start -->" in text and "| pla | 16 |" in text

    assert script.main(argv) == 0  # a rerun reuses both finished runs
    assert json.loads((out / "pla_mqar.json").read_text())["runs_reused"] == 2

    (out / "pla_mqar.png").unlink()
    assert script.main(["--markdown-only", "--out", str(out), "--page", str(page)]) == 0
    assert (out / "pla_mqar.png").exists() and page.read_text().count("<!-- repro_pla_mqar:start -->") == 1
    assert "Partial" not in page.read_text()

    stopped = json.loads((out / "pla_mqar.json").read_text())  # as left by a run stopped after 2 of 3 runs
    stopped["runs_planned"] = 3
    (out / "pla_mqar.json").write_text(json.dumps(stopped))
    assert script.main(["--markdown-only", "--out", str(out), "--page", str(page)]) == 0
    assert "Partial: 2 of 3 runs" in page.read_text()

    (out / "pla_mqar_more").mkdir()  # another budget run into OUT/pla_mqar_<label>/ gets its own subsection
    (out / "pla_mqar_more" / "pla_mqar.json").write_text((out / "pla_mqar.json").read_text())
    assert script.main(["--markdown-only", "--out", str(out), "--page", str(page)]) == 0
    assert "Another budget: `pla_mqar_more`" in page.read_text() and "PLA above Based in" in page.read_text()


def test_script_rejects_a_malformed_setting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _script().main(["--settings", "64x4"])
    assert exit_info.value.code == 2
    assert "T:n" in capsys.readouterr().err
