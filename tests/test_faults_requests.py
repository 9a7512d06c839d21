"""Requests that fail for good (issue 15, item 8): a 503 storm on some questions, malformed bodies and wrong-``n``
replies that do not go away. Retries stay per request; a request whose retries are spent is recorded as failed, the
run finishes the others, the failed samples are not cached and have no rows, the yield report counts them, `ftcot
teach` saves what succeeded and exits 3 with one line, and a re-run against a healthy server sends exactly the failed
requests. Before: the first request out of retries aborted the whole teach (nothing saved, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import main
from ftcot_hf.prompts import ANSWER_PHRASE
from ftcot_hf.tasks import resolve_task
from ftcot_hf.teach import TeachConfig, TeachIncompleteError, save_rationales, teach
from ftcot_hf.teachers.base import FailedRequest, Request, SamplingParams
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache
from ftcot_hf.teachers.http.openai import OpenAITeacher
from tests.fake_openai_server import FakeOpenAIServer, sample_text

SECRET = "sk-test-requests-DO-NOT-LEAK-91b2"
RETRIES = {"max_retries": 2, "backoff_base": 0.001, "backoff_max": 0.005}
"""Three attempts per request, with a backoff too small to notice."""
LIMIT = 6
FAILING = (1, 4)
"""The questions (positions among the first LIMIT) whose requests the storm hits."""


def _questions(mirror: Path) -> list[str]:
    return list(resolve_task("coin_flip").load(data_dir=str(mirror))["train"]["question"][:LIMIT])


def _prompt(body: dict) -> str:
    return str(body.get("prompt", ""))


def _of(prompt: str, questions: list[str]) -> int:
    """The position of the question a prompt is about."""
    [index] = [i for i, q in enumerate(questions) if f"Q: {q}\n" in prompt]
    return index


def _argv(server: FakeOpenAIServer, out: Path, cache: Path, mirror: Path) -> list[str]:
    return ["teach", "--tasks", "coin_flip", "--limit", str(LIMIT), "--teacher", "openai", "--model", "fake-model",
            "--base_url", server.base_url, "--keep", "all", "--data_dir", str(mirror), "--cache_dir", str(cache),
            "--output_dir", str(out), "--teacher_kwargs", json.dumps(RETRIES)]  # fmt: skip


def _rows(out: Path, tmp_path: Path, tag: str) -> list[int]:
    data = load_dataset(str(out), "coin_flip", cache_dir=str(tmp_path / f"hf-{tag}"))["train"]
    return sorted(data["sample_index"])


def test_a_503_storm_on_some_requests_fails_only_them_and_a_rerun_sends_exactly_them(
    mirror, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    questions = _questions(mirror)
    storm = [questions[i] for i in FAILING]
    out, cache = tmp_path / "rationales", tmp_path / "c.sqlite"

    def fault_for(body: dict) -> tuple | None:  # every attempt at these questions' requests: more than the budget
        return ("503",) if any(f"Q: {q}\n" in _prompt(body) for q in storm) else None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        assert main(_argv(server, out, cache, mirror)) == 3  # not 2 (bad input), not 0 (a silent success)
        printed = capsys.readouterr()
        sent = [_of(_prompt(r.body), questions) for r in server.requests]
    errors = [line for line in printed.err.splitlines() if line.startswith("ftcot: error:")]
    assert len(errors) == 1, printed.err
    line = errors[0].lower()
    assert "2 teacher request(s) failed" in line and "http 503" in line
    assert "re-run the same command: only the failed requests are sent again" in line
    assert "Traceback" not in printed.err and SECRET not in printed.err + printed.out
    assert "2 requests FAILED" in printed.out  # the ledger line of the summary
    # each stormed request had its whole budget (3 attempts), then the run went on; their stage 2 was never asked
    assert sorted(i for i in sent if i in FAILING) == [1, 1, 1, 4, 4, 4]
    assert len(sent) == 6 + 2 * (LIMIT - len(FAILING))  # the others: stage 1 + stage 2 once each

    # what succeeded is saved, the failed questions have no rows, the report counts them
    ok = [i for i in range(LIMIT) if i not in FAILING]
    indices = resolve_task("coin_flip").load(data_dir=str(mirror))["train"]["sample_index"][:LIMIT]
    assert _rows(out, tmp_path, "first") == sorted(indices[i] for i in ok)
    [report] = json.loads((out / "yield_report.json").read_text())["reports"]
    assert report["failed_requests"] == 2 and report["kept"] == len(ok) and report["samples"] == len(ok)
    assert SECRET not in (out / "yield_report.json").read_text() + (out / "README.md").read_text()
    assert len(RequestCache(cache)) == 2 * len(ok)  # successes (both stages) cached, failures not

    with FakeOpenAIServer() as healthy:  # the storm is over: the same command
        argv = _argv(healthy, out, cache, mirror)
        assert main(argv) == 0
        resent = [_of(_prompt(r.body), questions) for r in healthy.requests]
    assert sorted(resent) == [1, 1, 4, 4]  # exactly the failed stage-1 requests, then their stage 2
    assert _rows(out, tmp_path, "second") == sorted(indices)
    [report] = json.loads((out / "yield_report.json").read_text())["reports"]
    assert report["failed_requests"] == 0 and report["kept"] == LIMIT
    assert "FAILED" not in capsys.readouterr().out


def test_a_malformed_stage2_answer_is_reasked_then_only_that_sample_is_lost_and_teach_raises_after(mirror, tmp_path):
    questions = _questions(mirror)
    bad = questions[2]

    def fault_for(body: dict) -> tuple | None:  # stage 2 of one question: never valid JSON
        prompt = _prompt(body)
        return ("malformed",) if f"Q: {bad}\n" in prompt and ANSWER_PHRASE in prompt else None

    config = TeachConfig(tasks=["coin_flip"], limit=LIMIT, teacher="openai", model="fake-model", keep="all",
                         data_dir=str(mirror), cache_dir=str(tmp_path / "c.sqlite"), output_dir=str(tmp_path / "o"),
                         teacher_kwargs=RETRIES)  # fmt: skip
    with FakeOpenAIServer(fault_for=fault_for) as server:
        config.base_url = [server.base_url]
        with pytest.raises(TeachIncompleteError, match=r"1 teacher request\(s\) failed.*not valid JSON") as info:
            teach(config)  # `ftcot run` calls this: never an incomplete stage passed off as complete
        stage2 = [r for r in server.requests if f"Q: {bad}\n" in _prompt(r.body) and ANSWER_PHRASE in _prompt(r.body)]
    assert len(stage2) == 3  # re-asked up to the retry budget, not an instant abort
    error = info.value
    assert error.failed == 1 and "asked 3 time(s)" in str(error)
    [report] = error.reports
    assert report.failed_requests == 1 and report.samples == LIMIT - 1
    assert "1 requests FAILED" in report.ledger_summary()
    assert error.results["coin_flip"]["train"].num_rows == LIMIT - 1  # the others are there, ready to save
    save_rationales(config, error.results, error.reports)

    with FakeOpenAIServer() as healthy:
        config.base_url = [healthy.base_url]
        results, [report] = teach(config)
        assert [_of(_prompt(r.body), questions) for r in healthy.requests] == [2]  # its stage 2 only
    assert report.failed_requests == 0 and results["coin_flip"]["train"].num_rows == LIMIT


def test_the_teacher_yields_failed_requests_goes_on_and_the_cache_does_not_store_them(tmp_path):
    with FakeOpenAIServer() as server:
        seen: list[str] = []

        def fault_for(body: dict) -> tuple | None:
            seen.append(_prompt(body))
            if _prompt(body) == "storm":
                return ("503",)
            return ("few_choices",) if seen.count("calm") == 1 and _prompt(body) == "calm" else None  # wrong n, once

        server.fault_for = fault_for
        teacher = OpenAITeacher("fake-model", server.base_url, supports_n=True, max_concurrency=2, **RETRIES)
        cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
        cached.keep_going = True
        params = SamplingParams(temperature=0.7)
        requests = [Request("calm", params, n=2), Request("storm", params, n=2), Request("still", params, n=2)]
        try:
            out = dict(cached.generate(requests))
        finally:
            cached.close()
    assert sorted(out) == [0, 1, 2]
    failure = out[1]
    assert isinstance(failure, FailedRequest) and list(failure) == [] and "gave up" in str(failure.error)
    assert [g.text for g in out[0]] == [sample_text("calm", 0), sample_text("calm", 1)]
    assert [g.text for g in out[2]] == [sample_text("still", 0), sample_text("still", 1)]
    assert cached.failed == 1 and "HTTP 503" in (cached.last_error or "")
    assert len(RequestCache(tmp_path / "c.sqlite")) == 4
    storm = [r for r in server.requests if r.body["prompt"] == "storm"]
    assert len(storm) == 3 and len(server.requests) == 3 + 2 + 1  # the wrong-n reply was re-asked once
