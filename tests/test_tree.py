"""The repository tree stays clean (issue 16): no committed binaries but documented plots, one
version source."""

import importlib.metadata
import os
import re
import subprocess

import birdie_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tracked_files() -> list[str]:
    """The files git tracks (every file but environments and caches when this is no git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60).stdout
        return [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        found = []
        for dirpath, dirnames, files in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("venv", "__pycache__", "runs")
                           and not d.endswith(".egg-info")]
            found += [os.path.relpath(os.path.join(dirpath, f), ROOT) for f in files]
        return found


def is_binary(path: str) -> bool:
    with open(os.path.join(ROOT, path), "rb") as f:
        return b"\0" in f.read(8192)


def test_no_binary_files_but_plots_with_their_json():
    """Binary files are only PNG plots under docs/, each next to the JSON it was drawn from
    (developers' guide: plots are PNG + JSON); no wheels, archives or checkpoints."""
    files = [f for f in tracked_files() if os.path.isfile(os.path.join(ROOT, f))]
    binaries = [f for f in files if is_binary(f)]
    assert all(f.startswith("docs/") and f.endswith(".png") for f in binaries), binaries
    for png in binaries:
        folder = os.path.dirname(os.path.join(ROOT, png))
        assert any(name.endswith(".json") for name in os.listdir(folder)), f"{png} has no JSON beside it"
    with open(os.path.join(ROOT, ".gitignore"), encoding="utf-8") as f:
        assert "*.whl" in f.read().split()


def test_one_version_source():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    project = text.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.M), "pyproject.toml must not write the version itself"
    assert 'version = { attr = "birdie_jax.__version__" }' in text
    assert importlib.metadata.version("birdie-jax") == birdie_jax.__version__
