"""Your own data as a task: ``Task.from_dataset`` and the ``--dataset`` flags of teach / eval / train / run."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf import TASKS, Task, compute_accuracy, register_task, score_completion
from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.teach.augment import RationaleAugmenter, augment
from ftcot_hf.teachers.base import Generation
from tests.doubles import (
    ARITH,
    EchoTeacher,
    exits_2_in_one_line,
    teach_user_dataset,
    user_teach_argv,
    write_jsonl,
)


@pytest.fixture
def registry_guard() -> Iterator[None]:
    before = list(TASKS)
    yield
    for name in list(TASKS):
        if name not in before:
            TASKS.unregister(name)


def test_jsonl_with_its_own_column_names_and_a_held_out_test_split(arith_jsonl):
    task = Task.from_dataset(str(arith_jsonl), question_column="problem", answer_column="solution",
                             answer_type="number", task_name="my_arith", test_size=0.25, split_seed=1)  # fmt: skip
    ds = task.load()
    assert (ds["train"].num_rows, ds["test"].num_rows) == (15, 5)
    rows = {r["sample_index"]: r for s in ds.values() for r in s}
    assert sorted(rows) == list(range(20))  # every source row once, indexed by its position in the file
    assert rows[0]["answer"] == "1234" and rows[1]["answer"] == "3"  # "$1,234" and "3.0" normalised
    assert rows[5]["question"] == ARITH[5][0] and rows[5]["rationale"] is None
    assert task.answer.name == "number" and not task.builtin
    assert task.load() is ds  # read and checked once
    again = Task.from_dataset(str(arith_jsonl), question_column="problem", answer_column="solution",
                              answer_type="number", task_name="my_arith", test_size=0.25, split_seed=1)  # fmt: skip
    assert again.load()["test"]["sample_index"] == ds["test"]["sample_index"]  # the seeded split is stable
    [prov] = task.provenance()
    assert prov["file"] == "my_arith.jsonl" and len(prov["sha256"]) == 64


def test_local_folder_with_train_and_test_files(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", [{"q": f"{i} + 1?", "a": i + 1} for i in range(6)])
    write_jsonl(folder / "test.jsonl", [{"q": f"{i} + 2?", "a": i + 2} for i in range(3)])
    task = Task.from_dataset(str(folder), question_column="q", answer_column="a", answer_type="number",
                             task_name="folder_task")  # fmt: skip
    ds = task.load()
    assert ds["train"]["answer"] == ["1", "2", "3", "4", "5", "6"]
    assert ds["test"]["sample_index"] == [6, 7, 8]
    assert {p["file"] for p in task.provenance()} == {"train.jsonl", "test.jsonl"}


def test_a_question_with_two_golds_names_both_rows_across_splits_or_the_later_is_skipped(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    train = [{"q": f"What is {i} plus 1?", "a": i + 1} for i in range(10)]
    train[6] = {"q": "What is 2 plus 1?", "a": 99}  # row 2's question, another gold
    train[8] = {"q": "What is 3 plus 1?", "a": 4}  # row 3's question and gold again: fine
    test = [{"q": f"What is {i} plus 2?", "a": i + 2} for i in range(5)]
    test[1] = {"q": "What is 4 plus 1?", "a": 7}  # train row 4's question, another gold
    write_jsonl(folder / "train.jsonl", train)
    write_jsonl(folder / "test.jsonl", test)
    options = {"question_column": "q", "answer_column": "a", "answer_type": "number", "task_name": "twice"}
    with pytest.raises(FtcotError) as info:
        Task.from_dataset(str(folder), **options).load()
    assert (f"{folder}, split 'train', row 6: question 'What is 2 plus 1?' has the gold answer '99' here but '3' "
            "at split 'train', row 2.") in str(info.value)  # fmt: skip
    task = Task.from_dataset(str(folder), skip_bad_rows=True, **options)
    ds = task.load()
    assert task.source.skipped == {"train": 1, "test": 1}
    assert "99" not in ds["train"]["answer"] and ds["train"]["answer"].count("4") == 2
    assert ds["test"]["question"] == [t["q"] for i, t in enumerate(test) if i != 1]


def test_choice_task_with_a_list_of_strings(tmp_path):
    rows = [
        {"question": "Sky colour?", "options": ["red", "blue", "green"], "gold": "blue"},
        {"question": "Grass colour?", "options": ["red", "blue", "green"], "gold": "(C)"},
        {"question": "Blood colour?", "options": ["red", "blue"], "gold": "a"},
    ]
    path = write_jsonl(tmp_path / "colours.jsonl", rows)
    task = Task.from_dataset(str(path), question_column="question", answer_column="gold", answer_type="choice",
                             choices_column="options", task_name="colours", test_size=1)  # fmt: skip
    records = {r["sample_index"]: r for s in task.load().values() for r in s}
    assert [records[i]["answer"] for i in range(3)] == ["B", "C", "A"]
    assert records[0]["question"] == "Sky colour? Answer choices: (A) red, (B) blue, (C) green."
    assert records[2]["choices"] == [{"label": "A", "text": "red"}, {"label": "B", "text": "blue"}]
    assert task.has_choices and task.answer.letters == "ABC"
    assert score_completion(task, " It is blue. --> (B)", "B", prefix="-->", mode="robust")["correct"]


def test_yes_no_and_text_tasks(tmp_path):
    path = write_jsonl(tmp_path / "yn.jsonl", [{"q": f"Is {i} even?", "a": [True, "No", "yes", "FALSE"][i % 4]}
                                               for i in range(8)])  # fmt: skip
    task = Task.from_dataset(str(path), question_column="q", answer_column="a", answer_type="yes_no",
                             task_name="yn", test_size=0.5)  # fmt: skip
    answers = [r["answer"] for s in task.load().values() for r in sorted(s, key=lambda r: r["sample_index"])]
    assert sorted(answers) == ["no"] * 4 + ["yes"] * 4
    assert score_completion(task, " so it is even --> Yes", "yes", prefix="-->")["correct"]
    text = write_jsonl(tmp_path / "capitals.jsonl", [{"q": "Capital of France?", "a": "Paris"}] * 2)
    capitals = Task.from_dataset(str(text), question_column="q", answer_column="a", answer_type="text",
                                 task_name="capitals", test_size=1)  # fmt: skip
    assert score_completion(capitals, " It is in Europe. --> paris.", "Paris", prefix="-->")["correct"]
    assert not score_completion(capitals, " --> Lyon", "Paris", prefix="-->")["correct"]


def test_a_registered_task_works_by_name_in_the_augmenter_and_the_metric(arith_jsonl, registry_guard):
    task = register_task(Task.from_dataset(str(arith_jsonl), question_column="problem", answer_column="solution",
                                           answer_type="number", task_name="mine", test_size=5))  # fmt: skip
    assert TASKS["mine"] is task
    kept, report = augment(task.load()["train"], RationaleAugmenter(EchoTeacher(), "mine"), keep="correct")
    assert report.task == "mine" and report.questions == 15
    assert 0 < report.kept < 15  # the echo teacher adds the last two numbers: right for most, not for all
    assert all(r["correct"] for r in kept)
    result = compute_accuracy([" --> 7", " --> 8"], ["7", "7"], task="mine")
    assert result["accuracy"] == 0.5 and result["task"] == "mine"
    with pytest.raises(FtcotError, match="already taken by a built-in"):
        register_task(Task.from_dataset(str(arith_jsonl), question_column="problem", answer_column="solution",
                                        answer_type="number", task_name="coin_flip", test_size=5))  # fmt: skip


def test_ftcot_eval_scores_a_registered_task_by_name(arith_jsonl, tiny_gpt2, tmp_path, registry_guard):
    register_task(Task.from_dataset(str(arith_jsonl), question_column="problem", answer_column="solution",
                                    answer_type="number", task_name="mine", test_size=5))  # fmt: skip
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(tiny_gpt2), "--task", "mine", "--max_new_tokens", "3", "--batch_size", "5",
                 "--output_dir", str(out), "--paper_row", "none"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "results.json").read_text())["results"][0]
    assert result["task"] == "mine" and result["n"] == 5


def test_ftcot_eval_with_the_dataset_flags(arith_jsonl, tiny_gpt2, tmp_path):
    out = tmp_path / "eval"
    code = main(["eval", "--model", str(tiny_gpt2), "--dataset", str(arith_jsonl), "--question_column", "problem",
                 "--answer_column", "solution", "--answer_type", "number", "--task_name", "flags_task",
                 "--test_size", "4", "--max_new_tokens", "3", "--output_dir", str(out),
                 "--paper_row", "none"])  # fmt: skip
    assert code == 0
    result = json.loads((out / "results.json").read_text())["results"][0]
    assert result["task"] == "flags_task" and result["n"] == 4
    assert "flags_task" not in TASKS  # flags define a task for the command, they do not register it


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--question_column": "question"}, "has no column 'question' (--question_column); its columns: problem, "),
        ({"--answer_type": "integer"}, "--answer_type 'integer' is not an answer type: use one of number, choice"),
        ({"--task_name": "coin_flip"}, "--task_name 'coin_flip' is the name of a built-in task"),
        ({"--test_size": "30"}, "--test_size 30: give a fraction in (0, 1) or a count in 1..19"),
    ],
)
def test_bad_dataset_flags_fail_in_one_line_before_any_work(arith_jsonl, tmp_path, capsys, change, message):
    args = user_teach_argv(arith_jsonl, tmp_path / "out")
    for flag, value in change.items():
        args[args.index(flag) + 1] = value
    exits_2_in_one_line(args, capsys, message)
    assert not (tmp_path / "out").exists()


def test_an_unreadable_gold_answer_names_split_row_column_and_value(tmp_path, capsys):
    rows = [{"problem": f"{i}+{i}?", "solution": str(2 * i)} for i in range(10)]
    rows[7]["solution"] = "seven"
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(user_teach_argv(path, tmp_path / "out")) == 2
    err = capsys.readouterr().err.strip()
    assert "row 7" in err and "'solution'" in err and "'seven'" in err and "--skip_bad_rows" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "out").exists()
    task = Task.from_dataset(str(path), question_column="problem", answer_column="solution", answer_type="number",
                             task_name="skips", test_size=2, skip_bad_rows=True)  # fmt: skip
    ds = task.load()
    assert ds["train"].num_rows + ds["test"].num_rows == 9 and sum(task.source.skipped.values()) == 1


def test_an_empty_split_is_an_error(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, rows in (("train.csv", [("1+1?", "2"), ("2+2?", "4")]), ("test.csv", [])):
        with (folder / name).open("w", newline="") as f:
            csv.writer(f).writerows([("problem", "solution"), *rows])
    args = user_teach_argv(folder, tmp_path / "out")
    i = args.index("--test_size")
    del args[i : i + 2]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "The test split of" in err and "is empty" in err


def _run_args(out: Path, tiny: Path, tmp: Path, *extra: str) -> list[str]:
    return ["run", "--student", str(tiny), "--num_train_epochs", "1", "--per_device_train_batch_size", "4",
            "--max_length", "128", "--eval_max_new_tokens", "4", "--eval_batch_size", "5", "--cpu_threads", "1",
            "--output_dir", str(out), "--cache_dir", str(tmp / "teacher.sqlite"), *extra]  # fmt: skip


def test_ftcot_run_on_your_own_dataset_with_the_openai_teacher(arith_jsonl, tiny_gpt2, tmp_path, capsys):
    from tests.fake_openai_server import FakeOpenAIServer

    out = tmp_path / "run"
    with FakeOpenAIServer() as server:
        code = main(_run_args(out, tiny_gpt2, tmp_path,
                              "--dataset", str(arith_jsonl), "--question_column", "problem", "--answer_column",
                              "solution", "--answer_type", "number", "--task_name", "mine", "--test_size", "5",
                              "--teacher", "openai", "--teacher_model", "fake-model", "--base_url", server.base_url,
                              "--keep", "all"))  # fmt: skip
        sent = [r.body for r in server.requests]
    assert code == 0, capsys.readouterr().err
    assert len(sent) == 30 and all(b["model"] == "fake-model" for b in sent)  # 15 rationales + 15 answers
    assert any("What is 7 plus 9?" in b["prompt"] for b in sent)
    rationales = load_dataset(str(out / "rationales"), "mine")
    assert (rationales["train"].num_rows, rationales["test"].num_rows) == (15, 5)
    card = (out / "rationales" / "README.md").read_text()
    assert "my_arith.jsonl" in card and "`problem`" in card and "MAWPS" not in card
    stored = json.loads((out / "rationales" / "yield_report.json").read_text())["tasks"]["mine"]
    assert stored["answer_type"] == "number" and stored["source"]["answer_column"] == "solution"
    assert json.loads((out / "eval" / "mine" / "results.json").read_text())["results"][0]["n"] == 5
    report = (out / "report" / "results.md").read_text()
    assert "| mine |" in report
    assert "- mine: 0 test question(s) also in train;" in report  # the decontamination line of the run report
    # a re-run reuses every stage; a changed file re-teaches
    with FakeOpenAIServer() as server:
        assert main(_run_args(out, tiny_gpt2, tmp_path,
                              "--dataset", str(arith_jsonl), "--question_column", "problem", "--answer_column",
                              "solution", "--answer_type", "number", "--task_name", "mine", "--test_size", "5",
                              "--teacher", "openai", "--teacher_model", "fake-model", "--base_url", server.base_url,
                              "--keep", "all")) == 0  # fmt: skip
        assert server.requests == []
    stages = json.loads((out / "stages.json").read_text())
    assert {n: s["status"] for n, s in stages.items() if s["status"] != "reused"} == {}


def test_ftcot_run_with_a_local_transformers_teacher(tiny_gpt2, tmp_path, mirror, capsys):
    out = tmp_path / "run"
    code = main(_run_args(out, tiny_gpt2, tmp_path, "--teacher", "transformers", "--teacher_model", str(tiny_gpt2),
                          "--limit_train", "4", "--limit_test", "2", "--keep", "all", "--data_dir", str(mirror),
                          "--eval_untrained", "false"))  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rationales = load_dataset(str(out / "rationales"), "coin_flip")
    assert rationales["train"].num_rows == 4 and set(rationales["train"]["teacher"]) == {str(tiny_gpt2)}


def test_the_docs_python_example_of_your_own_dataset_runs_as_written(tmp_path, monkeypatch, registry_guard):
    page = (Path(__file__).resolve().parents[1] / "docs" / "tasks.md").read_text()
    section = page.split("## Your own dataset", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "my_arith.jsonl", [{"problem": q, "solution": a} for q, a in ARITH])
    exec(compile(code, "docs/tasks.md", "exec"), {})  # noqa: S102 -- the documented example, verbatim
    assert TASKS["my_arith"].load()["train"].num_rows == 16


def test_scrubbed_configs_hold_no_credentials_keys_or_local_paths(arith_jsonl):
    from ftcot_hf.teach.card import scrub_config
    from ftcot_hf.utils.scrub import scrub_url

    assert scrub_url("https://user:s3cret@host.example:8443/v1?api_key=abc") == "https://host.example:8443/v1"
    config = {"base_url": ["http://u:p@localhost:8000/v1?key=k"], "teacher_kwargs": {"api_key": "sk-1", "seed": 3},
              "dataset": str(arith_jsonl), "cache_dir": "/home/me/c.sqlite"}  # fmt: skip
    scrubbed = json.dumps(scrub_config(config))
    for secret in ("u:p", "key=k", "sk-1", "/home/me", str(arith_jsonl.parent)):
        assert secret not in scrubbed
    assert '"seed": 3' in scrubbed and "my_arith.jsonl" in scrubbed


def test_ftcot_push_publishes_a_user_dataset_task_and_its_card_names_the_source(arith_jsonl, tmp_path):
    import subprocess
    import sys

    from tests.fake_hub_server import DEFAULT_USER, FakeHub

    folder = teach_user_dataset(arith_jsonl, tmp_path / "rationales", test_size=5)
    with FakeHub(tmp_path / "hub") as hub:
        proc = subprocess.run(
            [sys.executable, "-m", "ftcot_hf.cli", "push", "--what", "rationales", "--path", str(folder),
             "--repo_id", "my-arith-rationales"],
            env=hub.client_env(tmp_path / "hf_home"), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        files = hub.files("dataset", f"{DEFAULT_USER}/my-arith-rationales")
    card = files["README.md"].decode()
    assert "config_name: my_arith" in card and "my_arith.jsonl" in card and "| number |" in card
    assert str(tmp_path) not in card and str(tmp_path) not in files["yield_report.json"].decode()
    assert json.loads(files["yield_report.json"])["tasks"]["my_arith"]["answer_type"] == "number"


def test_ftcot_train_on_your_own_dataset_scores_it_each_epoch(arith_jsonl, tiny_gpt2, tmp_path, capsys):
    out = tmp_path / "student"
    code = main(["train", "--student", str(tiny_gpt2), "--dataset", str(arith_jsonl), "--question_column", "problem",
                 "--answer_column", "solution", "--answer_type", "number", "--task_name", "mine", "--test_size", "4",
                 "--format", "vanilla", "--output_dir", str(out), "--num_train_epochs", "1",
                 "--per_device_train_batch_size", "8", "--eval_every_epoch", "true", "--eval_max_new_tokens", "4",
                 "--disable_tqdm", "true", "--cpu_threads", "1", "--report_to", "none"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "last epoch (1): test accuracy" in capsys.readouterr().out
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["task"] == "mine"


def test_csv_with_a_held_out_test_size_and_skipped_rows_counted_in_the_yield_report(tmp_path, mirror):
    from ftcot_hf.teach import TeachConfig, save_rationales, teach

    path = tmp_path / "sums.csv"
    rows = [("q", "a")] + [(f"What is {i} plus {i + 2}?", str(2 * i + 2)) for i in range(12)] + [("Broken?", "n/a")]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    config = TeachConfig(dataset=str(path), question_column="q", answer_column="a", answer_type="number",
                         task_name="sums", test_size=0.25, skip_bad_rows=True, keep="all",
                         output_dir=str(tmp_path / "out"), cache_dir=str(tmp_path / "c.sqlite"))  # fmt: skip
    tasks = config.resolve_tasks()
    ds = tasks[0].load()
    assert ds["train"].num_rows + ds["test"].num_rows == 12 and ds["test"].num_rows == 3  # 13 rows, 1 bad
    results, reports = teach(config, tasks=tasks, teacher=(EchoTeacher(), "generic"))
    save_rationales(config, results, reports, tasks)
    report = json.loads((tmp_path / "out" / "yield_report.json").read_text())["reports"][0]
    assert report["skipped_rows"] == 1 and report["questions"] == ds["train"].num_rows
    assert load_dataset(str(tmp_path / "out"), "sums")["test"].num_rows == 3


class VersionedTeacher(EchoTeacher):
    """Answers like EchoTeacher, but every rationale names its server ``version`` (a server that now answers
    differently)."""

    def __init__(self, version: str):
        super().__init__()
        self.version = version

    def reply(self, request):
        return [Generation(g.text.replace("I think", f"{self.version} thinks"), g.finish_reason)
                for g in super().reply(request)]  # fmt: skip


def test_the_request_cache_is_the_only_cache_of_teacher_output(tmp_path, mirror):
    """The same teach, a fresh request cache, a teacher that now answers differently: new requests, new rows (the
    augmentation map's own cache once served the old rows with 0 requests)."""
    from ftcot_hf.teach import TeachConfig, teach

    rationales = []
    for version, cache in (("v1", "a.sqlite"), ("v2", "b.sqlite")):
        teacher = VersionedTeacher(version)
        config = TeachConfig(tasks=["multiarith"], limit=6, keep="all", data_dir=str(mirror),
                             cache_dir=str(tmp_path / cache), output_dir=str(tmp_path / "out"))  # fmt: skip
        results, _ = teach(config, teacher=(teacher, "generic"))
        assert teacher.requests
        rationales.append(results["multiarith"]["train"]["rationale"])
    assert all(r.startswith(" v1 thinks") for r in rationales[0])
    assert all(r.startswith(" v2 thinks") for r in rationales[1])
