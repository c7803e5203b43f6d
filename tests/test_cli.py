"""The command line: every kind of bad input ends with one clear line and exit status 2."""

import pytest

from birdie_jax.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("lerning_rate=0.1", "Did you mean train.learning_rate"),
    ("train.steps=ten", "train.steps must be an integer"),
    ("model.architecture=lstm", "model.architecture must be one of"),
    ("data.corpus=/no/such/corpus.txt", "/no/such/corpus.txt"),
    ("model.scan_implementation=fast", "model.scan_implementation must be one of"),
    ("model.scan_implementation=pallas", "no Pallas kernel for backend 'cpu'"),  # tests run on CPU (conftest)
])
def test_bad_config_and_paths_give_one_clear_line(capsys, tmp_path, override, message):
    code, err = _run(capsys, "train", "--config", "hawk_tiny", f"train.run_dir={tmp_path}/run", override)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_unknown_config_name_and_missing_file(capsys):
    code, err = _run(capsys, "info", "--config", "hawk_tinny")
    assert code == 2 and "Did you mean hawk_tiny" in err
    code, err = _run(capsys, "info", "--config", "missing.yaml")
    assert code == 2 and "missing.yaml" in err


def test_bad_yaml_keys_name_the_file(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  d_modle: 12\n")
    code, err = _run(capsys, "info", "--config", str(path))
    assert code == 2 and "model.d_modle" in err and str(path) in err


def test_empty_and_undecodable_corpora(capsys, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    code, err = _run(capsys, "train", "--config", "hawk_tiny", f"data.corpus={empty}", f"train.run_dir={tmp_path}/a")
    assert code == 2 and "empty.txt" in err
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("caf\u00e9 ol\u00e9".encode("latin-1"))
    code, err = _run(capsys, "train", "--config", "hawk_tiny", f"data.corpus={binary}", f"train.run_dir={tmp_path}/b")
    assert code == 2 and "latin1.txt" in err and "UTF-8" in err


def test_missing_checkpoint(capsys, tmp_path):
    code, err = _run(capsys, "generate", "--checkpoint", str(tmp_path / "nothing"), "--prompt", "x")
    assert code == 2 and "nothing" in err


def test_info_reports_parameters_and_state(capsys):
    assert main(["info", "--config", "hawk_tiny"]) == 0
    out = capsys.readouterr().out
    assert "parameters:" in out and "state_floats_per_sequence:" in out
