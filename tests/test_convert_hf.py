"""Hawk ↔ Hugging Face RecurrentGemma and Mamba-2 ↔ Mamba2 (torch CPU, offline): the same logits
(fp32, 1e-4) on a padded batch, HF models built here import and train, greedy generation agrees,
and export → import is bit-identical."""

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch", reason="HF parity needs the torch extra (pip install -e .[torch]; .ci/run does)")
transformers = pytest.importorskip("transformers", reason="HF parity needs the torch extra (transformers)")

from birdie_jax.config import ModelConfig, load_config  # noqa: E402
from birdie_jax.convert import export, import_checkpoint, read_folder  # noqa: E402
from birdie_jax.convert.files import read_tensors  # noqa: E402
from birdie_jax.convert.params import load_parameters, named_parameters  # noqa: E402
from birdie_jax.generation import generate  # noqa: E402
from birdie_jax.inference import LoadedRun, load_checkpoint  # noqa: E402
from birdie_jax.models import LanguageModel  # noqa: E402
from birdie_jax.tokenizer import build_tokenizer  # noqa: E402

BYTES = build_tokenizer("byte")
LENGTHS = (12, 9, 5)  # one row per length, right-padded to 12
TOL = 1e-4
HAWK = dict(architecture="hawk", vocab_size=384, d_model=32, n_layers=2, state_dim=24, mlp_expansion=1.5, max_len=64,
            rglru_reset_multiplier=True, logit_soft_cap=30.0, embed_scale="sqrt_d_bf16")
MAMBA2 = dict(architecture="mamba2", vocab_size=384, d_model=32, n_layers=2, mamba_head_dim=8, mamba_d_state=8,
              mamba_chunk=4, max_len=64)
OURS = {"hawk_recurrentgemma": {**HAWK, "rglru_heads": 2, "linear_bias": True},
        "hawk_dense": {**HAWK, "d_model": 64, "embed_scale": None},  # √64 is a bfloat16: the default scale maps
        "mamba2_tied": MAMBA2, "mamba2_untied": {**MAMBA2, "tie_embeddings": False}}


def _perturbed(model: LanguageModel, seed: int) -> LanguageModel:
    """The model with noise on every parameter, so zero-initialised biases and unit norms matter too."""
    rng = np.random.default_rng(seed)
    params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype) for k, v in named_parameters(model).items()}
    return load_parameters(model, params, "perturbed")


def _batch(vocab: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab, (len(LENGTHS), max(LENGTHS)))
    mask = np.arange(max(LENGTHS))[None] < np.asarray(LENGTHS)[:, None]
    return np.where(mask, tokens, 0), mask


def _ours(model: LanguageModel, tokens, mask) -> np.ndarray:
    return np.asarray(model(jnp.asarray(tokens), jnp.asarray(mask.astype(np.int32))))


def _hf_logits(hf, tokens, mask) -> np.ndarray:
    with torch.no_grad():
        return hf(torch.tensor(tokens), attention_mask=torch.tensor(mask.astype(np.int64)), use_cache=False).logits.numpy()


