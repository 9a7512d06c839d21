"""The ``openai`` teacher against a real loopback server speaking the OpenAI protocol (``tests/fake_openai_server``).

Offline and quick (< 30 s): latencies are tens of milliseconds, the one deliberate wait is a 1 s ``Retry-After``.
Malformed responses (invalid JSON, empty ``choices``, too few choices) are *not* retried: they raise
:class:`TeacherError` after exactly one request (asserted below).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
import traceback
from collections import Counter

import pytest

from ftcot_hf.teachers.base import TEACHERS, Request, SamplingParams, TeacherError
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache
from ftcot_hf.teachers.http.openai import OpenAITeacher
from ftcot_hf.teachers.http.transport import parse_retry_after as _parse_retry_after
from ftcot_hf.teachers.http.urls import resolve_api_key as _resolve_api_key
from tests.fake_openai_server import FakeOpenAIServer, dead_base_url, sample_text

SECRET = "sk-test-DO-NOT-LEAK-7f3a9c"
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}
"""Backoff small enough for tests (Retry-After still wins where a server sends it)."""


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


@pytest.fixture
def make_teacher():
    """OpenAITeacher factory; every teacher made is closed at the end of the test."""
    made: list[OpenAITeacher] = []

    def make(base_url, **kwargs) -> OpenAITeacher:
        kwargs.setdefault("api_key", SECRET)
        teacher = OpenAITeacher(kwargs.pop("model", "fake-model"), base_url, **{**FAST, **kwargs})
        made.append(teacher)
        return teacher

    yield make
    for teacher in made:
        teacher.close()


def run_all(teacher, requests):
    """Every result by position (asserting each position is yielded exactly once)."""
    positions = []
    out = {}
    for pos, gens in teacher.generate(requests):
        positions.append(pos)
        out[pos] = gens
    assert sorted(positions) == list(range(len(requests)))
    return out


# -- protocol ---------------------------------------------------------------------------------------------------------
def test_completions_text_finish_reason_token_counts_and_request_body(server, make_teacher):
    prompt = "Q: There are 3 apples and 2 pears. How many fruits? A: Let's think step by step."
    params = SamplingParams(temperature=0.0, max_tokens=64, top_p=0.9, stop=("\n\n",), seed=11)
    teacher = make_teacher(server.base_url)
    [gen] = run_all(teacher, [Request(prompt, params)])[0]
    expected = sample_text(prompt, 0, seed=11)
    assert gen.text == expected and gen.finish_reason == "stop"
    assert gen.prompt_tokens == len(prompt.split()) and gen.completion_tokens == len(expected.split())
    [req] = server.requests
    assert req.path == "/v1/completions"
    assert req.body["model"] == "fake-model" and req.body["prompt"] == prompt
    assert req.body["max_tokens"] == 64 and req.body["temperature"] == 0.0 and req.body["top_p"] == 0.9
    assert req.body["stop"] == ["\n\n"] and req.body["seed"] == 11 and "n" not in req.body
    assert req.authorization == f"Bearer {SECRET}"


def test_chat_sends_one_user_message(server, make_teacher):
    prompt = "Which is larger, 9.11 or 9.9?"
    teacher = make_teacher(server.base_url)
    [gen] = run_all(teacher, [Request(prompt, SamplingParams(max_tokens=32), chat=True)])[0]
    assert gen.text == sample_text(prompt, 0) and gen.finish_reason == "stop"
    assert gen.prompt_tokens == len(prompt.split()) and gen.completion_tokens == len(gen.text.split())
    [req] = server.requests
    assert req.path == "/v1/chat/completions"
    assert req.body["messages"] == [{"role": "user", "content": prompt}] and "prompt" not in req.body


def test_n_samples_in_one_request(server, make_teacher):
    teacher = make_teacher(server.base_url)
    gens = run_all(teacher, [Request("p", SamplingParams(temperature=0.7), n=3)])[0]
    assert [g.text for g in gens] == [sample_text("p", j) for j in range(3)]
    assert sum(g.completion_tokens for g in gens) == sum(len(sample_text("p", j).split()) for j in range(3))
    assert len(server.requests) == 1 and server.requests[0].body["n"] == 3


def test_supports_n_false_sends_n_requests_with_distinct_seeds(server, make_teacher):
    teacher = make_teacher(server.base_url, supports_n=False)
    gens = run_all(teacher, [Request("p", SamplingParams(temperature=0.7, seed=5), n=3)])[0]
    assert len(server.requests) == 3 and all("n" not in r.body for r in server.requests)
    assert sorted(r.body["seed"] for r in server.requests) == [5, 6, 7]
    assert [g.text for g in gens] == [sample_text("p", 0, seed=s) for s in (5, 6, 7)]  # in sample order


def test_resuming_seeded_samples_never_repeats_cached_ones(server, make_teacher):
    """Samples 3..4 of a seeded prompt are choices 3..4 of the seeded n=5 request, not a repeat of 0..1."""
    teacher = make_teacher(server.base_url)
    params = SamplingParams(temperature=0.7, seed=1)
    gens = run_all(teacher, [Request("p", params, n=2, first_index=3)])[0]
    assert [g.text for g in gens] == [sample_text("p", j, seed=1) for j in (3, 4)]
    assert server.requests[0].body["n"] == 5


@pytest.mark.parametrize("max_tokens", [2])
def test_length_truncation_gives_finish_reason_length(server, make_teacher, max_tokens):
    teacher = make_teacher(server.base_url)
    [gen] = run_all(teacher, [Request("p", SamplingParams(max_tokens=max_tokens))])[0]
    assert gen.text == "Answer for" and gen.finish_reason == "length" and gen.completion_tokens == 2
    server.faults.append(("length",))
    [gen] = run_all(teacher, [Request("q")])[0]
    assert gen.finish_reason == "length"


# -- servers that ignore n (llama.cpp) --------------------------------------------------------------------------------
def n_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "ignores `n`" in r.getMessage()]


@pytest.mark.parametrize("concurrency", [1, 8])
def test_server_ignoring_n_gets_one_request_per_sample_after_one_warning(make_teacher, caplog, concurrency):
    caplog.set_level(logging.INFO)
    params = SamplingParams(temperature=0.7, seed=5)
    with FakeOpenAIServer(ignore_n=True) as server:
        teacher = make_teacher(server.base_url, max_concurrency=concurrency)  # supports_n: auto (the default)
        out = run_all(teacher, [Request(f"p{i}", params, n=4) for i in range(6)])
        # sample j of a seeded prompt is the request seeded 5 + j (as with supports_n=False): 4 distinct samples
        for i in range(6):
            assert [g.text for g in out[i]] == [sample_text(f"p{i}", 0, seed=5 + j) for j in range(4)]
        assert len(n_warnings(caplog)) == 1 and SECRET not in caplog.text
        assert server.base_url in n_warnings(caplog)[0].getMessage()
        if concurrency == 1:  # one n=4 probe, its 3 missing samples, then one request per sample for the rest
            assert [r.body.get("n", 1) for r in server.requests] == [4] + [1] * 23
        # later calls send n=1 from the start, and resuming a seeded prompt gives new samples, no repeats
        server.reset()
        [gens] = run_all(teacher, [Request("p0", params, n=2, first_index=4)]).values()
        assert [g.text for g in gens] == [sample_text("p0", 0, seed=s) for s in (9, 10)]
        assert [r.body.get("n", 1) for r in server.requests] == [1, 1]
        assert len(n_warnings(caplog)) == 1


def test_server_ignoring_n_on_a_resumed_seeded_prompt_gives_the_missing_samples(make_teacher, caplog):
    """Samples 3..4 ask for n=5 and drop 3 choices: a server that ignores n answers one, so none is usable."""
    with FakeOpenAIServer(ignore_n=True) as server:
        teacher = make_teacher(server.base_url, max_concurrency=1)
        params = SamplingParams(temperature=0.7, seed=1)
        [gens] = run_all(teacher, [Request("p", params, n=2, first_index=3)]).values()
        assert [g.text for g in gens] == [sample_text("p", 0, seed=s) for s in (4, 5)]
        assert [r.body.get("n", 1) for r in server.requests] == [5, 1, 1]
        assert len(n_warnings(caplog)) == 1


def test_supports_n_forced(make_teacher, caplog):
    """False: one n=1 request per sample from the start (no probe, no warning); True: too few choices is an error."""
    with FakeOpenAIServer(ignore_n=True) as server:
        teacher = OpenAITeacher.from_config(model="fake-model", base_url=[server.base_url], supports_n=False, **FAST)
        try:
            out = run_all(teacher, [Request(f"p{i}", SamplingParams(temperature=0.7), n=4) for i in range(3)])
        finally:
            teacher.close()
        assert all(len(gens) == 4 for gens in out.values())
        assert len(server.requests) == 12 and all("n" not in r.body for r in server.requests)
        assert n_warnings(caplog) == []
        server.reset()
        teacher = make_teacher(server.base_url, supports_n=True)
        with pytest.raises(TeacherError, match="1 choice.*n=4.*supports_n=False"):
            run_all(teacher, [Request("p", n=4)])
        assert len(server.requests) == 1


# -- from_config and the backend options ------------------------------------------------------------------------------
def test_from_config_builds_the_teacher_with_its_options(server):
    teacher = OpenAITeacher.from_config(
        model="fake-model", base_url=[server.base_url], tasks=["coin_flip"], data_dir="/nowhere",
        max_concurrency=3, timeout=7.5, max_retries=2, api_key=SECRET,
    )  # fmt: skip
    with teacher:
        assert isinstance(teacher, OpenAITeacher) and teacher is not TEACHERS["openai"]
        assert (teacher.max_concurrency, teacher.timeout, teacher.max_retries, teacher.supports_n) == (3, 7.5, 2, None)
        assert run_all(teacher, [Request("p")])[0][0].text == sample_text("p", 0)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"base_url": ["http://127.0.0.1:1/v1"]}, "needs --teacher_model"),
        ({"model": "m"}, "needs --base_url"),
        ({"model": "m", "base_url": []}, "needs --base_url"),
        (
            {"model": "m", "base_url": ["http://127.0.0.1:1/v1"], "max_concurency": 4},
            "max_concurency.*max_concurrency",
        ),
    ],
)
def test_from_config_errors_are_one_line_saying_what_to_pass(config, match):
    with pytest.raises(ValueError, match=match) as info:
        OpenAITeacher.from_config(**config)
    message = str(info.value)
    assert "\n" not in message and message.startswith("The openai teacher")
    if "max_concurency" in config:  # the accepted options are listed
        assert all(name in message for name in ("supports_n", "extra_body", "seed", "timeout", "api_key_env"))


def test_extra_body_seed_and_stop_reach_the_server(server):
    teacher = OpenAITeacher.from_config(
        model="fake-model", base_url=[server.base_url], extra_body={"repeat_penalty": 1.0, "top_k": 1}, seed=3,
        stop=["\nQ:"],
    )  # fmt: skip
    with teacher:
        run_all(teacher, [Request("p", SamplingParams(stop=("\n\n",))), Request("q", SamplingParams(seed=8))])
    bodies = {r.body["prompt"]: r.body for r in server.requests}
    assert bodies["p"]["repeat_penalty"] == 1.0 and bodies["p"]["top_k"] == 1
    assert bodies["p"]["seed"] == 3 and bodies["q"]["seed"] == 8  # the request's own seed wins
    assert bodies["p"]["stop"] == ["\n\n", "\nQ:"] and bodies["q"]["stop"] == ["\nQ:"]
    assert teacher.identity() == {
        "backend": "openai", "model": "fake-model", "extra_body": {"repeat_penalty": 1.0, "top_k": 1}, "seed": 3,
        "stop": ["\nQ:"],
    }  # fmt: skip


def test_api_key_env_names_the_variable_holding_the_key(server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FTCOT_TEST_KEY", SECRET)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server.faults.append(("401",))
    with OpenAITeacher.from_config(model="fake-model", base_url=[server.base_url], api_key_env="FTCOT_TEST_KEY") as t:
        with pytest.raises(TeacherError, match="HTTP 401.*FTCOT_TEST_KEY") as info:
            run_all(t, [Request("p")])
        assert server.requests[0].authorization == f"Bearer {SECRET}"
        assert_clean(info.value, t, caplog)
    monkeypatch.delenv("FTCOT_TEST_KEY")
    with pytest.raises(ValueError, match="FTCOT_TEST_KEY.*not set"):
        OpenAITeacher.from_config(model="m", base_url=["http://127.0.0.1:1/v1"], api_key_env="FTCOT_TEST_KEY")


# -- concurrency ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", [1, 4])
def test_concurrency_bound(make_teacher, limit):
    with FakeOpenAIServer(latency=0.05) as server:
        teacher = make_teacher(server.base_url, max_concurrency=limit)
        run_all(teacher, [Request(f"p{i}") for i in range(12)])
        assert server.max_in_flight == limit  # bounded, and actually concurrent when allowed


def test_supports_n_false_bound_counts_http_requests(make_teacher):
    with FakeOpenAIServer(latency=0.05) as server:
        teacher = make_teacher(server.base_url, max_concurrency=3, supports_n=False)
        out = run_all(teacher, [Request(f"p{i}", n=4) for i in range(3)])
        assert server.max_in_flight == 3 and len(server.requests) == 12
        assert all(len(gens) == 4 for gens in out.values())


def test_results_are_yielded_as_they_complete(make_teacher):
    """A slow first request does not hold back the others: they arrive while it is still running."""
    with FakeOpenAIServer(latency=lambda body: 1.5 if body.get("prompt") == "slow" else 0.02) as server:
        teacher = make_teacher(server.base_url, max_concurrency=4)
        start = time.monotonic()
        arrivals = [(pos, time.monotonic() - start) for pos, _ in teacher.generate([Request("slow")] + [
            Request(f"fast {i}") for i in range(9)])]  # fmt: skip
    assert [pos for pos, _ in arrivals][-1] == 0
    assert all(t < 1.0 for pos, t in arrivals if pos != 0)
    assert arrivals[-1][1] >= 1.4


def test_stopping_early_cancels_the_rest(make_teacher):
    with FakeOpenAIServer(latency=0.2) as server:
        teacher = make_teacher(server.base_url, max_concurrency=2)
        for _ in teacher.generate([Request(f"p{i}") for i in range(20)]):
            break
        time.sleep(0.3)
        assert len(server.requests) <= 4  # the queue was dropped, not worked through
        assert len(run_all(teacher, [Request("again")])) == 1  # and the teacher still works


# -- retries and errors -----------------------------------------------------------------------------------------------
def test_429_waits_for_retry_after(server, make_teacher):
    server.faults.append(("429", 1))
    teacher = make_teacher(server.base_url, max_concurrency=1)
    [gen] = run_all(teacher, [Request("p")])[0]
    assert gen.text == sample_text("p", 0)
    first, second = server.requests
    assert 0.95 <= second.time - first.time < 1.6
    assert teacher.stats["http_429"] == 1 and teacher.stats["retries"] == 1


@pytest.mark.parametrize("http_backend", ["httpx", "aiohttp"])
def test_500_timeout_and_dropped_connection_are_retried(server, make_teacher, http_backend):
    # the timeout leaves a healthy answer on a loaded machine ample time; the timeout fault outlasts it 20x
    server.faults.extend([("500",), ("timeout", 30.0), ("drop",)])
    teacher = make_teacher(server.base_url, max_concurrency=1, timeout=1.5, http_backend=http_backend)
    [gen] = run_all(teacher, [Request("p")])[0]
    assert gen.text == sample_text("p", 0)
    assert len(server.requests) == 4
    assert teacher.stats["http_5xx"] == 1 and teacher.stats["timeouts"] == 1 and teacher.stats["retries"] == 3


@pytest.mark.parametrize("fault", [("400",), ("401",), ("404",), ("429", None)])
def test_both_http_backends_send_the_same_request_and_word_failures_alike(server, make_teacher, fault):
    """The aiohttp backend posts through its own session (not the openai client): same body, same auth header,
    same error text as the openai client's httpx transport."""
    messages = []
    for backend in ("httpx", "aiohttp"):
        server.faults.append(fault)
        teacher = make_teacher(server.base_url, http_backend=backend, max_retries=0)
        with pytest.raises(TeacherError) as info:
            run_all(teacher, [Request("p", SamplingParams(temperature=0.7, max_tokens=9, stop=("END",)))])
        assert (teacher._fleet.endpoints[0].session is not None) == (backend == "aiohttp")
        messages.append(str(info.value))
    first, second = server.requests
    assert first.body == second.body and first.path == second.path and first.authorization == second.authorization
    assert messages[0] == messages[1] and f"HTTP {fault[0]}" in messages[0]


