"""Answer parsing: paper mode bit-exact with the reference (quirks included), robust mode separate."""

from __future__ import annotations

import pytest

from ftcot_hf import PREDICTION_PREFIXES, TASKS, UnknownTaskError, score_completion

P = "-->"

# (task, completion, gold, prefix, expected prediction, correct, contains_answer, correct_format) in PAPER mode.
PAPER_CASES = [
    # yes/no
    ("coin_flip", "Flipped twice, so heads up. --> yes", "yes", P, "yes", True, True, True),
    ("coin_flip", "No prefix here, so no... wait, yes", "yes", P, "yes", True, True, False),  # missing -> last
    ("coin_flip", "--> no --> yes", "yes", P, "no", False, True, True),  # prefix twice -> first after first
    ("coin_flip", "", "yes", P, None, False, False, False),
    ("coin_flip", "--> Yes.", "yes", P, "yes", True, True, True),
    ("coin_flip", "-->yesterday", "yes", P, None, False, False, True),
    ("coin_flip", "no, yes", "yes", None, "no", False, True, True),  # no prefix defined -> first
    ("coin_flip", "--> Yes", "Yes", P, "yes", False, False, True),  # gold kept as is for coin_flip (quirk)
    ("strategy_qa", "--> yes", "Yes", P, "yes", True, True, True),  # gold lowercased for strategy_qa
    ("strategy_qa", '--> "No":', "No", P, "no", True, True, True),
    # last letters
    ("last_letter_concatenation", "--> yajo", "yajo", P, "yajo", True, True, True),
    ("last_letter_concatenation", "--> ya jo.", "yajo", P, "yajo", True, True, True),
    ("last_letter_concatenation", '--> "yajo"', "yajo", P, "yajo", True, True, True),
    ("last_letter_concatenation", "--> Yajo", "yajo", P, "Yajo", False, False, True),
    ("last_letter_concatenation", "--> yajo is it", "yajo", P, "yajoisit", False, False, True),
    ("last_letter_concatenation", "", "yajo", P, "", False, False, False),
    ("last_letter_concatenation", "The answer is yajo", "yajo", P, "Theanswerisyajo", False, False, False),
    # numbers compared as strings
    ("gsm8k", "--> 1,000", "1,000", P, "1000", True, True, True),
    ("gsm8k", "--> 1000.0", "1000", P, "1000.0", False, False, True),
    ("gsm8k", "--> $1,000.", "1000", P, "1000", True, True, True),
    ("gsm8k", "-->  -5", "-5", P, "-5", True, True, True),
    ("gsm8k", "So 3 + 4 = 7", "7", P, "7", True, True, False),
    ("gsm8k", "--> 12 --> 7", "7", P, "12", False, True, True),
    ("gsm8k", "", "7", P, None, False, False, False),
    ("gsm8k", "--> 50%", "50", P, "50", True, True, True),
    ("gsm8k", "--> .5", "0.5", P, "5", False, False, True),
    ("multiarith", "--> 39.0", "39", P, "39.0", False, False, True),
    ("multiarith", "He has 39 left. 39", "39", None, "39", True, True, True),
    # numbers compared as floats
    ("addsub", "--> 43.0", "43", P, "43.0", True, True, True),
    ("svamp", "--> 51", "51.0", P, "51", True, True, True),
    ("single_eq", "--> 43.0000001", "43", P, "43.0000001", True, True, True),
    ("single_eq", "--> 43.01", "43", P, "43.01", False, False, True),
    ("svamp", "--> -2.5 apples", "-2.5", P, "-2.5", True, True, True),
    ("addsub", "--> 1,234.5", "1234.5", P, "1234.5", True, True, True),
    ("addsub", "The answer is 7. Then 9.", "7", P, "9", False, True, False),
    # choices
    ("aqua", "--> (C) 5", "C", P, "C", True, True, True),
    ("aqua", "--> Answer: (C)", "C", P, "A", False, True, True),  # the "A" of "Answer" counts (quirk)
    ("aqua", "I think B", "B", P, "B", True, True, False),
    ("commonsense_qa", "--> E", "E", P, "E", True, True, True),
    ("commonsense_qa", "--> F", "E", P, None, False, False, True),  # F is not a CSQA letter
    ("date_understanding", "--> (F) 05/01/2021", "F", P, "F", True, True, True),
    ("tracking_shuffled_objects", "--> Answer: C", "C", P, "A", False, True, True),
    ("tracking_shuffled_objects", "--> (D) bike", "C", P, None, False, False, True),  # only A-C
    ("tracking_shuffled_objects", "Bob. --> C.", "C", P, "C", True, True, True),
]


