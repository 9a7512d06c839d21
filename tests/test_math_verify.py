"""mode="math_verify": Math-Verify for number answers, bounded by our own wall clock in any thread."""

from __future__ import annotations

import importlib.util
import threading
import time

import pytest

from ftcot_hf import compute_accuracy, score_completion
from ftcot_hf.errors import FtcotError
from ftcot_hf.tasks import math_verify
from ftcot_hf.tasks.answers import MODES
from ftcot_hf.tasks.math_verify import MathVerifyWorker

pytest.importorskip("math_verify")


def _hang(text: str, gold: str) -> dict:
    """A worker target that never answers in time (stands in for a runaway sympy computation)."""
    if text.strip() == "fast":
        return {"prediction": "1", "correct": gold == "1"}
    time.sleep(600)
    return {"prediction": None, "correct": False}


def test_mode_is_listed():
    assert "math_verify" in MODES


@pytest.mark.parametrize(
    "task, completion, gold, prefix, prediction, correct",
    [
        ("single_eq", " 3/4 - 1/4 = 2/4 = 1/2.", "0.5", None, "1/2", True),  # paper/robust: "3", wrong
        ("addsub", " 11.08+14.33+9.31=34.72.", "34.72", None, "34.72", True),
        ("gsm8k", " The total cost was $1,234.", "1234", None, "1234", True),
        ("multiarith", " so --> 18.0", "18", "-->", "18.0", True),  # string match in paper mode, numeric here
        ("svamp", "x = $\\frac{1}{4}$", "0.25", None, "\\frac{1}{4}", True),
        ("multiarith", " --> 17", "18", "-->", "17", False),
        ("multiarith", " I do not know.", "18", None, None, False),
    ],
)
def test_number_answers(task, completion, gold, prefix, prediction, correct):
    scored = score_completion(task, completion, gold, prefix=prefix, mode="math_verify")
    assert scored["mode"] == "math_verify"
    assert scored["prediction"] == prediction
    assert scored["correct"] is correct


def test_text_after_the_prefix_only():
    scored = score_completion("multiarith", "9 apples --> 7", "9", prefix="-->", mode="math_verify")
    assert scored["prediction"] == "7" and not scored["correct"]


def test_other_answer_types_fall_back_to_robust():
    scored = score_completion("aqua", " ... --> Answer: (C)", "C", prefix="-->", mode="math_verify")
    assert scored["prediction"] == "C" and scored["correct"]
    assert scored["mode"] == "math_verify" and scored["parsed_as"] == "robust"
    assert compute_accuracy(["--> yes"], ["yes"], task="coin_flip", mode="math_verify")["accuracy"] == 1.0


def test_no_answer_reported_apart_from_wrong():
    result = compute_accuracy(
        ["--> 18", "--> 17", "--> no idea", "--> 1/2"], ["18", "18", "18", "0.5"], task="svamp", mode="math_verify"
    )
    assert result["accuracy"] == 0.5 and result["no_answer"] == 0.25
    assert compute_accuracy(["--> 18", "-->"], ["18", "18"], task="svamp")["no_answer"] == 0.5  # every mode


def test_timeout_counts_as_no_answer_and_the_worker_restarts():
    worker = MathVerifyWorker(target="tests.test_math_verify:_hang", timeout_s=0.5)
    try:
        assert worker("fast", "1") == {"prediction": "1", "correct": True}  # starts the worker (not timed)
        started = time.monotonic()
        reply = worker("slow", "1")
        assert time.monotonic() - started < 5
        assert reply["prediction"] is None and reply["timed_out"]
        assert worker("fast", "1")["correct"]  # a fresh worker
    finally:
        worker.close()


def test_timeout_in_a_thread_inside_compute_accuracy(monkeypatch):
    worker = MathVerifyWorker(target="tests.test_math_verify:_hang", timeout_s=0.5)
    monkeypatch.setattr(math_verify, "_WORKER", worker)
    out: dict = {}

    def run():
        out["result"] = compute_accuracy(["--> fast", "--> slow"], ["1", "1"], task="svamp", mode="math_verify")

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    worker.close()
    assert not thread.is_alive()
    assert out["result"]["accuracy"] == 0.5 and out["result"]["no_answer"] == 0.5


def test_real_worker_from_threads():
    results: list = [None] * 4

    def run(i: int):
        results[i - 1] = score_completion("svamp", f" {i}/2", str(i / 2), mode="math_verify")["correct"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert results == [True] * 4


def test_missing_package_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a)
    )
    with pytest.raises(FtcotError, match=r"pip install ftcot-hf\[math\]"):
        compute_accuracy(["--> 1"], ["1"], task="svamp", mode="math_verify")
    with pytest.raises(FtcotError, match=r"ftcot-hf\[math\]"):
        score_completion("svamp", "1", "1", mode="math_verify")
