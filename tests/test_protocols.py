"""Teaching chat and reasoning models: the one-stage protocol, reasoning traces, and the token/cost ledger."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, load_dataset

from ftcot_hf.cli import main
from ftcot_hf.tasks.prompts import one_stage_prompt
from ftcot_hf.teach.augment import RationaleAugmenter, augment
from ftcot_hf.teachers.base import Generation, Request
from tests.doubles import StubTeacher
from tests.fake_openai_server import FakeOpenAIServer, sample_text


def records(n: int = 4) -> Dataset:
    return Dataset.from_dict({"sample_index": list(range(n)), "question": [f"Is {i} even?" for i in range(n)],
                              "answer": ["yes" if i % 2 == 0 else "no" for i in range(n)]})  # fmt: skip


def number(request: Request) -> int:
    """The i of ``Is i even?``."""
    return int(request.prompt.split("Is ")[1].split(" ")[0])


class ReasoningTeacher(StubTeacher):
    """Replies like a reasoning model: ``<think>trace</think>`` then the answer; question 3's trace never closes."""

    backend, model = "reasoning", "r1-like"

    def reply(self, r: Request) -> list[Generation]:
        i = number(r)
        answer = "yes" if i % 2 == 0 else "no"
        text = (f"<think>{i} mod 2 is {i % 2} and so on and so on" if i == 3
                else f"<think>{i} mod 2 is {i % 2}.</think>Therefore, the answer is {answer}.")  # fmt: skip
        return [Generation(text, "stop", 20, 30) for _ in range(r.n)]


def test_a_reasoning_reply_is_one_request_its_trace_the_rationale_and_an_open_trace_is_never_kept():
    teacher = ReasoningTeacher()
    kept, report = augment(records(), RationaleAugmenter(teacher, "coin_flip", degree=2, temperature=0.6))
    assert len(teacher.requests) == 4 and all(r.n == 2 for r in teacher.requests)  # no stage 2 at all
    assert kept["rationale"][0] == "0 mod 2 is 0." and kept["teacher_answer"][0] == "Therefore, the answer is yes."
    assert sorted(set(kept["sample_index"])) == [0, 1, 2]  # question 3's trace never closed
    assert report.incomplete == 2 and report.kept == 6
    assert (report.prompt_tokens, report.completion_tokens) == (8 * 20, 8 * 30)
    assert "2 reasoning traces never closed" in report.ledger_summary()


class ChatTeacher(StubTeacher):
    backend, model = "chatty", "chat-v1"

    def reply(self, r: Request) -> list[Generation]:
        i = number(r)
        return [Generation(f"{i} is {'even' if i % 2 == 0 else 'odd'}.\nTherefore, the answer is no.", "stop")]


def test_chat_teachers_get_one_stage_requests_whose_final_line_is_the_answer():
    teacher = ChatTeacher()
    augmenter = RationaleAugmenter(teacher, "coin_flip", chat=True)
    everything, report = augment(records(), augmenter, keep="all")
    assert report.protocol == "one_stage" and augmenter.max_rationale_tokens == 4096
    assert [r.prompt for r in teacher.requests] == [one_stage_prompt(f"Is {i} even?") for i in range(4)]
    assert all(r.chat for r in teacher.requests)
    assert everything["rationale"][1] == "1 is odd." and everything["correct"] == [False, True, False, True]
    with pytest.raises(ValueError, match="protocol must be one of"):
        RationaleAugmenter(teacher, "coin_flip", protocol="three_stage")


