"""The lm-eval adapter on local tasks (YAML over JSON files the test writes): log-likelihood
(multiple choice), rolling log-likelihood and generation, through lm_eval itself."""

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # local files only: never reach for the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
lm_eval = pytest.importorskip("lm_eval", reason="needs the lm-eval extra (pip install birdie-jax[lm-eval])")

from birdie_jax.evals.lm_eval import BirdieLM  # noqa: E402
from birdie_jax.generation import score  # noqa: E402
from birdie_jax.inference import load_checkpoint  # noqa: E402

DOCS = [{"question": "The sky is", "choices": [" blue", " loud", " heavy"], "label": 0, "answer": "blue"},
        {"question": "Two plus two is", "choices": [" four", " seven"], "label": 0, "answer": "four"}]


def _tasks(folder):
    data = folder / "docs.json"
    data.write_text("\n".join(json.dumps(d) for d in DOCS))
    common = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    (folder / "mc.yaml").write_text(
        "task: birdie_local_mc\n" + common + "output_type: multiple_choice\ndoc_to_text: '{{question}}'\n"
        "doc_to_choice: '{{choices}}'\ndoc_to_target: '{{label}}'\nmetric_list:\n  - metric: acc\n")
    (folder / "gen.yaml").write_text(
        "task: birdie_local_gen\n" + common + "output_type: generate_until\ndoc_to_text: '{{question}}'\n"
        "doc_to_target: '{{answer}}'\ngeneration_kwargs:\n  until: ['\\n']\n  max_gen_toks: 4\n"
        "metric_list:\n  - metric: exact_match\n")
    (folder / "rolling.yaml").write_text(
        "task: birdie_local_rolling\n" + common + "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: '{{question}}'\nmetric_list:\n  - metric: word_perplexity\n")
    return folder


@pytest.fixture(scope="module")
def run(birdie_causal_run):
    return birdie_causal_run  # a Birdie-Causal Hawk (conftest): scored in its prefix format with [P:plm]


def test_local_tasks_run_through_lm_eval(run, tmp_path):
    from lm_eval.tasks import TaskManager

    tasks = _tasks(tmp_path)
    out = lm_eval.simple_evaluate(model="birdie_jax", model_args=f"checkpoint={run},batch_size=4",
                                  tasks=["birdie_local_mc", "birdie_local_gen", "birdie_local_rolling"],
                                  task_manager=TaskManager(include_path=str(tasks)), log_samples=True)
    results = out["results"]
    assert 0.0 <= results["birdie_local_mc"]["acc,none"] <= 1.0
    assert 0.0 <= results["birdie_local_gen"]["exact_match,none"] <= 1.0
    assert results["birdie_local_rolling"]["word_perplexity,none"] > 1.0
    # The harness's per-choice log-likelihoods are birdie_jax.score's, in the run's training format.
    loaded = load_checkpoint(str(run))
    sample = out["samples"]["birdie_local_mc"][0]
    doc = DOCS[sample["doc_id"]]
    choices = [" " + c for c in doc["choices"]]  # lm-eval puts its target delimiter " " before each choice
    expected = score(loaded.model, [doc["question"]] * len(choices), choices, tokenizer=loaded.tokenizer)
    np.testing.assert_allclose([r[0][0] for r in sample["resps"]], expected.sum_logprob, rtol=1e-5, atol=1e-5)


def test_generate_until_cuts_at_the_stop_string(run):
    lm = BirdieLM(checkpoint=str(run))

    class Request:
        def __init__(self, *args):
            self.args = args

    free = lm.generate_until([Request("abc", {"max_gen_toks": 6, "until": []})])[0]
    assert len(free) > 0
    cut = lm.generate_until([Request("abc", {"max_gen_toks": 6, "until": [free[1:3]]})])[0]
    assert cut == free[:free.index(free[1:3])]