def test_gives_up_after_max_retries(server, make_teacher):
    server.faults.extend([("503",)] * 3)
    teacher = make_teacher(server.base_url, max_retries=2)
    with pytest.raises(TeacherError, match="gave up.*HTTP 503") as info:
        run_all(teacher, [Request("p")])
    assert len(server.requests) == 3
    assert server.base_url in str(info.value) and "'fake-model'" in str(info.value)


def assert_clean(error: BaseException, teacher: OpenAITeacher, caplog) -> None:
    text = str(error)
    assert SECRET not in text and SECRET not in caplog.text
    assert SECRET not in repr(teacher) and SECRET not in str(teacher.identity())
    assert SECRET not in "".join(traceback.format_exception(error))
    assert "Traceback" not in text and "File " not in text
    assert teacher.base_urls[0] in text and "fake-model" in text


@pytest.mark.parametrize(
    "fault, match",
    [
        (("malformed",), "not valid JSON"),
        (("empty_choices",), "empty 'choices'"),
        (("few_choices",), "1 choice.*n=2.*supports_n=False"),
        (("400",), "HTTP 400"),
        (("401",), "HTTP 401.*API key"),
        (("404",), "HTTP 404.*/v1"),
    ],
)
def test_bad_responses_raise_a_clean_teacher_error_without_retrying(server, make_teacher, caplog, fault, match):
    caplog.set_level(logging.DEBUG)
    server.faults.append(fault)
    teacher = make_teacher(server.base_url, supports_n=True)  # forced: by default, too few choices fall back
    with pytest.raises(TeacherError, match=match) as info:
        run_all(teacher, [Request("p", n=2)])
    assert len(server.requests) == 1
    assert server.requests[0].authorization == f"Bearer {SECRET}"  # the key was really in use
    assert_clean(info.value, teacher, caplog)


