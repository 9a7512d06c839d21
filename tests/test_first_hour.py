"""A new user's first hour with their own data (issue 32, items 4 and 5): a local-looking path is a local path (a
typo is named at once, with the near names of its folder, never asked of the Hub), a Hub student that cannot be had
fails before the teach stage, and the recorded teacher on your own dataset names the live teachers to use."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from ftcot_hf.cli import main

OWN = ["--question_column", "q", "--answer_column", "a", "--answer_type", "number", "--task_name", "my_quiz",
       "--test_size", "0.2"]  # fmt: skip


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue()


@pytest.fixture
def own_data(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    rows = [{"q": f"What is {a} plus {a}?", "a": str(2 * a)} for a in range(10)]
    (tmp_path / "my_quiz.csv").write_text("q,a\n" + "".join(f"{r['q']},{r['a']}\n" for r in rows))
    (tmp_path / "my_quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


@pytest.mark.parametrize("command", ["teach", "run"])
def test_a_missing_local_dataset_is_named_at_once_with_the_near_names(own_data, mirror, command):
    live = ["--teacher", "openai", "--model", "m", "--base_url", "http://127.0.0.1:9/v1"]
    rc, err = run_cli([command, "--dataset", "my_quizz.csv", *OWN, *live, "--data_dir", str(mirror),
                       "--cache_dir", str(own_data / "c.sqlite"), "--output_dir", str(own_data / "out")])  # fmt: skip
    assert rc == 2, err
    [line] = err.strip().splitlines()
    assert "my_quizz.csv not found" in line and f"in {own_data.resolve()}" in line, line
    assert "near names: my_quiz.csv, my_quiz.jsonl" in line and "Hub" not in line.split(";")[0], line
    assert not (own_data / "out").exists()


def test_a_hub_student_that_cannot_be_had_offline_fails_before_the_teach_stage(own_data, mirror):
    rc, err = run_cli(["run", "--student", "nobody/no-such-student", "--data_dir", str(mirror), "--limit_train", "2",
                       "--cache_dir", str(own_data / "c.sqlite"), "--output_dir", str(own_data / "run")])  # fmt: skip
    assert rc == 2, err
    [line] = err.strip().splitlines()
    assert "'nobody/no-such-student' is not in the Hub cache" in line and "HF_HUB_OFFLINE" in line, line
    assert not (own_data / "run" / "rationales").exists() and not (own_data / "c.sqlite").exists()


@pytest.mark.parametrize("command", ["teach", "run"])
def test_own_data_with_the_recorded_teacher_names_the_live_teachers(own_data, mirror, command):
    rc, err = run_cli([command, "--dataset", "my_quiz.jsonl", *OWN, "--data_dir", str(mirror),
                       "--cache_dir", str(own_data / "c.sqlite"), "--output_dir", str(own_data / "out")])  # fmt: skip
    assert rc == 2, err
    [line] = err.strip().splitlines()
    assert "cover only the paper's 12 tasks, not 'my_quiz'" in line, line
    assert "--teacher openai --model NAME --base_url http://localhost:8000/v1" in line, line
    assert "--teacher transformers --model" in line and "published no" not in line, line
    assert not (own_data / "out").exists() and not (own_data / "c.sqlite").exists()


def test_a_one_stage_chat_runs_card_and_summary_describe_that_run(tmp_path, mirror, capsys):
    """Issue 32 item 6: the card of a one-stage chat run describes its one request (not the two-stage prompt and a
    stage-2 trigger), and the summary counts a cut reply once (not as a rationale and an answer)."""
    from tests.fake_openai_server import FakeOpenAIServer

    out = tmp_path / "out"
    with FakeOpenAIServer() as server:
        code = main(["teach", "--tasks", "coin_flip", "--limit", "4", "--teacher", "openai", "--model", "m",
                     "--base_url", server.base_url, "--chat", "true", "--max_rationale_tokens", "2", "--keep", "all",
                     "--data_dir", str(mirror), "--cache_dir", str(tmp_path / "c.sqlite"),
                     "--output_dir", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "coin_flip: 4 replies cut by the token limit" in printed and "answers cut" not in printed, printed
    assert "| 4 replies |" in printed  # the yield table's cut column
    card = (out / "README.md").read_text()
    assert "| protocol | one-stage |" in card and "in one request" in card
    assert "| answer line asked for | `Therefore, the answer is` |" in card
    assert "stage-2" not in card and "Let's think step by step.`, then" not in card
