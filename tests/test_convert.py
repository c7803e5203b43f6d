"""birdie_jax safetensors folders: bit-identical round trips for every architecture, run folders
that load, and one clear error (nothing written) for each kind of bad input."""

import json
import os

import numpy as np
import pytest
from conftest import ALL_ARCHITECTURES, tiny_lm, tiny_model_config
from flax import nnx

pytest.importorskip("safetensors", reason="conversion needs the torch extra (pip install -e .[torch]; .ci/run does)")

from birdie_jax.cli import main  # noqa: E402
from birdie_jax.convert import export, import_checkpoint, read_folder  # noqa: E402
from birdie_jax.errors import CheckpointError  # noqa: E402
from birdie_jax.inference import LoadedRun, load_checkpoint  # noqa: E402
from birdie_jax.models import LanguageModel  # noqa: E402
from birdie_jax.tokenizer import build_tokenizer  # noqa: E402

BYTES = build_tokenizer("byte")
SETTINGS = [(arch, "none") for arch in ALL_ARCHITECTURES] + [("gated_ssm", "alternate"), ("hawk", "all"),
                                                              ("transformer", "alternate")]


def _run(model: LanguageModel, step: int = 7) -> LoadedRun:
    return LoadedRun(None, BYTES, model, step)


def _model(arch: str, bidirectional: str = "none", **overrides) -> LanguageModel:
    if not overrides:
        return tiny_lm(arch, bidirectional)  # shared with the other test files
    cfg = tiny_model_config(arch, vocab_size=384, bidirectional=bidirectional, **overrides)
    return LanguageModel(cfg, rngs=nnx.Rngs(params=5))


def _params(model) -> dict[str, np.ndarray]:
    from birdie_jax.convert.params import named_parameters

    return named_parameters(model)


def _assert_identical(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name].view(np.uint8), b[name].view(np.uint8)), name  # bit for bit


@pytest.mark.parametrize("arch, bidirectional", SETTINGS)
def test_safetensors_round_trip_is_bit_identical(tmp_path, arch, bidirectional):
    model = _model(arch, bidirectional)
    out = export(_run(model), str(tmp_path / "st"))
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    assert config["format"] == "birdie_jax" and config["model"]["architecture"] == arch
    assert config["tokenizer"]["special_ids"]["[BG]"] == BYTES.special.bg
    assert config["parameters"]["embed.embedding"]["shape"] == [384, 32]
    back = read_folder(out)
    assert back.config == model.cfg
    _assert_identical(_params(model), back.tensors)


def test_bfloat16_parameters_round_trip(tmp_path):
    model = _model("gated_ssm", param_dtype="bfloat16")
    back = read_folder(export(_run(model), str(tmp_path / "st")))
    assert back.tensors["embed.embedding"].dtype.name == "bfloat16"
    _assert_identical(_params(model), back.tensors)


def test_cli_import_then_export_gives_a_loadable_run(tmp_path, capsys):
    model = _model("hawk", "alternate")
    export(_run(model), str(tmp_path / "st"))
    assert main(["import", "--from", "safetensors", str(tmp_path / "st"), "--out", str(tmp_path / "run")]) == 0
    run = load_checkpoint(str(tmp_path / "run"))
    assert run.config.model == model.cfg and run.step == 0
    _assert_identical(_params(model), _params(run.model))
    assert main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "exports" / "again")]) == 0
    _assert_identical(_params(model), read_folder(str(tmp_path / "exports" / "again")).tensors)
    assert "wrote" in capsys.readouterr().out


def _cli_error(capsys, *argv) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def _nothing_written(parent, name: str) -> bool:
    return not any(entry.startswith(name) or entry.startswith(f".{name}") for entry in os.listdir(parent))


