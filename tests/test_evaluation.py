"""Evaluation: batched generation (stop at END, pruning, batched == one by one), self-consistency voting,
evaluate_student, baselines, reports and the `ftcot eval` command, on tiny random models."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ftcot_hf.errors import FtcotError  # noqa: E402
from ftcot_hf.evaluation import (  # noqa: E402
    EvalResult,
    evaluate_student,
    few_shot_cot_exemplars,
    few_shot_cot_prompt,
    majority_vote,
    plot_accuracy_vs_degree,
    write_results,
)
from ftcot_hf.evaluation import evaluator as evaluator_module  # noqa: E402
from ftcot_hf.evaluation.baselines import eval_plan  # noqa: E402
from ftcot_hf.evaluation.selfconsistency import vote  # noqa: E402
from ftcot_hf.students.generation import Completion, generate_completions  # noqa: E402
from ftcot_hf.tasks import get_task  # noqa: E402
from tests.tiny_models import make_gpt2, make_tokenizer  # noqa: E402

PROMPTS = [
    "A coin is heads up. Whitney flips the coin. Is the coin still heads up? ###",
    "Take the last ###",
    "Q: 1 2 3 ###",
    "heads ###",
    "Therefore, the answer is yes. Therefore, the answer is no. ###",
    "Take the last letters of each words in Whitney Erika ###",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def gpt2(tok):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    # A wide weight init makes greedy outputs depend on the context (the default init repeats one token), so a
    # wrong position or mask shows up as a different completion.
    config = GPT2Config(
        vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, initializer_range=1.0,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(scope="module")
def t5(tok):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
        decoder_start_token_id=tok.pad_token_id, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        initializer_factor=1.0,
    )  # fmt: skip
    return T5ForConditionalGeneration(config).eval()


class Forcing:
    """Forces tokens per row: ``plan[row] = (step, token ids)`` puts those ids at that step; EOS is banned
    elsewhere (a random model would emit it by chance)."""

    def __init__(self, plan: dict[int, tuple[int, list[int]]], eos: int):
        self.plan, self.eos = plan, eos

    def __call__(self, rows, generated, scores):
        scores = scores.clone()
        scores[:, self.eos] = float("-inf")
        for b, (row, done) in enumerate(zip(rows, generated, strict=True)):
            if row in self.plan:
                step, ids = self.plan[row]
                if step <= len(done) < step + len(ids):
                    scores[b] = float("-inf")
                    scores[b, ids[len(done) - step]] = 0.0
        return scores


# --------------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------------


def test_greedy_batched_equals_one_by_one_and_hf_generate_gpt2(gpt2, tok):
    batched = generate_completions(gpt2, tok, PROMPTS, max_new_tokens=24, batch_size=4, stop=None)
    single = [generate_completions(gpt2, tok, [p], max_new_tokens=24, batch_size=1, stop=None)[0] for p in PROMPTS]
    assert batched == single
    assert len({c[0].text for c in batched}) == len(PROMPTS)  # context-dependent outputs: the check has teeth
    # An independent reference: transformers' own generate with left padding.
    tok.padding_side = "left"
    enc = tok(PROMPTS, return_tensors="pt", padding=True)
    out = gpt2.generate(**enc, max_new_tokens=24, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=None)
    reference = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert [c[0].text for c in batched] == reference
    assert all(c[0].finish_reason == "length" and c[0].num_tokens == 24 for c in batched)


def test_greedy_batched_equals_one_by_one_t5(t5, tok):
    prompts = [p.removesuffix(" ###") for p in PROMPTS]
    # EOS at different steps for two rows, banned for the others: rows leave the batch at different times.
    forcing = Forcing({1: (3, [tok.eos_token_id]), 4: (7, [tok.eos_token_id])}, tok.eos_token_id)
    batched = generate_completions(
        t5, tok, prompts, max_new_tokens=12, batch_size=6, stop=None, logits_processor=forcing
    )
    single = []
    for i, p in enumerate(prompts):
        plan = {0: forcing.plan[i]} if i in forcing.plan else {}
        single.append(
            generate_completions(
                t5, tok, [p], max_new_tokens=12, stop=None, logits_processor=Forcing(plan, tok.eos_token_id)
            )[0]
        )
    assert batched == single
    assert [c[0].finish_reason for c in batched] == ["length", "eos", "length", "length", "eos", "length"]
    assert batched[1][0].num_tokens == 4 and batched[4][0].num_tokens == 8
    assert len({c[0].text for c in batched}) > 3


def test_stop_phrase_ends_a_row_early_and_the_others_continue(gpt2, tok):
    prompts = PROMPTS[:3]
    end_ids = tok(" END", add_special_tokens=False)["input_ids"]
    free = generate_completions(
        gpt2, tok, prompts, max_new_tokens=12, stop=None, logits_processor=Forcing({}, tok.eos_token_id)
    )
    forcing = Forcing({1: (4, end_ids), 2: (2, [tok.eos_token_id])}, tok.eos_token_id)
    sizes: list[int] = []
    hook = gpt2.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]), with_kwargs=True)
    try:
        out = generate_completions(gpt2, tok, prompts, max_new_tokens=12, logits_processor=forcing)
    finally:
        hook.remove()
    # Row 0 runs to the limit, unchanged by the others leaving.
    assert out[0][0] == Completion(free[0][0].text, "length", 12)
    # Row 1 emitted " END" after 4 tokens: stopped, the text cut before the stop phrase.
    assert out[1][0].finish_reason == "stop" and out[1][0].num_tokens == 4 + len(end_ids)
    assert free[1][0].text.startswith(out[1][0].text.rstrip()) and "END" not in out[1][0].text
    # Row 2 emitted EOS as its 3rd token.
    assert out[2][0].finish_reason == "eos" and out[2][0].num_tokens == 3
    assert free[2][0].text.startswith(out[2][0].text) and out[2][0].text
    # Finished rows left the batch: 3 rows until row 2's EOS, 2 until row 1's END, then 1.
    assert sizes[:3] == [3, 3, 3] and sizes[3] == 2 and sizes[-1] == 1
    assert sizes == sorted(sizes, reverse=True) and len(sizes) == 12
    assert sizes.count(2) == 4 + len(end_ids) - 3


def test_stop_and_eos_with_real_text(gpt2, tok):
    # Whatever the model says, a stop phrase in its output ends the row there: force "yes END" mid-way.
    ids = tok(" --> yes END and more", add_special_tokens=False)["input_ids"]
    forcing = Forcing({0: (2, ids)}, tok.eos_token_id)
    [[c]] = generate_completions(gpt2, tok, PROMPTS[:1], max_new_tokens=40, logits_processor=forcing)
    assert c.finish_reason == "stop" and c.text.endswith(" --> yes ")
    assert c.num_tokens == 2 + len(tok(" --> yes END", add_special_tokens=False)["input_ids"])


def test_sampling_is_reproducible_and_independent_of_batching(gpt2, tok):
    kwargs = {"max_new_tokens": 10, "stop": None, "do_sample": True, "temperature": 1.0, "num_return_sequences": 3}
    a = generate_completions(gpt2, tok, PROMPTS[:4], batch_size=2, seed=7, **kwargs)
    b = generate_completions(gpt2, tok, PROMPTS[:4], batch_size=12, seed=7, **kwargs)
    c = generate_completions(gpt2, tok, PROMPTS[:4], batch_size=12, seed=8, **kwargs)
    assert a == b and a != c
    assert [len(per) for per in a] == [3, 3, 3, 3]
    assert len({x.text for x in a[0]}) > 1  # the samples of one prompt differ


def test_position_limit_caps_prompt_and_completion(gpt2, tok):
    long_prompt = "heads " * 200  # > 128 positions: its tail is kept
    near = "1" + " 1" * 123  # 124 tokens: 4 positions left
    assert len(tok(near)["input_ids"]) == 124
    out = generate_completions(gpt2, tok, [long_prompt, near], max_new_tokens=50, stop=None)
    assert out[0][0] == Completion(out[0][0].text, "length", 1)
    assert out[1][0].finish_reason == "length" and out[1][0].num_tokens == 4


def test_generation_restores_training_mode_and_validates(gpt2, tok):
    gpt2.train()
    try:
        generate_completions(gpt2, tok, PROMPTS[:1], max_new_tokens=2)
        assert gpt2.training
    finally:
        gpt2.eval()
    assert generate_completions(gpt2, tok, [], max_new_tokens=2) == []
    with pytest.raises(ValueError, match="temperature"):
        generate_completions(gpt2, tok, PROMPTS[:1], do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="at least 1"):
        generate_completions(gpt2, tok, PROMPTS[:1], max_new_tokens=0)


# --------------------------------------------------------------------------------------------------------------------
# Self-consistency
# --------------------------------------------------------------------------------------------------------------------


def test_majority_vote_ties_go_to_the_earliest_and_none_does_not_vote():
    assert majority_vote(["7", None, "8", "8", "7"]) == "7"  # 2-2 tie: "7" was seen first
    assert majority_vote(["b", "a", "a"]) == "a"
    assert majority_vote(["b", "a"]) == "b"
    assert majority_vote([None, None, "x"]) == "x"
    assert majority_vote([None, None]) is None and majority_vote([]) is None


def test_vote_groups_numbers_as_the_parser_compares_them():
    def scored(task, texts, gold):
        from ftcot_hf.tasks.answers import score_with_parser

        return [score_with_parser(get_task(task).answer, t, gold, prefix="-->") for t in texts]

    texts = [" --> 17", " --> 18.0", " --> 18", " --> 17.0"]
    # addsub compares floats: 17 and 17.0 vote together, 18.0 and 18 too; 2-2 tie -> 17 (first).
    v = vote(get_task("addsub").answer, scored("addsub", texts, "18"))
    assert (v["prediction"], v["count"], v["correct"]) == ("17", 2, False)
    # multiarith compares strings in paper mode: four different answers, the first wins.
    v = vote(get_task("multiarith").answer, scored("multiarith", texts, "18"))
    assert (v["prediction"], v["count"]) == ("17", 1)
    v = vote(get_task("multiarith").answer, scored("multiarith", [" --> 18", " nothing", " --> 18"], "18"))
    assert (v["prediction"], v["count"], v["correct"], v["votes"]) == ("18", 2, True, ["18", None, "18"])


# --------------------------------------------------------------------------------------------------------------------
# evaluate_student
# --------------------------------------------------------------------------------------------------------------------

RECORDS = [
    {
        "sample_index": 10,
        "question": "A coin is heads up. Ka flips the coin. Is the coin still heads up?",
        "answer": "no",
    },
    {
        "sample_index": 11,
        "question": "A coin is heads up. Nobody flips it. Is the coin still heads up?",
        "answer": "yes",
    },
    {
        "sample_index": 12,
        "question": "A coin is heads up. Jo and Al flip it. Is the coin still heads up?",
        "answer": "yes",
    },
]


def test_evaluate_student_scores_greedy_and_majority(monkeypatch, gpt2, tok):
    calls = []

    def fake(model, tokenizer, prompts, **kwargs):
        calls.append((prompts, kwargs))
        k = kwargs.get("num_return_sequences", 1)
        if k == 1:
            texts = [" flipped once --> no ", " not flipped --> no ", " twice --> yes"]
            return [[Completion(t, "stop" if i < 2 else "length", 5)] for i, t in enumerate(texts)]
        samples = [["--> no", "--> yes", "--> no"], ["--> yes", "?", "--> no"], ["x", "y", "z"]]
        return [[Completion(t, "stop", 4) for t in per] for per in samples]

    monkeypatch.setattr(evaluator_module, "generate_completions", fake)
    result = evaluate_student(gpt2, tok, RECORDS, task="coin_flip", sc=3, seed=5, batch_size=4)
    assert calls[0][0][0] == RECORDS[0]["question"] + " ###" and calls[0][1]["stop"] == "END"
    assert calls[1][1].items() >= {"do_sample": True, "num_return_sequences": 3, "seed": 5, "temperature": 0.7}.items()
    assert (result.n, result.accuracy, result.complete, result.correct_format) == (3, 2 / 3, 2 / 3, 1.0)
    assert (result.maj_at_k, result.k, result.generated_tokens) == (2 / 3, 3, 15 + 36)
    ex = result.examples
    assert [e["sample_index"] for e in ex] == [10, 11, 12]
    assert ex[1].items() >= {"prediction": "no", "answer": "yes", "correct": False, "finish_reason": "stop"}.items()
    assert ex[0]["votes"] == ["no", "yes", "no"] and ex[0]["maj_prediction"] == "no" and ex[0]["maj_correct"]
    assert ex[1]["maj_prediction"] == "yes" and ex[2]["maj_prediction"] is None  # tie -> first; nothing parsed
    assert json.loads(json.dumps(result.to_dict()))["examples"][2]["prompt"].endswith("###")
    assert "examples" not in result.to_dict(examples=False)
    assert EvalResult.from_dict(result.to_dict()) == result
    # sc = 1 is greedy only (a vote over one sample is no vote), as the training callback uses it.
    calls.clear()
    assert evaluate_student(gpt2, tok, RECORDS, task="coin_flip", sc=1).maj_at_k is None and len(calls) == 1


def test_evaluate_student_zero_shot_cot_runs_two_stages(monkeypatch, gpt2, tok):
    seen = []

    def fake(model, tokenizer, prompts, **kwargs):
        seen.append((list(prompts), kwargs["max_new_tokens"], kwargs["stop"]))
        if len(seen) == 1:
            return [[Completion(f" rationale {i}. The answer is yes.", "eos", 7)] for i in range(len(prompts))]
        return [[Completion(" no. Yes.", "length", 32)] for _ in prompts]

    monkeypatch.setattr(evaluator_module, "generate_completions", fake)
    result = evaluate_student(gpt2, tok, RECORDS, task="coin_flip", format="zero_shot_cot", max_new_tokens=64)
    (first, n1, stop1), (second, n2, stop2) = seen
    assert first[0] == f"Q: {RECORDS[0]['question']}\nA: Let's think step by step."
    assert second[1] == first[1] + " rationale 1. The answer is yes.\nTherefore, the answer is"
    assert (n1, stop1, n2, stop2) == (64, None, 32, None)
    # The stage-2 answer is scored with no prefix (first candidate: "no"), as the reference's zs_cot.
    assert [e["prediction"] for e in result.examples] == ["no", "no", "no"] and result.accuracy == 1 / 3
    assert result.examples[0]["rationale"] == " rationale 0. The answer is yes." and result.complete == 0.0
    assert result.format == "zero_shot_cot" and result.generated_tokens == 3 * 7 + 3 * 32


def test_evaluate_student_for_real_on_a_tiny_gpt2(gpt2, tok, built):
    test = built("coin_flip")["test"].select(range(3))
    gpt2.train()
    try:
        result = evaluate_student(gpt2, tok, test, task="coin_flip", max_new_tokens=6, batch_size=2)
        assert gpt2.training
    finally:
        gpt2.eval()
    assert result.n == 3 and result.task == "coin_flip" and result.format == "ft_cot"
    assert result.generated_tokens == 18 and result.complete == 0.0
    assert [e["sample_index"] for e in result.examples] == test["sample_index"]
    assert all(e["prompt"] == q + " ###" for e, q in zip(result.examples, test["question"], strict=True))
    assert result.wall_s > 0 and result.settings["max_new_tokens"] == 6


def test_evaluate_student_encoder_decoder_uses_the_t5_format(t5, tok):
    result = evaluate_student(t5, tok, {"test": RECORDS}, task="coin_flip", format="ft_cot", max_new_tokens=4)
    assert result.format == "ft_cot_t5" and result.n == 3
    assert [e["prompt"] for e in result.examples] == [r["question"] for r in RECORDS]
    assert result.settings["stop"] is None and all(e["finish_reason"] in ("eos", "length") for e in result.examples)
    with pytest.raises(FtcotError, match="lacks answer"):
        evaluate_student(t5, tok, [{"question": "q"}], task="coin_flip")


# --------------------------------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------------------------------


def test_few_shot_cot_prompt_from_the_pinned_exemplars(mirror):
    exemplars = few_shot_cot_exemplars("gsm8k", data_dir=mirror)
    assert exemplars.startswith("Q: There are 15 trees in the grove.") and exemplars.endswith("The answer is 8.")
    prompt = few_shot_cot_prompt(exemplars, "  How many eggs?  ")
    assert prompt == exemplars + "\nQ: How many eggs?\nA:"
    plan = eval_plan("few_shot_cot", "coin_flip", data_dir=mirror)
    assert plan.stop is None and plan.score_format == "few_shot_cot"
    assert plan.prompt({"question": "Is it heads?"}).endswith("The answer is yes.\nQ: Is it heads?\nA:")
    with pytest.raises(FtcotError, match="no few-shot-CoT exemplars for task 'tracking_shuffled_objects'"):
        few_shot_cot_exemplars("tracking_shuffled_objects", data_dir=mirror)


def test_eval_plans_fit_the_model_kind():
    assert eval_plan("ft_cot", "coin_flip", encoder_decoder=True).name == "ft_cot_t5"
    assert eval_plan("vanilla", "coin_flip", encoder_decoder=True).prompt({"question": " Q? "}) == "Q?"
    assert eval_plan("vanilla", "coin_flip").prompt({"question": "Q?", "answer": "x"}) == "Q? ###"
    assert eval_plan("zero_shot", "coin_flip", encoder_decoder=True).name == "zero_shot_t5"
    with pytest.raises(FtcotError, match="decoder-only"):
        eval_plan("ft_cot_t5", "coin_flip")
    with pytest.raises(FtcotError, match="two-stage"):
        eval_plan("zero_shot_cot", "coin_flip", encoder_decoder=True)
    with pytest.raises(FtcotError, match="no encoder-decoder variant"):
        eval_plan("natural", "coin_flip", encoder_decoder=True)
    with pytest.raises(FtcotError, match="Unknown format"):
        eval_plan("ft-cot", "coin_flip")


# --------------------------------------------------------------------------------------------------------------------
# Reports and the CLI
# --------------------------------------------------------------------------------------------------------------------


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_results_and_degree_plot(tmp_path):
    r = EvalResult(0.5, 0.75, 1.0, 0.5, 2, task="coin_flip", format="ft_cot", examples=[{"sample_index": 1}])
    paths = write_results([r], tmp_path / "out", {"model": "m"}, paper="gpt2/Fine-tune-CoT/124M")
    data = json.loads(paths["json"].read_text())
    assert data["paper"]["coin_flip"] == {"row": 77.33, "teacher": 90.04} and data["config"] == {"model": "m"}
    assert data["results"][0]["accuracy"] == 0.5 and "examples" not in data["results"][0]
    assert json.loads(paths["completions"].read_text()) == {"task": "coin_flip", "format": "ft_cot", "sample_index": 1}
    assert (
        "| CoinFlip | ft_cot | 2 | 50.00 | - | 75.00 | 100.00 | 50.00 | 77.33 | 90.04 |"
        in paths["markdown"].read_text()
    )
    assert _png(paths["plot"])
    runs = {1: [r], 4: [{"task": "coin_flip", "accuracy": 0.8}], 8: [{"task": "coin_flip", "accuracy": None}]}
    assert _png(plot_accuracy_vs_degree(runs, tmp_path / "d.png"))
    with pytest.raises(ValueError, match="family/method/params"):
        write_results([r], tmp_path / "bad", {}, paper="gpt2/124M")


def test_cli_eval_end_to_end_with_a_saved_tiny_gpt2(tmp_path, mirror, monkeypatch):
    from ftcot_hf.cli import main
    from ftcot_hf.evaluation.cli import cli_main

    model_dir = make_gpt2(tmp_path / "student")
    monkeypatch.setenv("FTCOT_DATA_MIRROR", str(mirror))
    out1, out2 = tmp_path / "d1", tmp_path / "d4"
    common = ["--model", str(model_dir), "--limit", "3", "--max_new_tokens", "6", "--threads", "1"]
    assert cli_main([*common, "--task", "coin_flip", "--output_dir", str(out1), "--degree", "1",
                     "--paper_row", "gpt2/Fine-tune-CoT/124M"]) == 0  # fmt: skip
    data = json.loads((out1 / "results.json").read_text())
    assert {"torch", "transformers", "datasets", "trl", "ftcot-hf"} <= set(data["versions"])
    assert data["config"]["model"] == str(model_dir) and data["config"]["degree"] == 1
    [result] = data["results"]
    assert result["n"] == 3 and result["task"] == "coin_flip" and result["generated_tokens"] == 18
    lines = (out1 / "completions.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["prompt"].endswith(" ###")
    md = (out1 / "results.md").read_text()
    assert "| CoinFlip | ft_cot | 3 |" in md and "77.33" in md and "90.04" in md
    assert _png(out1 / "accuracy_per_task.png")
    # A YAML recipe, a second D and the comparison plot.
    (tmp_path / "eval.yaml").write_text(
        f"model: {model_dir}\ntask: [coin_flip]\nlimit: 2\nmax_new_tokens: 4\nthreads: 1\n"
        f"output_dir: {out2}\ndegree: 4\ncompare_runs: [{out1}]\n"
    )
    assert cli_main(["--config", str(tmp_path / "eval.yaml")]) == 0
    assert json.loads((out2 / "results.json").read_text())["results"][0]["n"] == 2
    assert _png(out2 / "accuracy_vs_degree.png")
    # docs/evaluation.md's list of what `ftcot eval` writes names exactly these files (out2 ran with --compare_runs).
    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluation.md").read_text()
    section = page.split("# Evaluating", 1)[1].split("Writes ", 1)[1].split("In Python:", 1)[0]
    named = set(re.findall(r"`([\w.]+\.(?:json|jsonl|md|png))`", section))
    written = {p.name for out in (out1, out2) for p in out.iterdir()}
    assert named == written, (named, written)
    # Bad input: one line, rc 2, through the `ftcot` dispatcher.
    assert main(["eval", "--model", str(model_dir), "--task", "coinflip", "--output_dir", str(tmp_path / "x")]) == 2


def test_eval_defaults_are_defined_once():
    import inspect

    from ftcot_hf.evaluation.cli import EvalConfig
    from ftcot_hf.evaluation.lm_eval_export import export_lm_eval
    from ftcot_hf.pipeline.config import RunConfig
    from ftcot_hf.students.defaults import (
        EPOCH_EVAL_BATCH_SIZE,
        EPOCH_EVAL_MAX_NEW_TOKENS,
        EVAL_BATCH_SIZE,
        EVAL_MAX_NEW_TOKENS,
        EVAL_SC_TEMPERATURE,
    )
    from ftcot_hf.training.callbacks import EpochEvalCallback
    from ftcot_hf.training.config import FineTuneCoTConfig

    config = EvalConfig(model="gpt2")
    assert (config.max_new_tokens, config.batch_size) == (EVAL_MAX_NEW_TOKENS, EVAL_BATCH_SIZE) == (160, 50)
    for fn in (evaluate_student, generate_completions):
        params = inspect.signature(fn).parameters
        assert (params["max_new_tokens"].default, params["batch_size"].default) == (160, 50), fn.__name__
    assert inspect.signature(export_lm_eval).parameters["max_new_tokens"].default == EVAL_MAX_NEW_TOKENS
    run = {f.name: f.default for f in dataclasses.fields(RunConfig)}  # `ftcot run` evaluates with the same
    assert (run["eval_max_new_tokens"], run["eval_batch_size"]) == (EVAL_MAX_NEW_TOKENS, EVAL_BATCH_SIZE)
    assert config.sc_temperature == run["sc_temperature"] == EVAL_SC_TEMPERATURE
    assert inspect.signature(evaluate_student).parameters["sc_temperature"].default == EVAL_SC_TEMPERATURE
    # `ftcot train --eval_every_epoch` keeps its own pair (the reference's 512 new tokens), from the same module
    train = {f.name: f.default for f in dataclasses.fields(FineTuneCoTConfig)}
    epoch_pair = (EPOCH_EVAL_MAX_NEW_TOKENS, EPOCH_EVAL_BATCH_SIZE)
    assert (train["eval_max_new_tokens"], train["eval_batch_size"]) == epoch_pair == (512, 32)
    params = inspect.signature(EpochEvalCallback).parameters
    assert (params["max_new_tokens"].default, params["batch_size"].default) == (512, 32)


def test_cli_eval_teacher_row(tmp_path, mirror, monkeypatch, capsys):
    from ftcot_hf.evaluation.cli import cli_main

    monkeypatch.setenv("FTCOT_DATA_MIRROR", str(mirror))
    out = tmp_path / "teacher"
    assert (
        cli_main(["--model", "text-davinci-002", "--task", "coin_flip", "--split", "all", "--output_dir", str(out)])
        == 0
    )
    [result] = json.loads((out / "results.json").read_text())["results"]
    assert result["n"] == 500 and result["accuracy"] == pytest.approx(0.914)
    assert "accuracy 91.40" in capsys.readouterr().out
