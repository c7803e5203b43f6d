"""Recall evaluations: generators against the spec, metrics on hand-made outputs, the prompt
format a trained run is evaluated with, the eval CLI, pairs fine-tuning, and bad input."""

import functools
import json
import re

import numpy as np
import pytest
from conftest import tiny_lm

from birdie_jax.cli import main
from birdie_jax.data.layout import IGNORE_ID
from birdie_jax.data.pipeline import make_batch_iterator
from birdie_jax.data.sources import read_pairs, task_samples
from birdie_jax.errors import DataError
from birdie_jax.evals import Evaluator
from birdie_jax.evals.infilling import infilling_item, pick_choice
from birdie_jax.evals.metrics import contains, squad_f1
from birdie_jax.evals.phonebook import digit_accuracy, phonebook_example, phonebook_prompt
from birdie_jax.evals.squad import qa_examples, read_qa_jsonl
from birdie_jax.generation import generate, prompt_layout, score
from birdie_jax.inference import load_checkpoint
from birdie_jax.prompt_format import PromptFormat
from birdie_jax.tokenizer import build_tokenizer

TOK = build_tokenizer("byte")
DOCS = [" ".join(f"Document {d} sentence {s} tells part {s} of story {d}." for s in range(8)) for d in range(6)]


# --------------------------------------------------------------------------- generators


def test_phonebook_golden_prompt_for_two_queries():
    book = [("Ada Novak", "123-456-7890"), ("Leo Park", "555-000-1111"), ("Mei Sato", "999-888-7777")]
    assert phonebook_prompt(book, ["Mei Sato", "Ada Novak"]) == (
        "What are the phone numbers for Mei Sato and Ada Novak? Find them in the phonebook below.\n"
        "Phonebook:\n"
        "Ada Novak: 123-456-7890\nLeo Park: 555-000-1111\nMei Sato: 999-888-7777\n"
        "What are the phone numbers for Mei Sato and Ada Novak? Find them in the phonebook above.")
    assert "for A, B, and C?" in phonebook_prompt([("A", "1"), ("B", "2"), ("C", "3")], ["A", "B", "C"])


@pytest.mark.parametrize("entries, k", [(1, 1), (30, 5), (200, 32)])
def test_phonebook_names_unique_and_labels_in_query_order(entries, k):
    ex = phonebook_example(np.random.default_rng(entries), entries, k)
    lines = ex.prompt.split("\n")
    book = dict(line.split(": ") for line in lines[2:-1])
    assert len(lines) - 3 == entries == len(book)  # one line per entry, names unique
    assert all(re.fullmatch(r"\d{3}-\d{3}-\d{4}", n) for n in book.values())
    assert len(set(ex.names)) == k
    assert ex.answer == ", ".join(book[name] for name in ex.names)  # the numbers, in query order
    assert ex.names[0] in lines[0] and ex.names[-1] in lines[-1]


def test_qa_gold_answers_are_spans_of_their_context():
    for ex in qa_examples(DOCS, 20, seed=3, length=120):
        assert all(a in ex.context for a in ex.answers)
        assert ex.prompt == f"{ex.context}\n\n{ex.question}"
        assert ex.cloze + " " + ex.answers[0] + "." in ex.context


def test_infilling_has_exactly_one_correct_choice():
    for seed in range(20):
        item = infilling_item(DOCS, np.random.default_rng(seed))
        entries = [line for line in item.prompt.split("\n") if re.match(r"\d+\. ", line)]
        assert 3 <= len(entries) <= 7 and sum("(blank)" in e for e in entries) == 1
        story = re.search(r"story (\d+)", next(e for e in entries if "(blank)" not in e)).group(1)
        texts = [c[4:] for c in item.choices]
        assert len(set(texts)) == 4 and [c[:4] for c in item.choices] == ["(A) ", "(B) ", "(C) ", "(D) "]
        same_story = [i for i, t in enumerate(texts) if f"story {story}." in t]
        assert same_story == [item.answer]  # only the removed sentence comes from the story's document
        assert texts[item.answer] not in item.prompt.split("Choices:")[0]