def test_unknown_model_names_the_model_and_the_fix(make_teacher, caplog):
    with FakeOpenAIServer(model="served-model") as server:
        teacher = make_teacher(server.base_url, model="fake-model")
        with pytest.raises(TeacherError, match="does not exist.*model name") as info:
            run_all(teacher, [Request("p")])
        assert_clean(info.value, teacher, caplog)


def test_server_echoing_the_key_is_scrubbed(server, make_teacher):
    teacher = make_teacher(server.base_url)
    assert teacher._scrub(f"invalid key {SECRET}") == "invalid key ***"


# -- fleets -----------------------------------------------------------------------------------------------------------
def test_fleet_routes_around_a_dead_server_and_spreads_load(make_teacher, caplog):
    with FakeOpenAIServer(latency=0.02) as a, FakeOpenAIServer(latency=0.02) as b:
        dead = dead_base_url()
        teacher = make_teacher([dead, a.base_url, b.base_url], max_concurrency=8)
        out = run_all(teacher, [Request(f"p{i}", n=2) for i in range(60)])
        assert all(g.text == sample_text(f"p{i}", j) for i, gens in out.items() for j, g in enumerate(gens))
        assert len(a.requests) + len(b.requests) == 60
        assert min(len(a.requests), len(b.requests)) >= 15  # both live servers share the work
        assert teacher.stats["marked_down"] == 1 and teacher.stats["connection_errors"] <= 8
        assert "marked down" in caplog.text


