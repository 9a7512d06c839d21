"""ftcot_hf.rewards (issue 34 part 2): the task's answer parser as TRL reward functions. Filter, reward and evaluation
agree on the same completions (one parser), and the rewards drive a few real GRPO steps on a tiny model."""

from __future__ import annotations

import pickle

import pytest

from ftcot_hf.errors import FtcotError
from ftcot_hf.evaluation.metric import compute_accuracy
from ftcot_hf.rewards import accuracy_reward, format_reward, until_stop
from ftcot_hf.tasks import score_completion

# the recorded teacher's rows, both correct and wrong ones, for every answer type of the paper's tasks
FILTER_TASKS = ("coin_flip", "strategy_qa", "last_letter_concatenation", "multiarith", "addsub", "date_understanding",
                "tracking_shuffled_objects")


@pytest.fixture(scope="module")
def taught(mirror, tmp_path_factory):
    """The real teacher filter's verdicts: the recorded teacher on the first 40 training questions of each task, in
    paper and robust mode (``ftcot teach --mode``)."""
    from datasets import load_dataset

    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    out = {}
    for mode in ("paper", "robust"):
        tmp = tmp_path_factory.mktemp(f"rationales-{mode}")
        cfg = TeachConfig(tasks=list(FILTER_TASKS), limit=40, data_dir=str(mirror), mode=mode, keep="all",
                          cache_dir=str(tmp / "c.sqlite"), output_dir=str(tmp / "repo"))  # fmt: skip
        results, reports = teach(cfg)
        repo = save_rationales(cfg, results, reports)
        out[mode] = {task: load_dataset(str(repo), task)["train"] for task in FILTER_TASKS}
    return out


@pytest.mark.parametrize("mode", ["paper", "robust"])
def test_filter_reward_and_evaluation_agree_on_every_recorded_rationale(taught, mode):
    """A student completion carrying the teacher's answer text after ``-->`` is rewarded exactly when the teacher
    filter kept that answer as correct, and ``ftcot eval``'s metric says the same, row by row."""
    seen = {True: 0, False: 0}
    for task, rows in taught[mode].items():
        reward = accuracy_reward(task, mode=mode)
        # what GRPO hands over: generation ran past END (no stop string), so text follows it
        completions = [f" {r['rationale'].strip()} --> {r['teacher_answer'].strip()} END Q: next" for r in rows]
        rewards = reward(prompts=[""] * len(rows), completions=completions, answer=rows["answer"])
        evaluated = compute_accuracy([until_stop(c, "END") for c in completions], rows["answer"], task=task,
                                     format="ft_cot", mode=mode, return_details=True)["details"]  # fmt: skip
        for row, got, ev in zip(rows, rewards, evaluated, strict=True):
            assert got == float(row["correct"]) == float(ev["correct"]), (task, row["teacher_answer"], row["answer"])
            seen[row["correct"]] += 1
    assert seen[True] >= 20 and seen[False] >= 20, seen  # both verdicts exercised


