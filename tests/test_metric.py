"""The accuracy metric: hand-made predictions across tasks and formats, the `evaluate` module loaded offline, and
the Teacher row (recorded text-davinci-002 completions) reproduced through the metric."""

from __future__ import annotations

import pytest

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation import compute_accuracy, evaluate_teacher, resolve_prefix
from ftcot_hf.evaluation.paper import match_student, method_for, paper_row, teacher_row
from ftcot_hf.students.formats import UnknownFormatError


@pytest.mark.parametrize(
    "task, fmt, mode, prediction, gold, expected",
    [
        # Fine-tune-CoT: first candidate after the first "-->".
        ("coin_flip", "ft_cot", "paper", " It was flipped, no wait, yes. --> no ", "no", (True, True, True)),
        ("coin_flip", "ft_cot", "paper", " --> Yes, it is.", "yes", (True, True, True)),
        # Prefix missing: the LAST candidate of the whole text.
        ("coin_flip", "ft_cot", "paper", " yes or no? no, yes", "yes", (True, True, False)),
        ("strategy_qa", "ft_cot", "paper", " Tigers can swim. --> No.", "no", (True, True, True)),
        # multiarith compares strings in paper mode ("18.0" != "18"), numbers in robust mode.
        ("multiarith", "ft_cot", "paper", " 9 + 9 = 18.0 --> 18.0 ", "18", (False, False, True)),
        ("multiarith", "ft_cot", "robust", " 9 + 9 = 18.0 --> 18.0 ", "18", (True, True, True)),
        ("gsm8k", "ft_cot", "paper", " She pays 1,200 + 34 --> 1,234 ", "1,234", (True, True, True)),
        # addsub compares floats within 1e-6 in paper mode too.
        ("addsub", "ft_cot", "paper", " 3.5 + 1.5 --> 5.0", "5", (True, True, True)),
        # Multiple choice, paper quirk: any capital letter counts, so the "A" of "Answer" is the first candidate.
        ("aqua", "ft_cot", "paper", " --> Answer: (C)", "C", (False, True, True)),
        ("aqua", "ft_cot", "robust", " --> Answer: (C)", "C", (True, True, True)),
        ("date_understanding", "ft_cot", "paper", " Today is 05/01. --> F", "F", (True, True, True)),
        ("tracking_shuffled_objects", "ft_cot", "paper", " Bob has it. --> (B)", "B", (True, True, True)),
        ("commonsense_qa", "ft_cot", "paper", " People eat. --> E", "E", (True, True, True)),
        # Last letters: the whole post-prefix text without quotes/periods/spaces is the one candidate.
        ("last_letter_concatenation", "ft_cot", "paper", ' "e" + "a" --> "ea". ', "ea", (True, True, True)),
        ("last_letter_concatenation", "ft_cot", "paper", " --> EA", "ea", (False, False, True)),
        # No prefix (vanilla / zero-shot): the FIRST candidate.
        ("svamp", "vanilla", "paper", " 12 apples, then 7", "12", (True, True, True)),
        ("svamp", "zero_shot", "paper", " 7 then 12", "12", (False, True, True)),
        # Few-shot-CoT and natural formats have their own prefixes.
        ("single_eq", "few_shot_cot", "paper", " 2 + 3 = 5. The answer is 5.\nQ: 7", "5", (True, True, True)),
        ("single_eq", "natural", "paper", " 2 + 3 = 5.\n\nTherefore, the answer is 6", "6", (True, True, True)),
        ("single_eq", "zero_shot_cot", "paper", " 2 + 3 = 5.", "5", (True, True, False)),
        ("coin_flip", "ft_cot_t5", "paper", "flipped --> no", "no", (True, True, True)),
    ],
)
def test_hand_made_predictions(task, fmt, mode, prediction, gold, expected):
    result = compute_accuracy([prediction], [gold], task=task, format=fmt, mode=mode, return_details=True)
    correct, contains, fmt_ok = expected
    assert (result["accuracy"], result["contains_answer"], result["correct_format"]) == (
        float(correct),
        float(contains),
        float(fmt_ok),
    )
    assert result["n"] == 1 and result["mode"] == mode and result["details"][0]["correct"] is correct