# --------------------------------------------------------------------------- metrics


def test_digit_accuracy_scores_aligned_digits_and_missing_numbers_zero():
    gold = ["123-456-7890", "555-000-1111"]
    assert digit_accuracy("123-456-7890, 555-000-1111", gold) == 1.0
    assert digit_accuracy("000-000-0000, 999-999-9999", ["111-111-1111", "222-222-2222"]) == 0.0
    assert digit_accuracy("123-456-7890", gold) == 0.5  # the second number is missing: 0 of its 10 digits
    assert digit_accuracy("123-456-7899, 555-000-1111", gold) == 19 / 20
    assert digit_accuracy("no numbers at all", gold) == 0.0


def test_squad_f1_and_contains_on_hand_made_outputs():
    assert squad_f1("The Eiffel Tower!", ["eiffel tower"]) == 1.0  # article and punctuation ignored
    # "tower in paris" vs "tower": P = 1/3, R = 1 -> F1 = 0.5 (vs "eiffel tower": 0.4); the best gold counts
    assert squad_f1("a tower in Paris", ["Eiffel Tower", "the tower"]) == pytest.approx(0.5)
    assert squad_f1("nothing", ["Eiffel Tower"]) == 0.0
    assert contains("It is the EIFFEL tower.", ["Eiffel Tower"]) == 1.0  # case-insensitive
    assert contains("It is a tower.", ["Eiffel Tower", "Louvre"]) == 0.0
    assert pick_choice([-2.0, -0.5, -1.0, -3.0]) == 1  # the lowest loss per token


# --------------------------------------------------------------------------- prompt format


def test_paradigm_token_ends_the_prefix_in_both_layouts():
    bg, p = TOK.special.bg, TOK.special.paradigm["plm"]
    tokens, prefix = prompt_layout(np.array([5, 6]), bg, True, p)
    np.testing.assert_array_equal(tokens, [5, 6, p, bg])
    np.testing.assert_array_equal(prefix, [True, True, True, False])
    tokens, prefix = prompt_layout(np.array([5, 6]), bg, False, p)
    np.testing.assert_array_equal(tokens, [p, bg, 5, 6])
    np.testing.assert_array_equal(prefix, [True, False, False, False])


def test_birdie_causal_run_is_evaluated_with_its_training_layout(birdie_causal_run):
    run = load_checkpoint(str(birdie_causal_run))
    model = run.model
    assert model.cfg.bidirectional == "none"
    assert model.prompt_format == PromptFormat(True, "plm")  # prefix layout and [P:plm], not NTP's
    assert Evaluator(model, run.tokenizer).format == PromptFormat(True, "plm")
    assert Evaluator(model, run.tokenizer).task_paradigm("copy") == "copy"  # the copy task's own paradigm
    assert Evaluator(model, run.tokenizer, paradigm=None).task_paradigm("copy") is None  # explicit wins
    prompts = ["Hello wor", "ab"]
    default = generate(model, prompts, 2, tokenizer=run.tokenizer, return_logits=True)
    explicit = generate(model, prompts, 2, tokenizer=run.tokenizer, prompt_as_prefix=True, paradigm="plm",
                        return_logits=True)
    ntp = generate(model, prompts, 2, tokenizer=run.tokenizer, prompt_as_prefix=False, paradigm=None,
                   return_logits=True)
    np.testing.assert_array_equal(default.logits, explicit.logits)
    assert np.abs(default.logits - ntp.logits).max() > 1e-4  # the layouts really differ
    # Scoring: the default equals the explicit training format, and the manual prompt + [P] + [BG] layout.
    s_default = score(model, ["abc"], ["def"], tokenizer=run.tokenizer)
    s_manual = score(model, [np.append(TOK.encode("abc"), TOK.special.paradigm["plm"])], ["def"],
                     tokenizer=run.tokenizer, prompt_as_prefix=True, paradigm=None)
    assert s_default.sum_logprob[0] == pytest.approx(s_manual.sum_logprob[0], abs=1e-5)