@pytest.mark.parametrize("task,completion,gold,prefix,prediction,correct,contains,fmt", PAPER_CASES)
def test_paper_mode(task, completion, gold, prefix, prediction, correct, contains, fmt):
    out = score_completion(task, completion, gold, prefix=prefix)
    assert (out["prediction"], out["correct"], out["contains_answer"], out["correct_format"]) == (
        prediction,
        correct,
        contains,
        fmt,
    )
    assert out["mode"] == "paper"


ROBUST_CASES = [
    ("gsm8k", "--> 1000.0", "1,000", True),
    ("multiarith", "--> 39.0", "39", True),
    ("gsm8k", "--> $1,000.00 in total", "1000", True),
    ("gsm8k", "--> .5", "0.5", True),
    ("gsm8k", "--> 12 --> 7", "7", False),
    ("aqua", "--> Answer: (C)", "C", True),
    ("tracking_shuffled_objects", "--> Answer: C", "C", True),
    ("aqua", "--> Answer: B.", "B", True),
    ("coin_flip", "--> Yes", "Yes", True),
    ("coin_flip", "--> yesterday", "yes", False),
    ("last_letter_concatenation", "--> Yajo", "yajo", True),
    ("last_letter_concatenation", "--> yajo is the answer", "yajo", True),
    ("svamp", "--> 51 dollars", "51.0", True),
    ("single_eq", "", "43", False),
]


@pytest.mark.parametrize("task,completion,gold,correct", ROBUST_CASES)
def test_robust_mode(task, completion, gold, correct):
    out = score_completion(task, completion, gold, prefix=P, mode="robust")
    assert out["correct"] is correct
    assert out["mode"] == "robust"


def test_modes_are_never_mixed():
    # Same input, different verdicts: each call uses exactly the mode it names.
    assert score_completion("aqua", "--> Answer: (C)", "C", prefix=P)["correct"] is False
    assert score_completion("aqua", "--> Answer: (C)", "C", prefix=P, mode="robust")["correct"] is True
    assert score_completion("aqua", "--> Answer: (C)", "C", prefix=P)["correct"] is False


@pytest.mark.parametrize("task", list(TASKS))
def test_every_gold_answer_round_trips_through_the_ft_cot_format(task, built):
    ds = built(task)
    for row in ds["test"]:
        # A neutral rationale: human ones may contain "-->" themselves (one AQuA rationale does).
        completion = f" Step by step, as we saw. {PREDICTION_PREFIXES['ft_cot']} {row['answer']}"
        for mode in ("paper", "robust"):
            out = score_completion(task, completion, row["answer"], prefix="-->", mode=mode)
            assert out["correct"], (task, row["sample_index"], mode, out)


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="Unknown answer-parsing mode 'strict'"):
        score_completion("gsm8k", "--> 1", "1", prefix=P, mode="strict")
    with pytest.raises(UnknownTaskError, match="Did you mean 'gsm8k'"):
        score_completion("gsm8", "--> 1", "1", prefix=P)


def test_prefixes_of_the_formats():
    assert PREDICTION_PREFIXES["ft_cot"] == "-->"
    assert PREDICTION_PREFIXES["natural"] == "Therefore, the answer is"
    assert PREDICTION_PREFIXES["few_shot_cot"] == "The answer is"
    assert PREDICTION_PREFIXES["vanilla"] is None