def _assert_close_on_tokens(ours, theirs, mask):
    vocab = theirs.shape[-1]
    assert np.abs(ours[..., :vocab] - theirs)[mask].max() < TOL


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name → (our model, HF model loaded from its export, export folder)."""
    root = tmp_path_factory.mktemp("hf")
    out = {}
    for i, (name, fields) in enumerate(OURS.items()):
        model = _perturbed(LanguageModel(ModelConfig(**fields), rngs=nnx.Rngs(params=i)), i)
        folder = export(LoadedRun(None, BYTES, model, 3), str(root / name), "hf")
        out[name] = (model, transformers.AutoModelForCausalLM.from_pretrained(folder), folder)
    return out


@pytest.mark.parametrize("name", list(OURS))
def test_exported_logits_match_transformers(exported, name):
    model, hf, folder = exported[name]
    expected = {"hawk": "RecurrentGemmaForCausalLM", "mamba2": "Mamba2ForCausalLM"}[model.cfg.architecture]
    assert type(hf).__name__ == expected
    tokens, mask = _batch(384)
    _assert_close_on_tokens(_ours(model, tokens, mask), _hf_logits(hf, tokens, mask), mask)


@pytest.mark.parametrize("name", list(OURS))
def test_hf_export_import_round_trip_is_bit_identical(exported, tmp_path, name):
    model, _, folder = exported[name]
    back = read_folder(folder)
    assert back.config == model.cfg
    ours = named_parameters(model)
    assert sorted(back.tensors) == sorted(ours)
    for k, v in ours.items():
        assert back.tensors[k].dtype == v.dtype and np.array_equal(back.tensors[k], v), k


def _generated_by_both(model: LanguageModel, hf):
    """32 greedy tokens after a prompt longer than any test window, from birdie_jax and from HF ``generate``."""
    prompt = np.frombuffer(b"The cat sat", np.uint8).astype(np.int32)
    ours = generate(model, [prompt], 32, tokenizer=BYTES, prompt_as_prefix=False).tokens[0]
    ids = torch.tensor(np.concatenate([[BYTES.special.bg], prompt])[None])
    with torch.no_grad():
        theirs = hf.generate(ids, max_new_tokens=32, do_sample=False, eos_token_id=BYTES.special.eos,
                             pad_token_id=BYTES.special.pad)[0, ids.shape[1]:].numpy()
    stops = np.flatnonzero(theirs == BYTES.special.eos)
    return ours.tolist(), (theirs[: stops[0] + 1] if len(stops) else theirs).tolist()


@pytest.mark.parametrize("name", ["hawk_recurrentgemma", "mamba2_untied"])
def test_greedy_generation_is_identical(exported, name):
    model, hf, _ = exported[name]
    ours, theirs = _generated_by_both(model, hf)
    assert len(ours) >= 8 and ours == theirs


def test_griffin_imported_from_transformers_generates_what_it_generates(imported):
    hf, run_dir = imported["griffin"]
    ours, theirs = _generated_by_both(load_checkpoint(run_dir).model, hf)
    assert len(ours) == 32 and len(set(ours)) > 4 and ours == theirs


def _randomise_hf(hf, seed: int, scale: float = 0.1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))


def _hf_models():
    rg = transformers.RecurrentGemmaConfig(
        vocab_size=384, hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        lru_width=40, block_types=["recurrent"], conv1d_width=4, logits_soft_cap=30.0)
    mamba = transformers.Mamba2Config(
        vocab_size=300, hidden_size=32, num_hidden_layers=2, num_heads=8, head_dim=8, expand=2, state_size=8,
        n_groups=1, chunk_size=4, tie_word_embeddings=False)
    # Griffin as RecurrentGemma ships it (one K/V head, half-rotary heads), with a 4-token window.
    griffin = transformers.RecurrentGemmaConfig(
        vocab_size=384, hidden_size=32, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, lru_width=40, block_types=["recurrent", "attention"], attention_window_size=4,
        conv1d_width=4, logits_soft_cap=30.0)
    return {"recurrent_gemma": transformers.RecurrentGemmaForCausalLM(rg), "mamba2": transformers.Mamba2ForCausalLM(mamba),
            "griffin": transformers.RecurrentGemmaForCausalLM(griffin)}


def _word_level_tokenizer(size: int):
    tokenizers = pytest.importorskip("tokenizers", reason="the test extra installs tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({f"w{i}": i for i in range(size)}, unk_token="w0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return tok


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """kind → (HF model built and saved here with random weights, the run folder imported from it)."""
    root = tmp_path_factory.mktemp("imported")
    torch.manual_seed(0)
    out = {}
    for i, (kind, hf) in enumerate(_hf_models().items()):
        _randomise_hf(hf.eval(), i + 1, 0.5 if kind == "griffin" else 0.1)  # griffin: varied greedy continuations
        hf.save_pretrained(root / kind)
        if kind == "mamba2":  # a tokenizers JSON of exactly the model's vocabulary travels along
            _word_level_tokenizer(hf.config.vocab_size).save(str(root / kind / "tokenizer.json"))
        out[kind] = (hf, import_checkpoint(str(root / kind), str(root / f"{kind}_run")))
    return out


@pytest.mark.parametrize("kind", ["recurrent_gemma", "mamba2", "griffin"])
def test_models_built_by_transformers_import_with_the_same_logits(imported, kind):
    hf, run_dir = imported[kind]
    run = load_checkpoint(run_dir)
    vocab = hf.config.vocab_size
    # The run's tokenizer: bytes (384 ids), or the folder's tokenizer.json (300 + specials → 512).
    expected = {"recurrent_gemma": ("byte", 384), "mamba2": ("hf:tokenizer.json", 512), "griffin": ("byte", 384)}[kind]
    assert (run.tokenizer.name, run.tokenizer.vocab_size) == expected
    assert run.model.cfg.vocab_size == max(vocab, expected[1])  # grown (zero rows) for the reserved special ids
    if kind == "griffin":
        assert run.model.cfg.layer_mixer(1) == "swa" and run.model.cfg.swa_window + 1 == hf.config.attention_window_size
    if kind == "mamba2":
        assert run.tokenizer.encode("w7 w299").tolist() == [7, 299] and os.path.isfile(f"{run_dir}/tokenizer.json")
    tokens, mask = _batch(vocab, seed=2)
    _assert_close_on_tokens(_ours(run.model, tokens, mask), _hf_logits(hf, tokens, mask), mask)


def test_imported_recurrentgemma_trains(imported, tmp_path):
    """Griffin: its recurrent (Hawk) and local-attention layers both train."""
    import birdie_jax

    _, run_dir = imported["griffin"]
    cfg = load_config("hawk_tiny", f"init_from={run_dir}", f"train.run_dir={tmp_path / 'tuned'}", "train.steps=3",
                      "data.seq_len=32", "data.batch_size=2", "train.eval_every=0", "train.checkpoint_every=0",
                      "train.tensorboard=false", "train.progress=false")
    result = birdie_jax.train(cfg, quiet=True)
    assert result.step == 3 and np.isfinite(result.final_loss)
    before = named_parameters(load_checkpoint(run_dir).model)
    after = named_parameters(result.model)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    assert load_checkpoint(str(tmp_path / "tuned")).config.model == load_checkpoint(run_dir).config.model


def test_imported_griffin_exports_back_exactly(imported, tmp_path):
    """import then export to hf: HF's own tensors come back bit for bit (norm weights as (1 + w) − 1) and
    compute the same logits, and importing that folder again gives our parameters bit for bit."""
    hf, run_dir = imported["griffin"]
    run = load_checkpoint(run_dir)
    folder = export(run, str(tmp_path / "griffin_hf"), "hf")
    config = json.loads((tmp_path / "griffin_hf" / "config.json").read_text())
    assert config["block_types"] == hf.config.layers_block_type and config["num_key_value_heads"] == 1
    assert config["attention_window_size"] == 4 and config["rope_parameters"]["partial_rotary_factor"] == 0.5
    written = read_folder(folder)
    ours = named_parameters(run.model)
    assert sorted(written.tensors) == sorted(ours) and written.config == run.model.cfg
    assert all(np.array_equal(written.tensors[k], v) for k, v in ours.items())
    exported_tensors = read_tensors(folder)
    original = {k: v.numpy() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    # Norm weights w pass through our scale 1 + w (float32), so they come back as (1 + w) − 1.
    expected = {k: (np.float32(1) + v) - np.float32(1) if k.endswith("norm.weight") else v for k, v in original.items()}
    assert sorted(exported_tensors) == sorted(expected)
    assert [k for k, v in expected.items() if not np.array_equal(exported_tensors[k], v)] == []
    again = transformers.AutoModelForCausalLM.from_pretrained(folder)
    tokens, mask = _batch(384, seed=3)
    _assert_close_on_tokens(_hf_logits(again, tokens, mask), _hf_logits(hf, tokens, mask), mask)


def test_import_without_sidecar_derives_the_config(exported, tmp_path):
    model, hf, folder = exported["hawk_recurrentgemma"]
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copyfile(os.path.join(folder, name), plain / name)
    back = read_folder(str(plain))
    assert back.config.rglru_heads == 2 and back.config.linear_bias and back.config.rglru_reset_multiplier
    assert json.loads((plain / "config.json").read_text())["block_types"] == ["recurrent"]
    tokens, mask = _batch(384)
    imported = load_parameters(LanguageModel(back.config, rngs=nnx.Rngs(params=0)), back.tensors, "plain")
    _assert_close_on_tokens(_ours(imported, tokens, mask), _hf_logits(hf, tokens, mask), mask)