def test_modes_reach_the_parser_and_agree_with_eval_and_score_completion():
    pytest.importorskip("math_verify")
    completions = [" 3 and 15 make --> 18.0 END", " so --> 18 END", " so --> $18 END", " --> \\frac{36}{2} END", " 17"]
    gold = ["18"] * len(completions)
    by_mode = {}
    for mode in ("paper", "robust", "math_verify"):
        got = accuracy_reward("gsm8k", mode=mode)(prompts=[""] * 5, completions=completions, answer=gold)
        texts = [until_stop(c, "END") for c in completions]
        direct = [float(score_completion("gsm8k", t, "18", prefix="-->", mode=mode)["correct"]) for t in texts]
        metric = compute_accuracy(texts, gold, task="gsm8k", format="ft_cot", mode=mode, return_details=True)
        assert got == direct == [float(d["correct"]) for d in metric["details"]], mode
        by_mode[mode] = got
    assert by_mode["paper"] == [0.0, 1.0, 1.0, 0.0, 0.0]  # gsm8k compares strings in paper mode ("18.0" != "18")
    assert by_mode["robust"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert by_mode["math_verify"][:2] == [1.0, 1.0] and by_mode["math_verify"][3] == 1.0  # 36/2 verifies as 18


def test_conversational_completions_score_as_their_last_assistant_message():
    reward = accuracy_reward("coin_flip")
    plain = [" flipped twice --> yes END", " flipped once --> yes END"]
    chat = [[{"role": "assistant", "content": plain[0]}],
            [{"role": "assistant", "content": "calling a tool"}, {"role": "tool", "content": "no"},
             {"role": "assistant", "content": [{"type": "text", "text": plain[1]}]}]]  # fmt: skip
    assert reward(prompts=None, completions=chat, answer=["yes", "no"]) == [1.0, 0.0]
    assert reward(prompts=None, completions=plain, answer=["yes", "no"]) == [1.0, 0.0]
    assert format_reward()(completions=chat) == [1.0, 1.0]


def test_the_parsed_answer_goes_to_trls_completions_table():
    logged = {}
    reward = accuracy_reward("multiarith")
    got = reward(completions=[" 2 and 3 --> 5 END", " nothing"], answer=["5", "5"], log_extra=logged.__setitem__)
    assert got == [1.0, 0.0] and logged == {"parsed_answer": ["5", None]}


@pytest.mark.parametrize(
    ("fmt", "completion", "expected"),
    [
        ("ft_cot", " It was flipped. --> no END", 1.0),
        ("ft_cot", " It was flipped. --> no END\n", 1.0),
        ("ft_cot", " It was flipped. --> no", 0.0),  # never stopped
        ("ft_cot", " It was flipped. --> no END Q: A coin is", 0.0),  # ran on past END
        ("ft_cot", " It was flipped. no END", 0.0),  # no marker
        ("ft_cot", " It --> was flipped. --> no END", 0.0),  # two markers: the parser reads after the first
        ("ft_cot", " It was flipped. --> END", 0.0),  # no answer
        ("vanilla", " no END", 1.0),
        ("vanilla", " END", 0.0),
        ("ft_cot_t5", "It was flipped. --> no", 1.0),  # no stop phrase in the t5 format
        ("tail_fundamentals", " --> no END Fundamentals: parity", 1.0),  # a tail layout's annotations follow END
        ("natural", " It was flipped.\n\nTherefore, the answer is no END", 1.0),
    ],
)
def test_format_reward(fmt, completion, expected):
    assert format_reward(fmt)(prompts=["q"], completions=[completion]) == [expected]


def test_bad_inputs_are_one_clear_ftcot_error():
    with pytest.raises(FtcotError, match="no_such_task"):
        accuracy_reward("no_such_task")
    with pytest.raises(FtcotError, match="unknown answer-parsing mode 'exact'"):
        accuracy_reward("coin_flip", mode="exact")
    with pytest.raises(FtcotError, match="no_such_format"):
        format_reward("no_such_format")
    with pytest.raises(FtcotError, match="neither an answer marker nor a stop phrase"):
        format_reward("zero_shot")
    reward = accuracy_reward("multiarith")
    with pytest.raises(FtcotError, match=r"'answer' column, which the training dataset lacks \(its columns here: go"):
        reward(prompts=["q"], completions=[" --> 5 END"], gold=["5"], trainer_state=None)
    with pytest.raises(FtcotError, match=r"gold answer 'five' \(row 0 of the batch\) cannot be read"):
        accuracy_reward("addsub")(prompts=["q"], completions=[" --> 5 END"], answer=["five"])
    assert accuracy_reward("multiarith", answer_column="gold")(completions=[" --> 5 END"], gold=["5"]) == [1.0]


def test_exported_lazily_named_for_trls_logs_and_picklable():
    import subprocess
    import sys

    import ftcot_hf
    from ftcot_hf import rewards

    assert ftcot_hf.accuracy_reward is rewards.accuracy_reward and ftcot_hf.format_reward is rewards.format_reward
    from trl.trainer.utils import get_callable_name

    reward = pickle.loads(pickle.dumps(accuracy_reward("coin_flip", mode="robust")))
    assert get_callable_name(reward) == "accuracy_reward" and get_callable_name(format_reward()) == "format_reward"
    assert reward(completions=[" --> Yes END"], answer=["yes"]) == [1.0]  # robust mode survived the pickle
    code = "import sys, ftcot_hf; ftcot_hf.accuracy_reward; print('trl' in sys.modules or 'torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"