def test_ftcot_teach_chat_against_a_server_with_a_reasoning_parser_and_the_ledger(tmp_path, mirror, capsys):
    out = tmp_path / "out"
    faults = [("reasoning", "reasoning_content", "Therefore, the answer is yes.")] * 5
    with FakeOpenAIServer(faults=faults) as server:
        code = main(["teach", "--tasks", "coin_flip", "--limit", "5", "--teacher", "openai", "--model", "m",
                     "--base_url", server.base_url, "--chat", "true", "--data_dir", str(mirror), "--keep", "all",
                     "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out),
                     "--price_input_per_mtok", "1.0", "--price_output_per_mtok", "2.0"])  # fmt: skip
        sent = [r for r in server.requests]
    assert code == 0
    assert len(sent) == 5 and all(r.path.endswith("/chat/completions") for r in sent)  # one request per sample
    train = load_dataset(str(out), "coin_flip")["train"]
    prompt = sent[0].body["messages"][0]["content"]
    assert train["rationale"][0] == sample_text(prompt, 0)  # the trace, from reasoning_content
    assert set(train["teacher_answer"]) == {"Therefore, the answer is yes."}
    assert train["correct"] == [a == "yes" for a in train["answer"]]
    report = json.loads((out / "yield_report.json").read_text())["reports"][0]
    assert report["requests"] == 5 and report["protocol"] == "one_stage" and report["prompt_tokens"] > 0
    expected = (report["prompt_tokens"] * 1.0 + report["completion_tokens"] * 2.0) / 1e6
    assert report["cost"] == pytest.approx(expected)
    printed = capsys.readouterr().out
    assert "coin_flip: 5 requests sent, 0 samples from the cache" in printed and "per kept rationale" in printed
    card = (out / "README.md").read_text()
    assert "Teacher requests and tokens" in card and "| coin_flip | one_stage | 5 | 0 |" in card


@pytest.mark.parametrize("interleave", [True, False])
def test_each_chunk_gets_its_stage_2_before_the_next_chunk_starts(interleave):
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    with FakeOpenAIServer() as server:
        teacher = OpenAITeacher.from_config(model="m", base_url=[server.base_url], max_concurrency=2)
        try:
            augmenter = RationaleAugmenter(teacher, "coin_flip", interleave_stages=interleave)
            everything, _ = augment(records(6), augmenter, keep="all")
        finally:
            teacher.close()
        stages = ["2" if "Therefore" in r.body["prompt"] else "1" for r in server.requests]
    assert everything.num_rows == 6
    assert "".join(stages) == ("112211221122" if interleave else "111111222222")


def test_ftcot_run_with_a_chat_teacher_and_prices(tiny_gpt2, tmp_path, mirror):
    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        code = main(["run", "--teacher", "openai", "--teacher_model", "m", "--base_url", server.base_url,
                     "--chat", "true", "--price_input_per_mtok", "0.2", "--price_output_per_mtok", "0.6",
                     "--keep", "all", "--student", str(tiny_gpt2), "--limit_train", "4", "--limit_test", "2",
                     "--num_train_epochs", "1", "--eval_max_new_tokens", "4", "--eval_untrained", "false",
                     "--max_length", "128", "--cpu_threads", "1", "--data_dir", str(mirror),
                     "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out)])  # fmt: skip
        paths = {r.path for r in server.requests}
    assert code == 0 and paths == {"/v1/chat/completions"}
    report = json.loads((out / "rationales" / "yield_report.json").read_text())["reports"][0]
    assert report["protocol"] == "one_stage" and report["requests"] == 4 and report["cost"] > 0


def test_ftcot_teach_with_teacher_kwargs_against_a_server_that_ignores_n(tmp_path, mirror):
    """The README's llama.cpp command, against the loopback server acting as llama.cpp does (one choice only)."""
    out = tmp_path / "out"
    with FakeOpenAIServer(ignore_n=True) as server:
        code = main(["teach", "--tasks", "coin_flip", "--limit", "3", "--teacher", "openai", "--model", "local",
                     "--base_url", server.base_url, "--degree", "4", "--keep", "all", "--data_dir", str(mirror),
                     "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out),
                     "--teacher_kwargs", '{"extra_body": {"repeat_penalty": 1.0}, "timeout": 300}'])  # fmt: skip
        bodies = [r.body for r in server.requests]
    assert code == 0
    assert all(b["repeat_penalty"] == 1.0 for b in bodies)
    assert load_dataset(str(out), "coin_flip")["train"].num_rows == 12  # D=4 though the server ignores n
