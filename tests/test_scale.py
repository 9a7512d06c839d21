"""Teaching in memory that does not grow with the dataset (issue 29 items 1, 2, 5): --limit before any row is
touched, rows streamed to Arrow shards readable while a run goes on, a memory-mapped result, decontamination with
bounded pairs. The sizes themselves (10k / 100k / 1M questions) are bench/teach_scale.py's."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
import pytest

from ftcot_hf.cli import main
from ftcot_hf.tasks import Task
from ftcot_hf.teach import decontamination as dc
from ftcot_hf.teach.augment import RationaleAugmenter, augment
from ftcot_hf.teachers.base import Generation, Request, Teacher
from tests.doubles import ScriptedTeacher, scripted_records
from tests.fake_openai_server import FakeOpenAIServer


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_limit_reads_only_the_first_rows_of_the_taught_split(tmp_path):
    # row 50 has a gold answer a number task cannot read: with --limit 8 it is never touched
    rows = [{"q": f"What is {i} plus 1?", "a": str(i + 1)} for i in range(60)]
    rows[50]["a"] = "not a number"
    data = _jsonl(tmp_path / "big.jsonl", rows)
    args = dict(question_column="q", answer_column="a", answer_type="number", task_name="big", test_size=5)
    task = Task.from_dataset(str(data), **args, limits={"train": 8})
    records = task.load()
    assert records["train"].num_rows == 8 and records["test"].num_rows == 5
    assert records["train"]["sample_index"] == sorted(records["train"]["sample_index"])
    with pytest.raises(Exception, match="row 50"):  # without the limit the whole split is read and checked
        Task.from_dataset(str(data), **args)


def test_teach_limit_on_a_file_with_a_bad_row_far_down_succeeds_and_checks_only_the_taught_rows(tmp_path, capsys):
    rows = [{"q": f"Item {i}: what is {i} plus 1?", "a": str(i + 1)} for i in range(300)]
    rows[200]["a"] = "???"
    data = _jsonl(tmp_path / "big.jsonl", rows)
    with FakeOpenAIServer(text_for=lambda prompt, j: "Therefore, the answer is 1.") as server:
        code = main(["teach", "--dataset", str(data), "--question_column", "q", "--answer_column", "a",
                     "--answer_type", "number", "--task_name", "big", "--test_size", "20", "--limit", "8",
                     "--teacher", "openai", "--model", "m", "--base_url", server.base_url, "--chat", "true",
                     "--keep", "all", "--cache_dir", str(tmp_path / "c.sqlite"),
                     "--output_dir", str(tmp_path / "out")])  # fmt: skip
        sent = len(server.requests)
    assert code == 0, capsys.readouterr().err
    assert sent == 8
    [report] = json.loads((tmp_path / "out" / "yield_report.json").read_text())["reports"]
    assert report["questions"] == 8 and report["decontamination"]["n_train"] == 8
    assert report["decontamination"]["n_test"] == 20
    assert not list(tmp_path.glob(".out.partial-*"))


class _Watching(Teacher):
    """Answers every prompt; on the third chunk's first request, reads the shards written so far, as a user would
    while a long run goes on."""

    backend, model = "watching", "watching-v1"

    def __init__(self, folder: Path):
        self.folder, self.calls, self.seen = folder, 0, None

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        self.calls += 1
        if self.calls == 3:
            files = sorted(str(p) for p in self.folder.glob("*.arrow"))
            self.seen = datasets.load_dataset("arrow", data_files=files, split="train")["sample_index"]
        for pos, r in enumerate(requests):
            gold = r.prompt.split("[gold:")[1].split("]")[0]
            yield pos, [Generation(f"It is {gold}. Therefore, the answer is {gold}.", "stop", 3, 5)] * r.n


def test_rows_are_on_disk_as_they_are_taught_and_come_back_memory_mapped(tmp_path):
    folder = tmp_path / "partial"
    teacher = _Watching(folder)
    augmenter = RationaleAugmenter(teacher, "coin_flip", protocol="one_stage")
    # 4 questions a chunk, a shard closed after every chunk (flush_seconds=0): the third chunk sees the first two's
    kept, report = augment(scripted_records(12), augmenter, batch_size=4, output_dir=folder, flush_seconds=0)
    assert teacher.seen == list(range(8))
    assert kept.num_rows == report.kept == 12 and kept["sample_index"] == list(range(12))
    assert len(list(folder.glob("*.arrow"))) == 3
    assert kept.cache_files and all(Path(f["filename"]).parent == folder for f in kept.cache_files)  # not in RAM
    assert report.questions == 12 and report.samples == 12 and report.correct == 12


def test_records_are_read_in_batches_from_their_arrow_files_as_slicing_reads_them(tmp_path):
    from ftcot_hf.utils.shards import _stream_files, read_batches

    base = datasets.Dataset.from_dict({"question": [f"q{i}" for i in range(2500)], "answer": [str(i) for i in
                                       range(2500)], "tags": [[i, i + 1] for i in range(2500)]})  # fmt: skip
    mapped = base.map(lambda b: {"question": [q + "?" for q in b["question"]]}, batched=True,
                      cache_file_name=str(tmp_path / "records.arrow"), writer_batch_size=300)  # fmt: skip
    twice = datasets.concatenate_datasets([mapped, mapped])
    assert _stream_files(mapped) == [str(tmp_path / "records.arrow")] and len(_stream_files(twice)) == 2
    for dataset in (mapped, twice):
        for size in (1, 299, 2048, 2500, 9999):
            assert list(read_batches(dataset, size)) == [dataset[a : a + size] for a in range(0, len(dataset), size)]
    # what the files alone do not hold is sliced, as before: rows picked, a column renamed, an in-memory table
    for other in (mapped.select(range(7, 90)), mapped.rename_column("tags", "t"), base, mapped.with_format("numpy")):
        assert _stream_files(other) is None
    assert list(read_batches(mapped.select(range(7, 90)), 50)) == [mapped[7:57], mapped[57:90]]


def test_read_batches_reads_only_the_columns_asked_for(tmp_path):
    from ftcot_hf.utils.shards import _stream_files, read_batches

    base = datasets.Dataset.from_dict({"sample_index": list(range(700)), "question": [f"q{i}" for i in range(700)],
                                       "rationale": ["x" * 50] * 700})  # fmt: skip
    mapped = base.map(lambda b: b, batched=True, cache_file_name=str(tmp_path / "rows.arrow"))
    assert _stream_files(mapped) is not None
    for data in (mapped, base):  # streamed from the file, and sliced
        got = list(read_batches(data, 300, ["sample_index", "question"]))
        assert got == [base.select_columns(["sample_index", "question"])[a : a + 300] for a in (0, 300, 600)]


def test_a_user_dataset_is_converted_in_record_batches_of_record_batch_rows(tmp_path, monkeypatch):
    # each record batch's header maps in the pages around it when the file is opened: 1,000-row batches meant the
    # whole file resident (datasets' writer_batch_size splits a map's batches, it never joins them)
    import pyarrow as pa

    from ftcot_hf.tasks import custom

    monkeypatch.setattr(custom, "RECORD_BATCH", 40)
    rows = [{"q": f"What is {i} plus 1?", "a": str(i + 1)} for i in range(130)]
    task = Task.from_dataset(str(_jsonl(tmp_path / "d.jsonl", rows)), question_column="q", answer_column="a",
                             answer_type="number", task_name="d", test_size=10)  # fmt: skip
    train = task.load()["train"]
    (path,) = {f["filename"] for f in train.cache_files}
    with pa.memory_map(path) as source:
        sizes = [b.num_rows for b in pa.ipc.open_stream(source)]
    # a batch per RECORD_BATCH rows of the file, less the test rows held out of each
    assert sum(sizes) == train.num_rows == 120 and len(sizes) == 4 and max(sizes) <= 40


def test_parquet_drops_the_dictionary_of_long_text_only_and_the_same_rows_give_the_same_bytes(tmp_path):
    import pyarrow.parquet as pq

    from ftcot_hf.utils.export import ROW_GROUP, _write_parquet

    n = ROW_GROUP + 300
    data = datasets.Dataset.from_dict({"sample_index": list(range(n)), "teacher": ["bench"] * n,
                                       "rationale": [f"{i} " + "step " * 80 for i in range(n)]})  # fmt: skip
    _write_parquet(data, tmp_path / "a.parquet")
    meta = pq.ParquetFile(tmp_path / "a.parquet").metadata
    encodings = {meta.row_group(0).column(i).path_in_schema: meta.row_group(0).column(i).encodings for i in range(3)}
    assert "RLE_DICTIONARY" in encodings["teacher"] and "RLE_DICTIONARY" not in encodings["rationale"]
    assert meta.num_row_groups == 2 and pq.read_table(tmp_path / "a.parquet").to_pylist() == data.to_list()
    parts = datasets.concatenate_datasets([data.select(range(7)), data.select(range(7, n))])
    _write_parquet(parts, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_the_yield_counted_chunk_by_chunk_equals_one_pass(tmp_path):
    records = scripted_records(10)
    whole, one = augment(records, RationaleAugmenter(ScriptedTeacher(), "coin_flip", degree=4), batch_size=100)
    parts, many = augment(records, RationaleAugmenter(ScriptedTeacher(), "coin_flip", degree=4), batch_size=3)
    assert whole.to_list() == parts.to_list()
    skip = {"stages"}
    assert {k: v for k, v in one.to_dict().items() if k not in skip} == {
        k: v for k, v in many.to_dict().items() if k not in skip
    }


def test_decontamination_pairs_are_bounded_and_template_ngrams_flag_without_pairing(monkeypatch):
    monkeypatch.setattr(dc, "FANOUT", 3)
    monkeypatch.setattr(dc, "MAX_PAIRS", 2)
    template = "a coin is heads up and nobody flips it at all"
    test = [{"sample_index": 100 + i, "question": f"{template} then {i} more words to say here"} for i in range(5)]
    train = [
        {"sample_index": 0, "question": f"{template} so what now"},  # only the 5-way template n-grams
        {"sample_index": 1, "question": "nobody flips it at all then 3 more words to say here now"},
        {"sample_index": 2, "question": "nothing in common with any test question at all here really"},
    ]
    report = dc.decontamination_report("coin_flip", dataset={"train": train, "test": test})
    overlap = report["ngram_overlap"]
    assert overlap["train_ids"] == [0, 1]  # 0 is flagged by template text alone, with no pair
    assert overlap["template_ngrams"] > 0
    assert {p["train"] for p in overlap["pairs"]} == {1}
    rationales = [{"sample_index": 1, "rationale": t["question"]} for t in test]
    report = dc.decontamination_report("coin_flip", dataset={"train": train, "test": test}, rationales=rationales,
                                       max_rationales=2)  # fmt: skip
    assert report["rationales"]["sampled"] == [2, 5] and report["rationales"]["n"] == 5
    full = dc.decontamination_report("coin_flip", dataset={"train": train, "test": test}, rationales=rationales)
    assert "sampled" not in full["rationales"] and full["rationales"]["count"] == 5
    assert len(full["rationales"]["pairs"]) == 2 and full["rationales"]["pairs_total"] == 5  # listed: the first 2
    assert full["rationales"]["test_ids"] == [100, 101, 102, 103, 104]  # the ids stay complete


def test_answers_waiting_for_a_slow_caller_are_bounded_so_a_kill_loses_little():
    """The caller stores each answer in the request cache as it takes it: answers that pile up in between are what a
    kill -9 loses. While the caller holds off, the teacher sends no more than its backlog bound allows."""
    from ftcot_hf.teachers.base import SamplingParams
    from ftcot_hf.teachers.http import core
    from ftcot_hf.teachers.http.openai import OpenAITeacher

    with FakeOpenAIServer() as server:
        teacher = OpenAITeacher("m", server.base_url, max_concurrency=2)
        try:
            results = teacher.generate([Request(f"p{i}", SamplingParams()) for i in range(100)])
            next(results)  # one answer taken, then the caller is busy elsewhere
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:  # however long it waits, the bound holds
                time.sleep(0.05)
                assert len(server.requests) <= 1 + core.BACKLOG_PER_SLOT * 2 + 2
            assert len(list(results)) == 99  # and then everything comes
        finally:
            teacher.close()
    assert len(server.requests) == 100


def test_the_teach_sample_of_rationales_is_taken_as_rows_go_by(tmp_path):
    from ftcot_hf.teach.augment import SAMPLE_ATTRIBUTE

    augmenter = RationaleAugmenter(_Watching(tmp_path / "p"), "coin_flip", protocol="one_stage")
    kept, _ = augment(scripted_records(12), augmenter,
                      batch_size=4, output_dir=tmp_path / "p", flush_seconds=0)  # fmt: skip
    sample = getattr(kept, SAMPLE_ATTRIBUTE)
    assert [r["sample_index"] for r in sample] == list(range(12))  # fewer than 1,000 rows: every one
    assert sample[3]["rationale"] == kept[3]["rationale"]


def test_the_scale_bench_runs_as_documented_small(tmp_path):
    """docs/teaching.md's small bench command, in its own process: the table, the resume check (the same rows as an
    uninterrupted run) and the merge check."""
    import subprocess
    import sys

    from tests.docs_commands import REPO, doc_command

    command = doc_command("python bench/teach_scale.py --sizes 2000 --resume_size 2000 --merge_size 2000")
    argv = [sys.executable, *command.text.split()[1:], "--workdir", str(tmp_path / "w")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| 2,000 | 1,000 |" in done.stdout  # 2,000 questions, 1,000 held out for the test split
    assert "equal to the uninterrupted run: True" in done.stdout
    assert "ftcot merge of 2 parts of 2,000 questions: 1,000 rows" in done.stdout


def test_the_cached_floor_bench_runs_small():
    """bench/cached_floor.py (docs/teaching.md's figures of a cached re-run's ceiling), small: every step timed."""
    import subprocess
    import sys

    from tests.docs_commands import REPO

    done = subprocess.run([sys.executable, "bench/cached_floor.py", "--rows", "2000"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2,000 cached samples of 8 KB" in done.stdout
    for step in ("sqlite read", "json decode", "sha256 keys", "arrow write", "all four"):
        assert f"| {step} |" in done.stdout