def test_architecture_default_without_training_information():
    causal, bidirectional = tiny_lm("gated_ssm"), tiny_lm("gated_ssm", "alternate")
    assert Evaluator(causal, TOK).format == PromptFormat(False, None)
    assert Evaluator(bidirectional, TOK).format == PromptFormat(True, None)
    with pytest.raises(DataError, match="unknown paradigm"):
        Evaluator(causal, TOK, paradigm="bogus").format


# --------------------------------------------------------------------------- CLI and bad input


def _run(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_eval_cli_writes_json_and_png(birdie_causal_run, capsys, tmp_path):
    out = tmp_path / "eval"
    code, stdout, _ = _run(capsys, "eval", "phonebook", "--checkpoint", str(birdie_causal_run), "--n", "2",
                           "--entries", "3,5", "--queries", "1,2", "--out", str(out), "--quiet")
    assert code == 0 and "phonebook: digit_accuracy" in stdout
    result = json.loads((out / "phonebook.json").read_text())
    assert [r["k"] for r in result["by_k"]] == [1, 2] and (out / "phonebook.png").stat().st_size > 0
    assert result["prompt_as_prefix"] is True and result["paradigm"] == "plm"
    code, stdout, _ = _run(capsys, "eval", "mqar", "--checkpoint", str(birdie_causal_run), "--n", "2",
                           "--slices", "16:2", "--out", str(out), "--quiet", "--layout", "causal", "--paradigm",
                           "none")
    result = json.loads((out / "mqar.json").read_text())
    assert code == 0 and result["slices"][0]["seq_len"] == 16 and result["prompt_as_prefix"] is False


def test_generate_sets_the_continuation_apart_and_stops_at_newline(birdie_causal_run, capsys):
    code, stdout, _ = _run(capsys, "generate", "--checkpoint", str(birdie_causal_run), "--prompt", "ab\ncd",
                           "--max-new-tokens", "8", "--stop-at-newline")
    lines = stdout.split("\n")
    assert code == 0 and lines[:3] == ["ab", "cd", "----- continuation -----"]
    assert len(lines) == 5 and lines[4] == ""  # the continuation holds no newline


@pytest.mark.parametrize("argv, message", [
    (["eval", "nosuchtask", "--checkpoint", "RUN"], "unknown eval task 'nosuchtask'"),
    (["eval", "phonebook", "--checkpoint", "RUN", "--entries", "3,4", "--queries", "8"], "k=8 queries"),
    (["eval", "mqar", "--checkpoint", "RUN", "--paradigm", "zz"], "unknown paradigm 'zz'"),
])
def test_eval_bad_input_gives_one_clear_line(birdie_causal_run, capsys, argv, message):
    argv = [str(birdie_causal_run) if a == "RUN" else a for a in argv] + ["--quiet", "--n", "1"]
    code, _, err = _run(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and message in err and len(err.splitlines()) == 1


def test_eval_on_a_folder_that_is_not_a_run(capsys, tmp_path):
    code, _, err = _run(capsys, "eval", "mqar", "--checkpoint", str(tmp_path))
    assert code == 2 and err.startswith("error: ") and str(tmp_path) in err and len(err.splitlines()) == 1


def test_jsonl_records_missing_a_field(tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"context": "c", "question": "q", "answers": ["c"]}) + "\n"
                  + json.dumps({"context": "c", "answers": ["c"]}) + "\n")
    with pytest.raises(DataError, match=r"qa.jsonl, line 2: missing field 'question'"):
        read_qa_jsonl(str(qa))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "p"}) + "\n")
    with pytest.raises(DataError, match=r"pairs.jsonl, line 1: missing string field 'answer'"):
        read_pairs(str(pairs), TOK)


def test_context_longer_than_an_attention_models_maximum():
    model = tiny_lm("transformer")  # max_len 64
    with pytest.raises(DataError, match=r"model.max_len=64"):
        Evaluator(model, TOK, progress=False).complete(["x" * 100], 4)
    Evaluator(tiny_lm("hawk"), TOK, progress=False).check_fits(10_000, "recurrent")  # no limit