def test_aggregates_and_completeness():
    predictions = [" --> 4", " --> 5 ", " 4 and 5", " --> five"]
    references = ["4", "4", "5", "5"]
    result = compute_accuracy(
        predictions, references, task="single_eq", finish_reasons=["stop", "eos", "length", "stop"]
    )
    assert result == {
        "accuracy": 0.5,  # " --> 4" and " 4 and 5" (no prefix: last candidate)
        "contains_answer": 0.5,
        "correct_format": 0.75,
        "complete": 0.75,
        "no_answer": 0.25,  # " --> five": no number after the prefix (reported apart from wrong answers)
        "n": 4,
        "task": "single_eq",
        "format": "ft_cot",
        "prefix": "-->",
        "mode": "paper",
    }
    assert compute_accuracy([], [], task="coin_flip")["accuracy"] is None
    assert compute_accuracy([" --> yes"], ["yes"], task="coin_flip")["complete"] is None
    details = compute_accuracy(["x --> 7 8"], ["8"], task="multiarith", return_details=True)["details"][0]
    assert details["prediction"] == "7" and details["candidates"] == ["7", "8"] and details["contains_answer"]


def test_format_names_and_errors():
    assert resolve_prefix("ft_cot") == "-->" and resolve_prefix("few_shot_cot") == "The answer is"
    assert resolve_prefix("zero_shot_cot") == "Therefore, the answer is" and resolve_prefix(None) is None
    with pytest.raises(UnknownFormatError, match="Unknown format 'ftcot'"):
        compute_accuracy(["a"], ["b"], task="coin_flip", format="ftcot")
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_accuracy(["a", "b"], ["c"], task="coin_flip")
    with pytest.raises(ValueError, match="Unknown answer-parsing mode"):
        compute_accuracy(["a"], ["b"], task="coin_flip", mode="lenient")
    with pytest.raises(FtcotError, match=r"references\[1\] \('many'\) cannot be read as a svamp answer"):
        compute_accuracy(["1", "2"], ["1", "many"], task="svamp")
    with pytest.raises(ValueError, match="Unknown task"):
        compute_accuracy(["a"], ["b"], task="coinflip")


def test_evaluate_module_loads_offline_and_matches_the_function():
    evaluate = pytest.importorskip("evaluate")
    from ftcot_hf.metrics import FTCOT_ACCURACY

    predictions = [" It landed. --> yes ", " no --> ", " --> no"]
    references = ["yes", "no", "yes"]
    metric = evaluate.load(FTCOT_ACCURACY)
    got = metric.compute(predictions=predictions, references=references, task="coin_flip", finish_reasons=["stop"] * 3)
    assert got == compute_accuracy(predictions, references, task="coin_flip", finish_reasons=["stop"] * 3)
    assert got["accuracy"] == pytest.approx(1 / 3) and got["correct_format"] == 1.0
    # The config name is the task; robust mode and details pass through.
    by_config = evaluate.load(FTCOT_ACCURACY, "multiarith")
    got = by_config.compute(predictions=[" --> 18.0"], references=["18"], mode="robust", return_details=True)
    assert got["accuracy"] == 1.0 and got["details"][0]["prediction"] == "18.0"
    with pytest.raises(ValueError, match="needs the task"):
        evaluate.load(FTCOT_ACCURACY).compute(predictions=["a"], references=["b"])


KNOWN_TEACHER = {
    "single_eq": 79.53,
    "addsub": 71.39,
    "multiarith": 78.67,
    "gsm8k": 41.02,
    "aqua": 33.46,
    "svamp": 62.10,
    "date_understanding": 67.48,
    "tracking_shuffled_objects": 52.40,
    "last_letter_concatenation": 57.60,
    "coin_flip": 91.40,
    "commonsense_qa": 64.62,
    "strategy_qa": 54.76,
}
"""Kojima et al.'s recorded text-davinci-002 Zero-shot-CoT answers, paper-mode parsing, all recorded questions."""