@pytest.fixture(scope="module")
def saved_runs(tmp_path_factory):
    """Run folders of a bidirectional Hawk and a Gated SSM (imported from safetensors exports)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, model in {"bidirectional_hawk": _model("hawk", "alternate"), "gated_ssm": _model("gated_ssm")}.items():
        export(_run(model), str(root / f"{name}_st"))
        runs[name] = import_checkpoint(str(root / f"{name}_st"), str(root / name))
    return runs


def test_export_errors_write_nothing(capsys, tmp_path, saved_runs):
    err = _cli_error(capsys, "export", "--checkpoint", saved_runs["bidirectional_hawk"], "--format", "hf",
                     "--out", str(tmp_path / "hf"))
    assert "model.bidirectional='alternate' has no Hugging Face equivalent" in err
    err = _cli_error(capsys, "export", "--checkpoint", saved_runs["gated_ssm"], "--format", "hf",
                     "--out", str(tmp_path / "new" / "hf"))
    assert "gated_ssm has no Hugging Face equivalent" in err
    assert _nothing_written(tmp_path, "hf") and _nothing_written(tmp_path, "new")
    (tmp_path / "taken").mkdir()
    err = _cli_error(capsys, "export", "--checkpoint", saved_runs["gated_ssm"], "--out", str(tmp_path / "taken"))
    assert "already exists" in err


def test_import_errors_write_nothing(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    err = _cli_error(capsys, "import", str(tmp_path / "empty"), "--out", str(tmp_path / "run"))
    assert "has no config.json" in err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "model_type 'llama' has no birdie_jax equivalent" in _cli_error(
        capsys, "import", str(foreign), "--out", str(tmp_path / "run"))
    griffin = tmp_path / "griffin"
    griffin.mkdir()
    for fields, message in [({"attention_bias": True}, "attention_bias=true (biases on q/k/v) has no equivalent"),
                            ({"block_types": ["attention"]}, "every block is attention"),
                            ({"attention_window_size": 1}, "attention_window_size=1"),
                            ({"block_types": ["recurrent", "mlp"]}, "block_types ['recurrent', 'mlp']")]:
        (griffin / "config.json").write_text(json.dumps({"model_type": "recurrent_gemma", "num_hidden_layers": 3,
                                                         "block_types": ["recurrent", "recurrent", "attention"],
                                                         **fields}))
        assert message in _cli_error(capsys, "import", "--from", "hf", str(griffin), "--out", str(tmp_path / "run"))
    assert _nothing_written(tmp_path, "run")


def test_released_griffin_config_maps_to_the_layer_pattern():
    """recurrentgemma-2b's config.json (flat rope fields; theta and rotary fraction changed so that they count)."""
    from birdie_jax.convert.hf_recurrentgemma import config_from_hf

    released = {"model_type": "recurrent_gemma", "num_hidden_layers": 26, "hidden_size": 2560, "vocab_size": 256000,
                "intermediate_size": 15360, "num_attention_heads": 10, "num_key_value_heads": 1, "lru_width": 2560,
                "attention_window_size": 2048, "block_types": ["recurrent", "recurrent", "attention"],
                "rope_theta": 5000.0, "partial_rotary_factor": 0.25, "attention_bias": False}
    cfg = config_from_hf(released, "config.json")
    assert cfg.architecture == "hybrid" and cfg.layers == ("hawk+mlp", "hawk+mlp", "swa+mlp")
    assert [cfg.layer_mixer(i) for i in (0, 1, 2, 23, 24, 25)] == ["hawk", "hawk", "swa", "swa", "hawk", "hawk"]
    assert (cfg.num_heads, cfg.head_dim, cfg.kv_heads, cfg.rotary_dim, cfg.swa_window, cfg.rope_base) == (
        10, 256, 1, 64, 2047, 5000.0)
    assert cfg.attention_out_bias and cfg.rglru_heads == 10 and cfg.mlp_hidden == 7680


def test_shape_mismatch_names_the_tensor(capsys, tmp_path):
    from birdie_jax.convert.files import read_tensors, write_tensors

    folder = tmp_path / "st"
    export(_run(_model("gated_ssm")), str(folder))
    tensors = read_tensors(str(folder))
    tensors["blocks.1.mixer.out_proj.kernel"] = tensors["blocks.1.mixer.out_proj.kernel"][:-1]
    write_tensors(str(folder / "model.safetensors"), tensors)
    err = _cli_error(capsys, "import", str(folder), "--out", str(tmp_path / "run"))
    assert "'blocks.1.mixer.out_proj.kernel' has shape (23, 32), the model expects (24, 32)" in err
    del tensors["embed.embedding"]
    write_tensors(str(folder / "model.safetensors"), tensors)
    with pytest.raises(CheckpointError, match="'embed.embedding' is missing"):
        import_checkpoint(str(folder), str(tmp_path / "run"))
    assert _nothing_written(tmp_path, "run")