# --------------------------------------------------------------------------- pairs fine-tuning


def test_pairs_put_loss_on_answer_tokens_only(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": p, "answer": a})
                               for p, a in [("What is 2+2?", "4"), ("Name a colour.", "blue")]))
    examples = read_pairs(str(pairs), TOK)
    for as_prefix, paradigm in [(True, TOK.special.paradigm["plm"]), (False, None)]:
        transform = functools.partial(task_samples, as_prefix=as_prefix, paradigm=paradigm)
        batch = next(make_batch_iterator(examples, TOK, seq_len=64, batch_size=1, seed=0, sample_transform=transform,
                                         shuffle=False, num_epochs=1))
        seg = batch["segment_ids"][0]
        assert seg.max() == 2
        for s, ex in zip((1, 2), examples):
            inputs, targets, region = (batch[k][0][seg == s] for k in ("inputs", "targets", "region"))
            np.testing.assert_array_equal(targets[targets != IGNORE_ID], ex.answer)  # answer + EOS only
            np.testing.assert_array_equal(ex.answer[-1:], [TOK.special.eos])
            first = int(np.flatnonzero(targets != IGNORE_ID)[0])
            # prefix form: prompt + [P] + [BG] + answer; causal form: [BG] + prompt + answer
            end = first - int(paradigm is not None) if as_prefix else first + 1
            np.testing.assert_array_equal(inputs[end - len(ex.prompt):end], ex.prompt)
            assert (region[:len(ex.prompt)] != 2).all() == as_prefix  # a bidirectional prefix only in prefix form


def test_init_from_a_run_then_fine_tune_on_phonebook_pairs(birdie_causal_run, tmp_path, capsys):
    run = tmp_path / "finetuned"
    assert main(["train", "--config", "configs/finetune/phonebook.yaml", "--quiet", f"init_from={birdie_causal_run}",
                 "generated.num_examples=16", "generated.phonebook_entries=[3,5]", "generated.phonebook_queries=[1,2]",
                 "data.seq_len=512", "data.batch_size=2", "train.steps=1", "train.eval_every=0",
                 "train.checkpoint_every=0", "train.tensorboard=false", "eval.tasks=[]",
                 f"train.run_dir={run}"]) == 0
    loaded = load_checkpoint(str(run))
    assert loaded.config.train.weight_decay == 0.0 and loaded.config.train.learning_rate == 5e-5
    assert loaded.model.prompt_format.as_prefix  # pairs: the book is read as a prefix, as in training


def test_rope_scaling_interpolates_positions():
    from birdie_jax.models.attention import apply_rope

    x = np.random.default_rng(0).normal(size=(1, 3, 1, 8)).astype(np.float32)
    positions = np.array([[0, 4, 10]])
    scaled = np.asarray(apply_rope(x, positions, 100.0, 2.0))
    half = 4
    freq = 100.0 ** (-np.arange(half) / half)
    angle = (positions / 2.0)[..., None, None] * freq  # the oracle: rotate by (p / s)·θ_i
    x1, x2 = x[..., :half], x[..., half:]
    expected = np.concatenate([x1 * np.cos(angle) - x2 * np.sin(angle), x2 * np.cos(angle) + x1 * np.sin(angle)], -1)
    np.testing.assert_allclose(scaled, expected, atol=1e-5)


@pytest.mark.parametrize("arch, bidirectional", [("hawk", "alternate"), ("transformer", "none"), ("mamba2", "none")])
def test_tasks_run_on_every_architecture(arch, bidirectional, tmp_path):
    from birdie_jax.evals import run_task

    ev = Evaluator(tiny_lm(arch, bidirectional), TOK, progress=False)
    result = run_task("set_disjointness", ev, out_dir=str(tmp_path), num_examples=2, sizes=((2, 4),))
    assert 0.0 <= result["accuracy"] <= 1.0 and result["prompt_as_prefix"] == (bidirectional != "none")
    assert (tmp_path / "set_disjointness.png").exists()