def test_teacher_row_from_the_replayed_recordings(mirror, built, capsys):
    rows = {task: evaluate_teacher(task, dataset=built(task), data_dir=mirror) for task in KNOWN_TEACHER}
    paper = teacher_row()
    # printed into pytest's capture: `pytest -s` (or a failure) shows the table, `pytest -q` stays quiet
    print("\nTeacher row (replayed text-davinci-002 answers through compute_accuracy, paper mode, all questions):")
    print(f"{'task':27s} {'n':>5s} {'ours %':>7s} {'paper %':>8s}")
    for task, r in rows.items():
        print(f"{task:27s} {r.n:5d} {100 * r.accuracy:7.2f} {paper[task]:8.2f}")
    for task, r in rows.items():
        assert round(100 * r.accuracy, 2) == KNOWN_TEACHER[task], task
        assert r.format == "zero_shot_cot" and r.split == "all" and r.model.startswith("text-davinci-002")
        assert len(r.examples) == r.n and 0.9 < r.complete <= 1.0
    assert rows["gsm8k"].n == 1319 and rows["coin_flip"].n == 500 and rows["strategy_qa"].n == 2290
    # The test split alone (what a student is compared on) is a subset of the same recordings.
    test_only = evaluate_teacher("coin_flip", dataset=built("coin_flip"), data_dir=mirror, split="test")
    assert test_only.n == 150 and test_only.accuracy == pytest.approx(0.9133, abs=5e-5)


def test_paper_table_lookups():
    assert paper_row("gpt2", "Fine-tune-CoT", "124M")["multiarith"] == 8.33
    assert paper_row("flan-t5", "Diverse reasoning", "700M")["tracking_shuffled_objects"] == 89.33
    assert paper_row("gpt2", "Few-shot-CoT", "124M")["tracking_shuffled_objects"] is None
    assert paper_row("gpt2", "Fine-tune-CoT", "1.5B") is None
    assert teacher_row()["coin_flip"] == 90.04 and len(teacher_row()) == 12
    assert method_for("ft_cot") == "Fine-tune-CoT" and method_for("ft_cot", degree=8) == "Diverse reasoning"
    assert method_for("vanilla_t5") == "Fine-tune" and method_for("zero_shot_cot") is None
    assert match_student("gpt2", 124_439_808) == ("gpt2", "124M")
    assert match_student("t5", 247_577_856, "google/flan-t5-base") == ("flan-t5", "220M")
    assert match_student("gpt2", 200_000) is None and match_student("llama", 135_000_000) is None


def test_the_papers_columns_and_labels_are_the_tasks_own():
    from ftcot_hf.evaluation.paper import paper_tasks, task_sort_key
    from ftcot_hf.students.formats import FORMATS
    from ftcot_hf.tasks import BUILTIN_TASKS, TASKS, task_label

    assert [t.name for t in paper_tasks()] == list(BUILTIN_TASKS)
    assert [t.paper_column for t in paper_tasks()] == list(range(12))
    assert task_label("tracking_shuffled_objects") == "Shuffled" == TASKS["tracking_shuffled_objects"].label
    assert task_label("my_own") == "my_own"  # a task known only by name keeps it
    assert sorted(["my_own", "strategy_qa", "single_eq"], key=task_sort_key) == ["single_eq", "strategy_qa", "my_own"]
    assert method_for("middle_rationale") is None and FORMATS["ft_cot"].paper_method == "Fine-tune-CoT"
    assert FORMATS["ft_cot"].encoder_decoder_variant == "ft_cot_t5"
    assert FORMATS["natural"].encoder_decoder_variant is None


def test_the_gpt3_student_rows_equal_the_papers_table(mirror):
    from ftcot_hf.evaluation.paper import paper_row, paper_tasks

    table = mirror.parent / "paper_results.md"
    if not table.is_file():
        pytest.skip("../shared/paper_results.md is not beside the mirror")
    text = table.read_text()
    section = text[text.index("## 2. GPT-3 students") : text.index("## 3a.")]
    checked = 0
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 14 or cells[0] in ("Method", "Random", "Teacher") or cells[0].startswith("-"):
            continue
        row = paper_row("gpt3", cells[0], cells[1])
        assert [row[t.name] for t in paper_tasks()] == [None if v == "-" else float(v) for v in cells[2:]], cells[:2]
        checked += 1
    assert checked == 15
