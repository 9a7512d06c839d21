"""Requests that fail for good (issue 15, item 8): a 503 storm on some questions, malformed bodies and wrong-``n``
replies that do not go away. Retries stay per request; a request whose retries are spent is recorded as failed, the
run finishes the others, the failed samples are not cached and have no rows, the yield report counts them, `ftcot
teach` saves what succeeded and exits 3 with one line, and a re-run against a healthy server sends exactly the failed
requests. Before: the first request out of retries aborted the whole teach (nothing saved, exit 2)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import main
from ftcot_hf.tasks import resolve_task
from ftcot_hf.tasks.prompts import ANSWER_PHRASE
from ftcot_hf.teach import TeachConfig, TeachIncompleteError, save_rationales, teach
from ftcot_hf.teachers.base import FailedRequest, Request, SamplingParams
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache
from ftcot_hf.teachers.http.openai import OpenAITeacher
from tests.doubles import openai_teach_argv
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
    return openai_teach_argv(server.base_url, out, cache, mirror, "--keep", "all", "--teacher_kwargs",
                             json.dumps(RETRIES), limit=LIMIT)  # fmt: skip


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


# -- bad base URLs fail at once; secrets in a URL never leave the process (issue 15, items 10 and 11) ----------------
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("not a url", "it has no http(s):// scheme"),
        ("ftp://x", "its scheme 'ftp' is not http or https"),
        ("localhost:8000", "it has no scheme (did you mean http://localhost:8000/v1 ?)"),
        ("http://", "it has no host name"),
    ],
)
def test_a_base_url_that_is_no_api_root_is_one_line_before_any_request(url, says, tmp_path, capsys):
    start = time.monotonic()
    argv = ["teach", "--teacher", "openai", "--model", "m", "--base_url", url, "--output_dir", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 5  # it used to retry for ~27 s
    assert err.count("\n") == 1 and err.startswith(f"ftcot: error: --base_url {url!r} is not a server's API root")
    assert says in err and "http://localhost:8000/v1" in err


def test_limit_below_one_is_one_line(tmp_path, capsys):
    assert main(["teach", "--limit", "-5", "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--limit must be a positive number of questions (got -5)" in err


URL_SECRETS = ("Pw-SECRET-4417", "Q-SECRET-key-88", "K-SECRET-0931")


def _secret_url(server: FakeOpenAIServer) -> str:
    return f"http://alice:{URL_SECRETS[0]}@127.0.0.1:{server.port}/v1?api_key={URL_SECRETS[1]}&key={URL_SECRETS[2]}"


def _ftcot_v_teach(url: str, tmp_path: Path, mirror: Path, **kwargs) -> subprocess.CompletedProcess:
    """``ftcot -v teach`` as a user types it (its own process: the real logging set-up, request log included)."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_DATASETS_CACHE=str(tmp_path / "hf" / "datasets"))
    argv = [sys.executable, "-m", "ftcot_hf.cli", *_teach_argv(url, tmp_path, mirror, **kwargs)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)


def _teach_argv(url: str, tmp_path: Path, mirror: Path, **kwargs) -> list[str]:
    return ["-v", *openai_teach_argv(url, tmp_path / "out", tmp_path / "c.sqlite", mirror, "--keep", "all",
                                     "--teacher_kwargs", json.dumps(RETRIES | kwargs), limit=2)]  # fmt: skip


def _leaks(tmp_path: Path, *texts: str) -> list[str]:
    """Where a URL secret shows: in ``texts``, or in any file under ``tmp_path`` (outputs, cache, datasets' cache)."""
    found = [f"output {i}" for i, text in enumerate(texts) for s in URL_SECRETS if s in text]
    for path in tmp_path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [str(path) for s in URL_SECRETS if s.encode() in data]
    return found


@pytest.mark.parametrize("http_backend", ["aiohttp", "httpx"])
def test_url_credentials_and_query_keys_reach_the_server_and_nothing_else(
    mirror, tmp_path, http_backend, capsys, caplog, monkeypatch
):
    first = f"Q: {_questions(mirror)[0]}\n"

    def fault_for(body: dict) -> tuple | None:  # the first question's stage 2 fails for good: an error line
        return ("503",) if first in _prompt(body) and ANSWER_PHRASE in _prompt(body) else None

    with FakeOpenAIServer(fault_for=fault_for) as server:
        url = _secret_url(server)
        if http_backend == "httpx":  # its client logs every request's URL at INFO: the real -v set-up, own process
            done = _ftcot_v_teach(url, tmp_path, mirror, http_backend=http_backend)
            code, out, err = done.returncode, done.stdout, done.stderr
            assert "HTTP Request: POST" in err and "completions?api_key=***&key=***" in err  # the log, masked
        else:  # in this process (faster): the log records as pytest captures them
            monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
            caplog.set_level(logging.INFO)
            code = main(_teach_argv(url, tmp_path, mirror, http_backend=http_backend))
            printed = capsys.readouterr()
            out, err = printed.out, printed.err + caplog.text
            assert "teacher" in caplog.text  # the teacher's own INFO lines (retries) are in what is scanned
        seen, port = server.requests, server.port
    # the key of the query string is sent as a query (not glued before the path), user:password as Basic auth
    assert seen and all(r.path == f"/v1/completions?api_key={URL_SECRETS[1]}&key={URL_SECRETS[2]}" for r in seen)
    assert all(r.authorization and r.authorization.startswith("Basic ") for r in seen)
    assert code == 3, err[-2000:]  # a failed request: an error line naming the server, and a save
    [line] = [x for x in err.splitlines() if x.startswith("ftcot: error:")]
    assert "HTTP 503" in line and f"127.0.0.1:{port}/v1?api_key=***&key=***" in line  # named, masked
    assert _leaks(tmp_path, out, err) == []
    assert (tmp_path / "out" / "yield_report.json").is_file() and (tmp_path / "out" / "README.md").is_file()
