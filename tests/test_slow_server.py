"""The defaults against a slow one-slot local server (issue 32 item 1): the adaptive bound on requests in flight
(AIMD), timeouts derived from the tokens asked for and the throughput observed, abandoned requests' connections
closed, the warning when no reply comes, and a failure message that names the cause and the flags that fix it.

The controller is driven by explicit events (no clock, no server); the server tests assert outcomes (success, no
reply generated twice, every abandoned generation aborted), never durations. The slow server is
``FakeOpenAIServer(tokens_per_s=..., slots=1)``: one slot, replies generated at a fixed token rate, generation
abandoned when its client disconnects (as vLLM does)."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
import re
import threading
import time
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import main
from ftcot_hf.teach.augment import teacher_status
from ftcot_hf.teachers.base import Request, SamplingParams
from ftcot_hf.teachers.http.adaptive import SAFETY_MARGIN, UNKNOWN_RATE_FACTOR, Pacing, Ticket
from ftcot_hf.teachers.http.openai import OpenAITeacher
from tests.fake_openai_server import FakeOpenAIServer

QUESTIONS = [(f"What is {a} plus {b}?", a + b) for a, b in zip(range(1, 21), range(5, 25), strict=True)]
FILLER = 50
"""Words of reasoning before the answer line: a reply of ~60 tokens, 0.3 s at 200 tokens/s."""


# -- the controller, driven by events ---------------------------------------------------------------------------------
def test_aimd_starts_low_raises_one_per_window_that_holds_and_never_passes_the_ceiling():
    pacing = Pacing(ceiling=6)
    assert pacing.limit == 4 and Pacing(ceiling=2).limit == 2  # start at 4, or at the ceiling when lower
    for _ in range(3):
        pacing.replied(100, 1.0)
    assert pacing.limit == 4  # a window is `limit` replies
    pacing.replied(100, 1.0)
    assert pacing.limit == 5
    for _ in range(5):
        pacing.replied(100, 1.0)
    assert pacing.limit == 6
    for _ in range(50):
        pacing.replied(100, 1.0)
    assert pacing.limit == 6  # max_concurrency is the ceiling


def test_aimd_does_not_raise_while_replies_are_slower_than_the_server_can_be():
    pacing = Pacing(ceiling=16)
    pacing.replied(100, 1.0)  # 100 tokens/s: the unloaded speed
    for _ in range(20):
        pacing.replied(100, 4.0)  # 25 tokens/s: queued behind others (a one-slot server) -- more load only queues
    assert pacing.limit == 4
    for _ in range(3):
        pacing.replied(100, 1.5)  # within the tolerance again
    assert pacing.limit == 5


def test_aimd_halves_on_congestion_once_per_window_and_not_below_one():
    pacing = Pacing(ceiling=16, start=8)
    sent_before = pacing.epoch
    assert pacing.congested(sent_before) and pacing.limit == 4
    assert not pacing.congested(sent_before) and pacing.limit == 4  # the same window's other failures: no new cut
    assert pacing.congested(pacing.epoch) and pacing.limit == 2  # a request sent after the cut failing: cut again
    assert pacing.congested(pacing.epoch) and pacing.limit == 1
    assert not pacing.congested(pacing.epoch) and pacing.limit == 1
    assert pacing.cuts == 3
    for _ in range(3):
        pacing.replied(10, 1.0)
    assert pacing.limit == 3  # additive increase again (1 -> 2 after one reply, 2 -> 3 after two more)


def test_lowering_the_bound_never_cancels_requests_in_flight():
    async def scenario() -> tuple[int, list[str], int]:
        pacing = Pacing(ceiling=4)
        release = asyncio.Event()
        entered: list[str] = []
        cancelled = 0

        async def request(name: str) -> None:
            nonlocal cancelled
            try:
                async with pacing.slot():
                    entered.append(name)
                    await release.wait()
            except asyncio.CancelledError:
                cancelled += 1
                raise

        holders = [asyncio.ensure_future(request(f"r{i}")) for i in range(4)]
        while len(entered) < 4:
            await asyncio.sleep(0)
        pacing.congested(pacing.epoch)  # 4 -> 2 with 4 in flight
        late = asyncio.ensure_future(request("late"))
        for _ in range(10):
            await asyncio.sleep(0)
        in_flight_after_cut = pacing.in_flight
        assert "late" not in entered  # waits: 4 in flight >= 2
        release.set()
        await asyncio.gather(*holders, late)
        return in_flight_after_cut, entered, cancelled

    in_flight, entered, cancelled = asyncio.run(scenario())
    assert in_flight == 4 and cancelled == 0  # the four kept running to their end
    assert entered == ["r0", "r1", "r2", "r3", "late"]


def test_timeouts_follow_max_tokens_and_the_observed_throughput():
    pacing = Pacing(ceiling=16, min_timeout=60.0)
    assert pacing.timeout(4096) == UNKNOWN_RATE_FACTOR * 60.0  # nothing measured yet
    pacing.busy(100.0, +1)
    pacing.busy(110.0, -1)
    pacing.replied(100, 10.0)  # 100 tokens in 10 busy seconds: 10 tokens/s
    assert pacing.throughput == pytest.approx(10.0)
    # a 4096-token reply at 10 tokens/s, behind up to 3 others on a one-slot server, with the margin
    assert pacing.timeout(4096, limit=4) == pytest.approx(SAFETY_MARGIN * 4096 * 4 / 10.0)
    assert pacing.timeout(32, limit=1) == 60.0  # the floor
    assert Pacing(ceiling=16, timeout=7.5).timeout(4096) == 7.5  # an explicit timeout is an override


def test_a_deadline_set_before_the_first_reply_moves_when_the_throughput_is_known():
    async def scenario() -> tuple[float | None, float | None]:
        pacing = Pacing(ceiling=4, min_timeout=10.0)
        ticket = Ticket(pacing.epoch, 4, time.monotonic())
        async with pacing.deadline(ticket, 1000) as deadline:
            before = deadline.seconds
            pacing.busy(0.0, +1)
            pacing.busy(2.0, -1)
            pacing.replied(200, 2.0)  # 100 tokens/s
            return before, deadline.seconds

    before, after = asyncio.run(scenario())
    assert before == UNKNOWN_RATE_FACTOR * 10.0
    assert after == pytest.approx(SAFETY_MARGIN * 1000 * 4 / 100.0)


def test_the_progress_postfix_shows_in_flight_speed_retries_and_timeouts():
    live = {"in_flight": 3, "limit": 4, "timeouts": 1, "retries": 2, "tokens_per_s": 12.4}
    assert teacher_status(live) == "3/4 in flight, 12 tok/s, 2 retries, 1 timeout"
    assert teacher_status({**live, "tokens_per_s": None, "timeouts": 0}) == "3/4 in flight, 2 retries"
    assert teacher_status({}) == ""  # a local or recorded teacher


# -- against a slow one-slot server -----------------------------------------------------------------------------------
def _reply(prompt: str, index: int) -> str:
    """Reasoning of FILLER words, then the answer line with the right sum."""
    a, b = map(int, re.findall(r"What is (\d+) plus (\d+)\?", prompt)[-1])
    return " ".join(["step"] * FILLER) + f" Therefore, the answer is {a + b}."


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "my_quiz.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("problem", "solution"), *QUESTIONS])
    return path


def _teach(dataset: Path, server: FakeOpenAIServer, tmp_path: Path, *extra: str) -> list[str]:
    """The own-data command with the defaults: no --max_concurrency, no timeout, one-stage chat (4096 tokens)."""
    return ["teach", "--dataset", str(dataset), "--question_column", "problem", "--answer_column", "solution",
            "--answer_type", "number", "--task_name", "my_quiz", "--test_size", "4", "--teacher", "openai",
            "--model", "fake-model", "--base_url", server.base_url, "--chat", "--output_dir", str(tmp_path / "out"),
            "--cache_dir", str(tmp_path / "c.sqlite"), *extra]  # fmt: skip


def _settled(server: FakeOpenAIServer) -> None:
    """Wait (bounded) until the server has finished with every connection (an abort is noticed on its side)."""
    limit = time.monotonic() + 30
    while server.in_flight and time.monotonic() < limit:
        time.sleep(0.02)


def test_ftcot_teach_with_the_defaults_succeeds_against_a_slow_one_slot_server(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTCOT_MIN_TIMEOUT", "0.5")  # the 60 s floor, scaled down with the server's speed
    with FakeOpenAIServer(text_for=_reply, tokens_per_s=200, slots=1) as server:
        code = main(_teach(_csv(tmp_path), server, tmp_path))
        _settled(server)
        printed = capsys.readouterr()
        posts, generated, aborted, most = len(server.requests), server.generated, server.aborted, server.max_in_flight
    assert code == 0, printed.err
    assert posts == 16 and len(generated) == 16 and len(set(generated)) == 16  # each reply generated once
    assert aborted == 0  # nothing abandoned (the old fixed timeout abandoned and re-sent most of them)
    # the bound started at 4 and could not rise past 7 in 16 replies (the old default queued 16 at once)
    assert most <= 7
    rows = load_dataset(str(tmp_path / "out"), "my_quiz")["train"]
    assert rows.num_rows == 16 and all(rows["correct"])
    [report] = json.loads((tmp_path / "out" / "yield_report.json").read_text())["reports"]
    assert (report["timeouts"], report["retries"], report["failed_requests"]) == (0, 0, 0)


@pytest.mark.parametrize("http_backend", ["aiohttp", "httpx"])
@pytest.mark.parametrize("explicit", [True, False])
def test_an_abandoned_request_is_aborted_by_a_server_that_aborts_on_disconnect(http_backend, explicit):
    """The explicit timeout is the client's; the derived one (here: before any reply, 30 x a 0.01 s floor) is a
    deadline cancelling the attempt. Either way the connection is closed and the server stops generating."""
    kwargs = {"timeout": 0.3} if explicit else {"min_timeout": 0.01}
    with FakeOpenAIServer(tokens_per_s=0.5, slots=1) as server:  # 7 tokens: 14 s, far past either timeout
        teacher = OpenAITeacher("fake-model", server.base_url, max_retries=0, http_backend=http_backend, **kwargs)
        teacher.keep_going = True
        try:
            [(_, failed)] = list(teacher.generate([Request("p", SamplingParams(max_tokens=64))]))
        finally:
            teacher.close()
        _settled(server)
        assert server.aborted == 1 and server.generated == []
    assert "timed out after" in str(failed.error) and teacher.stats["timeouts"] == 1


def test_no_reply_for_min_timeout_warns_with_the_speed_and_the_flags(caplog):
    warned = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "no reply" in record.getMessage():
                warned.set()

    def hold(body: dict) -> float:  # the second call's reply waits until the warning is out
        if "slow" in json.dumps(body):
            assert warned.wait(30), "no warning"
        return 0.0

    signal = Signal()
    logger = logging.getLogger("ftcot_hf.teachers.http.core")
    logger.addHandler(signal)
    try:
        with FakeOpenAIServer(latency=hold, tokens_per_s=1000, slots=1) as server, caplog.at_level(logging.WARNING):
            url = server.base_url
            teacher = OpenAITeacher("fake-model", server.base_url, min_timeout=0.05)
            try:
                list(teacher.generate([Request("fast", SamplingParams(max_tokens=4096))]))  # measures the speed
                list(teacher.generate([Request("slow", SamplingParams(max_tokens=4096))]))
            finally:
                teacher.close()
    finally:
        logger.removeHandler(signal)
    message = [r.getMessage() for r in caplog.records if "no reply" in r.getMessage()][-1]  # the second call's
    assert "the server produces ~" in message and "a 4096-token reply takes" in message
    assert "--max_rationale_tokens" in message and url in message


def test_a_too_short_timeout_fails_with_the_cause_and_the_flags_not_re_run_the_same_command(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("FTCOT_MIN_TIMEOUT", "0.5")
    options = json.dumps({"timeout": 0.2, "max_retries": 1, "backoff_base": 0.001, "backoff_max": 0.002})
    with FakeOpenAIServer(text_for=_reply, tokens_per_s=100, slots=1) as server:  # ~0.6 s a reply
        code = main(_teach(_csv(tmp_path), server, tmp_path, "--limit", "2", "--teacher_kwargs", options))
        _settled(server)
        assert server.generated == [] and server.aborted == len(server.requests)  # every abandoned one aborted
    err = capsys.readouterr().err
    [line] = [x for x in err.splitlines() if x.startswith("ftcot: error:")]
    assert code == 3 and "timed out" in line
    assert "Likely cause: replies slower than the timeout" in line and "--max_rationale_tokens (now 4096)" in line
    assert "raise the timeout of 0.2 s" in line and "Re-run the same command" not in line
