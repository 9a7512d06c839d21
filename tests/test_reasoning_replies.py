"""Reasoning models' replies: a trace in ``reasoning_content`` / ``reasoning`` or inline ``<think>``, one form."""

from __future__ import annotations

import pytest

from ftcot_hf.teachers.base import Request, SamplingParams, split_reasoning
from ftcot_hf.teachers.http.openai import OpenAITeacher
from tests.fake_openai_server import FakeOpenAIServer, sample_text


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_separate_reasoning_field_is_kept_inline_before_the_answer(field):
    prompt = "Q: Is 4 even?\nA: Let's think step by step."
    with FakeOpenAIServer(faults=[("reasoning", field, "Therefore, the answer is yes.")]) as server:
        teacher = OpenAITeacher.from_config(model="m", base_url=[server.base_url])
        try:
            [(_, [gen])] = list(teacher.generate([Request(prompt, SamplingParams(max_tokens=64), chat=True)]))
        finally:
            teacher.close()
    parts = split_reasoning(gen.text)
    assert parts.trace == sample_text(prompt, 0) and parts.answer == "Therefore, the answer is yes."
    assert parts.complete


def test_null_content_with_a_trace_is_a_trace_without_an_answer():
    with FakeOpenAIServer(faults=[("reasoning", "reasoning_content", None)]) as server:
        teacher = OpenAITeacher.from_config(model="m", base_url=[server.base_url])
        try:
            [(_, [gen])] = list(teacher.generate([Request("Q: x", SamplingParams(max_tokens=64), chat=True)]))
        finally:
            teacher.close()
    parts = split_reasoning(gen.text)
    assert parts.trace and parts.answer == "" and parts.complete


@pytest.mark.parametrize(
    "text,trace,answer,complete",
    [
        ("<think>2 + 2 = 4</think>The answer is 4.", "2 + 2 = 4", "The answer is 4.", True),
        ("2 + 2 = 4</think>\n\nThe answer is 4.", "2 + 2 = 4", "The answer is 4.", True),  # template opened it
        ("<think>2 + 2 = 4 and then", "2 + 2 = 4 and then", "", False),  # cut before </think>
        ("Plain reasoning. Therefore, the answer is 4.", None, "Plain reasoning. Therefore, the answer is 4.", True),
    ],
)
def test_split_reasoning(text, trace, answer, complete):
    parts = split_reasoning(text)
    assert (parts.trace, parts.answer, parts.complete) == (trace, answer, complete)
