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
                "tracking_shuffled_objects")  # fmt: skip


@pytest.fixture(scope="module")
def taught(mirror, tmp_path_factory):
    """The real teacher filter's verdicts: the recorded teacher on the first 40 training questions of each task, in
    paper and robust mode (``ftcot teach --mode``)."""
    from datasets import load_dataset

    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    out, repos = {}, {}
    for mode in ("paper", "robust"):
        tmp = tmp_path_factory.mktemp(f"rationales-{mode}")
        cfg = TeachConfig(tasks=list(FILTER_TASKS), limit=40, data_dir=str(mirror), mode=mode, keep="all",
                          cache_dir=str(tmp / "c.sqlite"), output_dir=str(tmp / "repo"))  # fmt: skip
        results, reports = teach(cfg)
        repo = save_rationales(cfg, results, reports)
        out[mode] = {task: load_dataset(str(repo), task)["train"] for task in FILTER_TASKS}
        repos[mode] = repo
    out["repo"] = repos["paper"]
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


# --- a few real GRPO steps ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shaped_student(tiny_gpt2, taught, tmp_path_factory):
    """The tiny random GPT-2 after a few SFT steps on ``"{q} ###" -> " --> yes|no END"``: it writes the format's shape
    with a guessed answer, so its GRPO samples earn both rewards and neither, not all zeros."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    rows = taught["paper"]["coin_flip"]
    data = Dataset.from_dict({"prompt": [f"{q.strip()} ###" for q in rows["question"]],
                              "completion": [f" --> {a} END" for a in rows["answer"]]})  # fmt: skip
    out = tmp_path_factory.mktemp("shaped") / "student"
    torch.manual_seed(0)
    config = SFTConfig(output_dir=str(out), max_steps=30, per_device_train_batch_size=8, learning_rate=5e-3,
                       lr_scheduler_type="constant", bf16=False, activation_checkpointing=False, save_strategy="no",
                       report_to="none", disable_tqdm=True, seed=0)  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_gpt2), args=config, train_dataset=data,
                         processing_class=tokenizer)  # fmt: skip
    trainer.train()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    return out


@pytest.mark.usefixtures("one_torch_thread")
def test_the_rewards_drive_grpo_and_reach_its_logs(shaped_student, taught, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rows = taught["paper"]["coin_flip"]
    gold_of = {f"{q.strip()} ###": a for q, a in zip(rows["question"], rows["answer"], strict=True)}
    prompts = Dataset.from_dict({"prompt": list(gold_of), "answer": list(gold_of.values())})
    config = GRPOConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, num_generations=4,
                        max_completion_length=8, learning_rate=1e-4, logging_steps=1, bf16=False,
                        activation_checkpointing=False, save_strategy="no", report_to="none", disable_tqdm=True,
                        seed=0)  # fmt: skip
    accuracy = accuracy_reward("coin_flip")
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(shaped_student), args=config,
                          processing_class=AutoTokenizer.from_pretrained(shaped_student),
                          reward_funcs=[accuracy, format_reward("ft_cot")], train_dataset=prompts)  # fmt: skip
    trainer.train()

    logged = [log for log in trainer.state.log_history if "rewards/accuracy_reward/mean" in log]
    assert len(logged) == 3 and all("rewards/format_reward/mean" in log for log in logged)
    # the last step's completions, as TRL kept them: re-scored by the evaluation's parser, they give the same rewards
    completions, got = list(trainer._logs["completion"]), list(trainer._logs["rewards"]["accuracy_reward"])
    golds = [gold_of[p] for p in trainer._logs["prompt"]]
    texts = [until_stop(c, "END") for c in completions]
    expected = compute_accuracy(texts, golds, task="coin_flip", format="ft_cot", return_details=True)["details"]
    assert got == [float(d["correct"]) for d in expected]
    assert list(trainer._logs["extra"]["parsed_answer"]) == [d["prediction"] for d in expected]
    assert logged[-1]["rewards/accuracy_reward/mean"] == pytest.approx(sum(got) / len(got))
    assert 0 < sum(got) < len(got), completions  # the student's guesses: some right, some wrong
    shaped = format_reward("ft_cot")(completions=completions)
    assert logged[-1]["rewards/format_reward/mean"] == pytest.approx(sum(shaped) / len(shaped)) and sum(shaped) > 0


GRPO_COMMAND = (
    "python examples/grpo_plain.py --student outputs/students/smollm2-coin_flip --dataset outputs/rationales "
    "--task coin_flip --max_steps 20"
)


@pytest.mark.usefixtures("one_torch_thread")
def test_the_grpo_example_runs_as_documented(shaped_student, taught, tmp_path, monkeypatch, capsys):
    """docs/rewards.md's command as typed, with the test's student and rationale dataset, one small step."""
    import runpy
    import sys

    from tests.docs_commands import REPO, doc_command

    argv = doc_command(GRPO_COMMAND).argv[1:]
    swap = {"outputs/students/smollm2-coin_flip": str(shaped_student), "outputs/rationales": str(taught["repo"]),
            "20": "1"}  # fmt: skip
    argv = [swap.get(a, a) for a in argv]
    argv += ["--batch_size", "4", "--num_generations", "2", "--max_completion_length", "8",
             "--output_dir", str(tmp_path / "grpo")]  # fmt: skip
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(REPO / "examples" / "grpo_plain.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "step 1: accuracy_reward " in printed and f"saved to {tmp_path / 'grpo'}" in printed, printed
    assert (tmp_path / "grpo" / "model.safetensors").is_file()
