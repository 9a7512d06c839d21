"""The ``vllm`` teacher (vLLM's in-process engine) against a small stand-in of the ``vllm`` package
(``tests/fake_vllm``: its ``LLM`` and ``SamplingParams`` record what they receive), so it runs in CI where vLLM cannot
be installed: engine options, sampling parameters, seeded samples resumed, chat through the model's template,
results yielded as the engine finishes them, refused prompts, reasoning traces, the data-parallel workers, and
``ftcot teach --teacher vllm`` with its cache. The real engine: ``tests/test_real_servers.py``
(``test_vllm_offline_engine``, where ``$FTCOT_VLLM_PYTHON`` names vLLM's venv)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.teach import TeachConfig
from ftcot_hf.teachers import TEACHERS, build_teacher
from ftcot_hf.teachers.base import Request, SamplingParams, TeacherError, is_failure
from ftcot_hf.teachers.vllm import VLLMTeacher

FAKE = Path(__file__).parent / "fake_vllm"


def _drop_vllm() -> None:
    for name in [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")]:
        del sys.modules[name]


@pytest.fixture
def vllm(monkeypatch):
    """The fake ``vllm`` importable (here and in spawned processes), its recordings empty."""
    monkeypatch.syspath_prepend(str(FAKE))
    _drop_vllm()
    import vllm

    yield vllm
    _drop_vllm()


def _texts(teacher, requests):
    return {pos: [(g.text, g.finish_reason, g.completion_tokens) for g in gens]
            for pos, gens in teacher.generate(requests)}  # fmt: skip


def test_registered_lazily_as_the_vllm_backend(vllm):
    assert TEACHERS["vllm"] is VLLMTeacher and VLLMTeacher.backend == "vllm"


def test_engine_options_go_to_vllm_llm_and_only_those_given(vllm):
    teacher = VLLMTeacher.from_config(model="org/model", tensor_parallel_size=2, enable_prefix_caching=True,
                                      max_model_len=4096, dtype="bfloat16",
                                      engine_kwargs={"trust_remote_code": True})  # fmt: skip
    assert not vllm.LLM.instances  # built for the first request: a run the cache answers never loads the model
    list(teacher.generate([Request("say: x")]))
    [llm] = vllm.LLM.instances
    assert llm.model == "org/model"
    assert llm.kwargs == {"tensor_parallel_size": 2, "enable_prefix_caching": True, "max_model_len": 4096,
                          "dtype": "bfloat16", "trust_remote_code": True}  # fmt: skip
    assert teacher.identity() == {"backend": "vllm", "model": "org/model"}
    assert VLLMTeacher.from_config(model="org/model", name="m", seed=3).identity() == {
        "backend": "vllm", "model": "m", "seed": 3}  # fmt: skip


def test_an_unknown_option_is_one_line_naming_the_valid_ones(vllm):
    config = TeachConfig(teacher="vllm", model="org/model", teacher_kwargs={"tensor_parallel": 2})
    with pytest.raises(FtcotError) as e:
        build_teacher(config, ["coin_flip"])
    message = str(e.value)
    assert "\n" not in message and "tensor_parallel" in message
    for name in ("tensor_parallel_size", "data_parallel_size", "enable_prefix_caching", "max_model_len", "dtype"):
        assert name in message
    assert not vllm.LLM.instances  # refused before any engine is built


def test_a_wrong_type_and_a_base_url_are_refused_in_one_line(vllm):
    with pytest.raises(FtcotError, match="max_model_len"):
        build_teacher(TeachConfig(teacher="vllm", model="m", teacher_kwargs={"max_model_len": "4k"}), ["coin_flip"])
    with pytest.raises(FtcotError, match="--teacher openai"):
        VLLMTeacher.from_config(model="m", base_url=["http://localhost:8000/v1"])
    with pytest.raises(FtcotError, match="engine_kwargs repeat dtype"):
        VLLMTeacher.from_config(model="m", engine_kwargs={"dtype": "half"})
    with pytest.raises(FtcotError, match="at least 1"):
        VLLMTeacher.from_config(model="m", tensor_parallel_size=0)


def test_without_vllm_installed_the_error_says_how_to_get_it(monkeypatch, capsys, tmp_path, mirror):
    _drop_vllm()
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    code = main(["teach", "--tasks", "coin_flip", "--limit", "2", "--teacher", "vllm", "--model", "org/model",
                 "--data_dir", str(mirror), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "ftcot-hf[vllm]" in err[0] and "--teacher openai" in err[0]


def test_a_model_vllm_cannot_load_is_one_line(vllm):
    with pytest.raises(FtcotError) as e:
        list(VLLMTeacher.from_config(model="missing/model").generate([Request("say: x")]))
    assert "missing/model" in str(e.value) and "second line" not in str(e.value)


def test_sampling_parameters_map_onto_vllm_sampling_params(vllm):
    teacher = VLLMTeacher.from_config(model="m")
    params = SamplingParams(temperature=0.7, max_tokens=5, top_p=0.9, stop=("###",), seed=11)
    requests = [Request("Q: say: a b ### c", params, n=2), Request("Q: long", SamplingParams(max_tokens=3))]
    out = _texts(teacher, requests)
    first, second = vllm.SamplingParams.made
    assert vars(first) == {"n": 2, "temperature": 0.7, "top_p": 0.9, "max_tokens": 5, "stop": ["###"], "seed": 11}
    assert vars(second) == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 3, "stop": None, "seed": None}
    # the stop string is left out and ends the text; max_tokens cuts it (length); tokens are the engine's count
    assert out[0] == [(" s11:a s11:b s11:", "stop", 3)] * 2
    assert out[1] == [(" t0_0 t0_1 t0_2", "length", 3)]


def test_a_seeded_request_resumed_at_sample_i_gets_choice_i_as_a_server_gives_it(vllm):
    """Sample i of a seeded prompt is choice i of the request (as over HTTP): samples 2..3 asked after 0..1 are the
    same as in one request for 0..3, not 0..1 drawn again."""
    teacher = VLLMTeacher.from_config(model="m")
    params = SamplingParams(temperature=0.7, max_tokens=2, seed=5)
    [(_, whole)] = teacher.generate([Request("Q: x", params, n=4)])
    [(_, tail)] = teacher.generate([Request("Q: x", params, n=2, first_index=2)])
    assert vllm.SamplingParams.made[-1].n == 4  # asked for 2 + 2 choices, dropped the first 2
    assert [g.text for g in tail] == [g.text for g in whole[2:]] and whole[0].text != whole[2].text
    # the teacher's own seed applies to requests without one, and is part of the cache identity
    seeded = VLLMTeacher.from_config(model="m", seed=9)
    [(_, [gen])] = seeded.generate([Request("Q: say: w", SamplingParams(temperature=0.7))])
    assert gen.text == " s9:w"


def test_chat_requests_use_the_models_template_and_raw_ones_do_not(vllm):
    teacher = VLLMTeacher.from_config(model="m")
    out = dict(teacher.generate([Request("say: hi"), Request("say: there", chat=True), Request("say: raw")]))
    assert [o.text for o in out[0]] == [" hi"] and [o.text for o in out[1]] == [" there"]
    [llm] = vllm.LLM.instances
    prompts = [p for p in (out[i][0].prompt_tokens for i in range(3))]
    assert prompts == [2, 4, 2]  # "say: x" is 2 words; the chat one is in the template's 2 more
    vllm.LLM.chat_template = None
    try:
        with pytest.raises(TeacherError, match="chat template"):
            list(VLLMTeacher.from_config(model="m").generate([Request("say: hi", chat=True)]))
    finally:
        vllm.LLM.chat_template = "<|user|> {content} <|assistant|>"
    assert llm.llm_engine.steps >= 3


def test_results_are_yielded_as_the_engine_finishes_them_at_their_positions(vllm):
    teacher = VLLMTeacher.from_config(model="m")
    requests = [Request(f"say: w{i}") for i in range(5)]
    order = [pos for pos, _ in teacher.generate(requests)]
    assert order == [4, 3, 2, 1, 0]  # the fake finishes the last submitted first
    out = dict(teacher.generate(requests))
    assert {pos: gens[0].text for pos, gens in out.items()} == {i: f" w{i}" for i in range(5)}
    assert teacher.counters() == {"requests": 10}


def test_a_prompt_the_engine_refuses_fails_alone(vllm):
    teacher = VLLMTeacher.from_config(model="m", max_model_len=4)
    requests = [Request("say: a"), Request("one two three four five six"), Request("say: b")]
    with pytest.raises(TeacherError) as e:
        list(teacher.generate(requests))
    assert "maximum model length" in str(e.value) and "\n" not in str(e.value)
    teacher.keep_going = True
    out = dict(teacher.generate(requests))
    assert is_failure(out[1]) and "maximum model length" in str(out[1].error)
    assert out[0][0].text == " a" and out[2][0].text == " b"


def test_an_older_vllm_without_enqueue_gives_the_same_results(vllm, monkeypatch):
    requests = [Request("say: a b", SamplingParams(max_tokens=1)), Request("say: c", chat=True),
                Request("one two three four five"), Request("say: d", SamplingParams(temperature=1.0, seed=2), n=2)]
    new = VLLMTeacher.from_config(model="m", max_model_len=4)
    new.keep_going = True
    new.start()
    monkeypatch.setattr(vllm, "LLM", vllm.OldLLM)
    old = VLLMTeacher.from_config(model="m", max_model_len=4)
    old.keep_going = True
    a, b = dict(new.generate(requests)), dict(old.generate(requests))
    assert not hasattr(old.llm, "enqueue") and hasattr(new.llm, "enqueue")
    assert is_failure(a[2]) and is_failure(b[2])
    assert {k: v for k, v in a.items() if k != 2} == {k: v for k, v in b.items() if k != 2}


def test_a_consumer_that_stops_early_leaves_nothing_running_in_the_engine(vllm):
    teacher = VLLMTeacher.from_config(model="m")
    results = teacher.generate([Request(f"say: w{i}") for i in range(4)])
    next(results)
    results.close()
    [llm] = vllm.LLM.instances
    assert sorted(llm.llm_engine.aborted) == ["0", "1", "2"] and not llm.llm_engine.has_unfinished_requests()


def test_a_reasoning_parser_puts_the_trace_inline_as_from_a_server(vllm):
    teacher = VLLMTeacher.from_config(model="m", reasoning_parser="deepseek_r1")
    assert teacher.identity()["reasoning_parser"] == "deepseek_r1"
    out = dict(teacher.generate([Request("say: think</think> yes"), Request("say: still thinking")]))
    assert out[0][0].text == "<think> think</think> yes"
    assert out[1][0].text == "<think> still thinking</think>"  # never closed: vLLM gives it all as reasoning
    with pytest.raises(FtcotError, match="deepseek_r1"):
        list(VLLMTeacher.from_config(model="m", reasoning_parser="nope").generate([Request("say: x")]))


def test_ftcot_teach_with_the_vllm_teacher_is_cached_and_resumed(vllm, tmp_path, mirror):
    args = ["teach", "--tasks", "coin_flip", "--limit", "3", "--teacher", "vllm", "--model", "org/m",
            "--degree", "2", "--keep", "all", "--data_dir", str(mirror), "--cache_dir", str(tmp_path / "c.sqlite"),
            "--teacher_kwargs", json.dumps({"max_model_len": 512, "seed": 1})]  # fmt: skip
    assert main([*args, "--output_dir", str(tmp_path / "a")]) == 0
    [llm] = vllm.LLM.instances
    assert llm.kwargs == {"max_model_len": 512}
    first = json.loads((tmp_path / "a" / "yield_report.json").read_text())["reports"][0]
    assert first["stages"]["rationale"]["requests"] == 3  # n=2 in one engine request per question
    assert main([*args, "--output_dir", str(tmp_path / "b")]) == 0
    again = json.loads((tmp_path / "b" / "yield_report.json").read_text())["reports"][0]
    assert again["requests"] == 0 and again["cache_hits"] == first["cache_hits"] + 3 * 2 + first["stages"]["answer"][
        "requests"]  # every sample of both stages from the cache
    assert len(vllm.LLM.instances) == 1  # the re-run never loaded the model


def test_data_parallel_engines_run_in_worker_processes_on_their_own_gpus(vllm, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    teacher = VLLMTeacher.from_config(model="m", data_parallel_size=2, tensor_parallel_size=2)
    teacher.start()
    procs = teacher._pool.procs
    try:
        assert not vllm.LLM.instances  # none in this process: vLLM's LLM refuses data_parallel_size > 1
        requests = [Request(f"whoami {i}") for i in range(4)] + [Request("say: hi", chat=True)]
        out = dict(teacher.generate(requests))
        seen = {tuple(out[i][0].text.split()) for i in range(4)}
        assert {dev for _, dev in seen} == {"dev4,5", "dev6,7"}
        assert len({pid for pid, _ in seen}) == 2 and f"pid{os.getpid()}" not in {pid for pid, _ in seen}
        assert out[4][0].text == " hi" and out[4][0].completion_tokens == 1
    finally:
        teacher.close()
    assert len(procs) == 2 and not any(p.is_alive() for p in procs)


def test_a_data_parallel_engine_that_cannot_start_is_one_line(vllm):
    with pytest.raises(FtcotError) as e:
        list(VLLMTeacher.from_config(model="missing/model", data_parallel_size=2).generate([Request("say: x")]))
    assert "could not start engine" in str(e.value) and "second line" not in str(e.value)


def test_ftcot_run_names_a_missing_model_or_vllm_before_any_work(monkeypatch, capsys, tmp_path, mirror):
    base = ["run", "--tasks", "coin_flip", "--teacher", "vllm", "--student", "gpt2", "--data_dir", str(mirror),
            "--output_dir", str(tmp_path / "run")]  # fmt: skip
    assert main(base) == 2
    assert "needs --teacher_model" in capsys.readouterr().err
    _drop_vllm()
    monkeypatch.setitem(sys.modules, "vllm", None)
    assert main([*base, "--teacher_model", "org/m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs vLLM" in err[0] and not (tmp_path / "run").exists()
