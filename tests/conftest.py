"""Shared fixtures: tiny models built once per session so XLA compiles each shape once."""

import atexit
import functools
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's persistent compilation cache, one folder per pytest session, shared by its processes (the
# pytest-xdist workers and the subprocesses tests start inherit this environment): a program that
# was compiled once is loaded instead of compiled again, in every train() call (each builds new
# jitted functions), every resumed run and every subprocess (each starts with an empty jit cache).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="birdie_jax_tests_xla_cache_")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")  # not the many tiny eager-op programs

import jax  # noqa: E402
import pytest  # noqa: E402
from flax import nnx  # noqa: E402

from birdie_jax.config import ModelConfig  # noqa: E402
from birdie_jax.models import LanguageModel  # noqa: E402

ARCHITECTURES = ("gated_ssm", "hawk", "transformer")  # every one also has bidirectional layers
CAUSAL_ONLY_ARCHITECTURES = ("mamba2",)  # no bidirectional variant (config rejects it)
ALL_ARCHITECTURES = ARCHITECTURES + CAUSAL_ONLY_ARCHITECTURES
# Per-layer patterns (model.architecture=hybrid), named as test ids.
# Between them they hold every mixer that has no single-architecture model (based, pla, swa,
# gated_conv, gated_ssm_plus); "jrt" is JRT-RNN's layer period, shortened.
HYBRIDS = {"jrt": ("gated_conv+mlp", "pla+mlp", "swa+mlp"), "hybrid": ("based+mlp", "gated_ssm_plus")}
CONTRACT_MODELS = ALL_ARCHITECTURES + tuple(HYBRIDS)  # every model the state-contract tests cover
TINY = dict(vocab_size=128, d_model=32, n_layers=2, state_dim=24, num_heads=2, head_dim=16, max_len=64,
            mamba_head_dim=8, mamba_d_state=8, mamba_chunk=4)


def tiny_model_config(architecture: str, **overrides) -> ModelConfig:
    """A tiny config of one architecture or of a named hybrid pattern (``HYBRIDS``)."""
    if architecture in HYBRIDS:
        layers = HYBRIDS[architecture]
        # The quadratic linear-attention form: no scans to compile per shape in eager calls (the
        # chunked default equals it, tests/test_linear_attention.py; trained with it in test_jrt).
        overrides = {"n_layers": max(len(layers), 2), "layers": layers, "la_feature_dim": 4, "swa_window": 3,
                     "mlp": "swiglu", "la_implementation": "quadratic", **overrides}
        architecture = "hybrid"
    return ModelConfig(architecture=architecture, **{**TINY, **overrides})


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, LanguageModel]:
    """One tiny model per architecture (causal-only ones and hybrids included), random float32 parameters."""
    return {arch: LanguageModel(tiny_model_config(arch), rngs=nnx.Rngs(params=i))
            for i, arch in enumerate(CONTRACT_MODELS)}


@pytest.fixture(scope="session")
def jitted_forward(tiny_models):
    """Per architecture: jitted (params, tokens, segment_ids, state) -> (logits, state)."""
    out = {}
    for arch, model in tiny_models.items():
        graphdef, _ = nnx.split(model)

        def forward(params, tokens, segment_ids, state, graphdef=graphdef):
            return nnx.merge(graphdef, params)(tokens, segment_ids, state=state, return_state=True)

        def step(params, token, state, graphdef=graphdef):
            return nnx.merge(graphdef, params).step(token, state)

        out[arch] = (jax.jit(forward), jax.jit(step))
    return out


@functools.lru_cache(maxsize=None)
def tiny_lm(architecture: str, bidirectional: str = "none") -> LanguageModel:
    """A tiny model over the byte tokenizer's vocabulary (384), built once per setting."""
    return LanguageModel(tiny_model_config(architecture, vocab_size=384, bidirectional=bidirectional),
                         rngs=nnx.Rngs(params=3))


def packed_segments(batches, fields) -> list[dict]:
    """Every packed segment of a batch stream, in order: {field: [n] array} for ``fields``."""
    out = []
    for b in batches:
        for r in range(b["inputs"].shape[0]):
            seg = b["segment_ids"][r]
            for s in range(1, seg.max() + 1):
                out.append({k: b[k][r][seg == s] for k in fields})
    return out


@pytest.fixture(scope="session")
def birdie_causal_run(tmp_path_factory):
    """A causal Hawk trained (briefly) with mixture=birdie: Birdie-Causal."""
    from birdie_jax.cli import main

    run = tmp_path_factory.mktemp("runs") / "birdie_causal"
    assert main(["train", "--config", "hawk_tiny", "--quiet", "mixture=birdie", "data.seq_len=128",
                 "mixture.val_rows_per_config=1", "controller.critic_width=16", "controller.critic_state=16",
                 "controller.critic_layers=1", "controller.critic_steps=2", "controller.num_candidates=64",
                 "train.steps=2", "train.eval_every=0", "train.tensorboard=false", f"train.run_dir={run}"]) == 0
    return run


#: The slowest test files (measured with ``--durations``), run first: with ``-n 2 --dist loadfile``
#: (pyproject.toml) the two workers then end on short files and finish close together.
SLOWEST_FILES_FIRST = ("test_distributed_training.py", "test_distributed.py", "test_models.py", "test_training.py")


def pytest_collection_modifyitems(items):
    """Move the slowest files' tests to the front, keeping every file's own order."""
    rank = {name: i for i, name in enumerate(SLOWEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