def test_fleet_fails_only_when_every_server_is_down(make_teacher):
    teacher = make_teacher([dead_base_url(), dead_base_url()], max_retries=2)
    with pytest.raises(TeacherError, match="gave up.*cannot connect"):
        run_all(teacher, [Request("p")])


def test_fleet_shares_identity_and_is_registered():
    one = OpenAITeacher("m", "http://a:8000/v1", api_key=SECRET)
    two = OpenAITeacher("m", "http://b:8000/v1, http://c:8000/v1", api_key=SECRET)
    assert TEACHERS["openai"] is OpenAITeacher
    assert one.identity() == two.identity() == {"backend": "openai", "model": "m"}
    assert two.base_urls == ["http://b:8000/v1", "http://c:8000/v1"]
    assert OpenAITeacher("m", "http://a/v1", extra_body={"top_k": 5}).identity()["extra_body"] == {"top_k": 5}
    assert "pw" not in repr(OpenAITeacher("m", "http://user:pw@a:8000/v1"))


# -- cache ------------------------------------------------------------------------------------------------------------
def test_cached_rerun_makes_zero_http_requests(server, make_teacher, tmp_path):
    requests = [Request(f"p{i}", SamplingParams(temperature=0.7), n=2, chat=i % 3 == 0) for i in range(25)]
    first = CachedTeacher(make_teacher(server.base_url), RequestCache(tmp_path / "cache.sqlite"))
    before = run_all(first, requests)
    assert first.calls == 25 and len(server.requests) == 25
    # a different port (another server of the fleet) serves the same model: same cache rows
    second = CachedTeacher(make_teacher(dead_base_url()), RequestCache(tmp_path / "cache.sqlite"))
    assert run_all(second, requests) == before
    assert second.calls == 0 and len(server.requests) == 25
    more = [Request(r.prompt, r.params, 3, r.first_index, r.chat) for r in requests[:2]]
    third = CachedTeacher(make_teacher(server.base_url), RequestCache(tmp_path / "cache.sqlite"))
    run_all(third, more)  # only the missing third sample of each is asked for
    assert [r.body.get("n", 1) for r in server.requests[25:]] == [1, 1] and third.calls == 2


# -- keys and small parts ---------------------------------------------------------------------------------------------
def test_api_key_resolution(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_token_xyz")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    assert _resolve_api_key("arg-key", "http://localhost:8000/v1") == "arg-key"
    assert _resolve_api_key(None, "http://localhost:8000/v1") == "env-key"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert _resolve_api_key(None, "https://router.huggingface.co/v1") == "hf_token_xyz"
    assert _resolve_api_key(None, "http://localhost:8000/v1") == "EMPTY"  # an HF token is not sent elsewhere


def test_env_key_is_sent(server, make_teacher, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-123")
    teacher = make_teacher(server.base_url, api_key=None)
    run_all(teacher, [Request("p")])
    assert server.requests[0].authorization == "Bearer env-key-123"


def test_parse_retry_after():
    from email.utils import formatdate

    assert _parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert _parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert 1 <= _parse_retry_after({"retry-after": formatdate(time.time() + 3, usegmt=True)}) <= 3
    assert _parse_retry_after({"retry-after": "soon"}) is None and _parse_retry_after({}) is None
    assert _parse_retry_after({"retry-after": "86400"}) == 300.0


def test_stats_count_each_http_request(server, make_teacher):
    teacher = make_teacher(server.base_url)
    run_all(teacher, [Request(f"p{i}") for i in range(5)])
    # and what the server billed: 1 prompt word and 4 completion words per request
    assert teacher.stats == Counter({"http_requests": 5, "billed_prompt_tokens": 5, "billed_completion_tokens": 20})


# -- a real OpenAI-compatible server ----------------------------------------------------------------------------------
_LLAMA_PYTHON = os.environ.get("FTCOT_LLAMA_CPP_PYTHON") or (
    sys.executable if importlib.util.find_spec("llama_cpp") else None
)


@pytest.mark.skipif(_LLAMA_PYTHON is None, reason="set FTCOT_LLAMA_CPP_PYTHON (llama-cpp-python venv)")
def test_against_llama_cpp_server(make_teacher):
    from tests.test_real_servers import _gguf, llama_cpp_server

    model = os.environ.get("FTCOT_LLAMA_CPP_MODEL") or (str(_gguf()) if _gguf() else None)
    if not model or not os.path.isfile(model):
        pytest.skip("set FTCOT_LLAMA_CPP_MODEL to a small local .gguf file")

    with llama_cpp_server(_LLAMA_PYTHON, model) as base_url:
        teacher = make_teacher(base_url, model="local", supports_n=False, timeout=120)
        params = SamplingParams(max_tokens=8, seed=0)
        out = run_all(teacher, [Request("Q: 2+2? A:", params, n=2), Request("Say hi.", params, chat=True)])
        for gens in out.values():
            assert all(g.finish_reason in ("stop", "length") and g.completion_tokens for g in gens)


def test_processes_is_not_an_option_any_more():
    """The worker-process pool was removed (one loop drives ~4,000 requests/s): the option is a clean error."""
    with pytest.raises(ValueError, match="takes no option processes"):
        OpenAITeacher.from_config(model="m", base_url="http://127.0.0.1:1/v1", processes=2)


def test_works_where_an_event_loop_is_already_running(server, make_teacher):
    """Jupyter runs one in the main thread; ``generate`` drives its own loop in a private thread."""
    import asyncio

    teacher = make_teacher(server.base_url)

    async def inside_a_loop():
        return run_all(teacher, [Request("p")])

    assert asyncio.run(inside_a_loop())[0][0].text == sample_text("p", 0)
