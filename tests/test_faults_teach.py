"""Faults around `ftcot teach`: two writers on one output folder, a full disk mid-save, a second task taught into the
same folder, and teacher replies cut by the token limit (``finish_reason: "length"``)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from datasets import load_dataset

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.teach import TeachConfig, remove_partial, save_rationales, teach
from ftcot_hf.teach.augment import RationaleAugmenter, YieldReport, augment
from ftcot_hf.teachers.base import Generation, Request
from ftcot_hf.utils.fs import dir_lock
from tests.conftest import REPO_ROOT
from tests.doubles import StubTeacher, exits_2_in_one_line, scripted_records, teach_user_dataset


def _config(out: Path, mirror: Path, tmp_path: Path, task: str = "coin_flip", limit: int = 5, **kw) -> TeachConfig:
    return TeachConfig(tasks=[task], limit=limit, data_dir=str(mirror), cache_dir=str(tmp_path / "c.sqlite"),
                       output_dir=str(out), **kw)  # fmt: skip


def _teach(out: Path, mirror: Path, tmp_path: Path, task: str = "coin_flip", limit: int = 5, **kw) -> TeachConfig:
    config = _config(out, mirror, tmp_path, task, limit, **kw)
    results, reports = teach(config)
    try:
        save_rationales(config, results, reports)
    finally:  # a caller giving up on a failed save drops the rows it staged (the replies are cached)
        remove_partial(results)
    return config


def _checked_rows(out: Path, tmp_path: Path) -> dict[str, int]:
    """Train rows per task as ``load_dataset`` reads them, asserted equal to yield_report.json's ``kept``; the
    README names the same tasks, and nothing is left beside the folder (build folders, the lock file)."""
    meta = json.loads((out / "yield_report.json").read_text())
    kept = {r["task"]: r["kept"] for r in meta["reports"]}
    readme = (out / "README.md").read_text()
    assert sorted(kept) == sorted(n for n in kept if f"config_name: {n}" in readme)
    rows = {name: load_dataset(str(out), name, cache_dir=str(tmp_path / "hf"))["train"].num_rows for name in kept}
    assert rows == kept
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")] == []
    return rows


# -- 1. one writer at a time, and a failed write changes nothing ------------------------------------------------------
# Two `ftcot teach` processes that reach the save together; A writes its Parquet, then pauses before its card, while
# B (which starts writing 0.5 s later) writes everything. Written in place, B deleted A's Parquet and A's card then
# named it: the folder did not load (or one process crashed on the other's `.tmp` file).
RACING_TEACH = """
import os, sys, time
from pathlib import Path
import ftcot_hf.teach.cli, ftcot_hf.teach.folder
barrier, before, after, argv = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
real_save, real_write = ftcot_hf.teach.cli.save_rationales, ftcot_hf.teach.folder.write_parquet_configs
def save(*args, **kwargs):
    (barrier / str(os.getpid())).touch()
    deadline = time.time() + 120
    while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.02)
    return real_save(*args, **kwargs)
def write(*args, **kwargs):
    time.sleep(before)
    out = real_write(*args, **kwargs)
    time.sleep(after)
    return out
ftcot_hf.teach.cli.save_rationales, ftcot_hf.teach.folder.write_parquet_configs = save, write
from ftcot_hf.cli import main
sys.exit(main(argv))
"""


def test_two_concurrent_teach_processes_into_one_folder_both_succeed_and_leave_it_consistent(mirror, tmp_path):
    out, barrier = tmp_path / "rationales", tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    procs = []
    for limit, before, after in ((5, 0.0, 2.0), (7, 0.5, 0.0)):
        argv = ["teach", "--teacher", "text-davinci-002", "--tasks", "coin_flip", "--limit", str(limit),
                "--data_dir", str(mirror), "--cache_dir", str(tmp_path / f"c{limit}.sqlite"),
                "--output_dir", str(out)]  # fmt: skip
        command = [sys.executable, "-c", RACING_TEACH, str(barrier), str(before), str(after), *argv]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        assert "Saved to" in stdout
    rows = _checked_rows(out, tmp_path)
    meta = json.loads((out / "yield_report.json").read_text())
    assert list(rows) == ["coin_flip"] and meta["reports"][0]["questions"] in (5, 7)


def test_a_second_writer_waits_for_the_lock_and_fails_with_one_clear_line_when_it_times_out(mirror, tmp_path):
    out = tmp_path / "rationales"
    config = _config(out, mirror, tmp_path, lock_timeout=0.3)
    results, reports = teach(config)
    with dir_lock(out):
        t = time.monotonic()
        with pytest.raises(FtcotError, match=r"Another process is writing .*rationales.*--lock_timeout") as info:
            save_rationales(config, results, reports)
        assert time.monotonic() - t >= 0.3 and "\n" not in str(info.value)
    assert not out.exists()

    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with dir_lock(out):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(30)
    threading.Timer(1.0, release.set).start()
    config.lock_timeout = 60
    t = time.monotonic()
    save_rationales(config, results, reports)  # waits for the holder, then writes
    thread.join()
    assert time.monotonic() - t >= 0.8
    assert _checked_rows(out, tmp_path) == {"coin_flip": reports[0].kept}


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write_parquet_configs", "_write_parquet"])
def test_a_full_disk_while_reteaching_leaves_the_old_folder_as_it_was(where, mirror, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rationales"
    _teach(out, mirror, tmp_path, limit=5)
    before = _checked_rows(out, tmp_path)
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    if where == "_write_parquet":  # the real writer deleted the old train Parquet before writing the new one
        monkeypatch.setattr("ftcot_hf.utils.export._write_parquet", _disk_full)
    else:
        monkeypatch.setattr("ftcot_hf.teach.folder.write_parquet_configs", _disk_full)
    with pytest.raises(FtcotError, match=r"disk is full .*rationales.* unchanged") as info:
        _teach(out, mirror, tmp_path, limit=7)
    assert "\n" not in str(info.value)
    argv = ["teach", "--tasks", "coin_flip", "--limit", "7", "--data_dir", str(mirror), "--cache_dir",
            str(tmp_path / "c.sqlite"), "--output_dir", str(out)]  # fmt: skip
    exits_2_in_one_line(argv, capsys, "disk is full", alone=False)  # progress bars aside
    monkeypatch.undo()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    assert _checked_rows(out, tmp_path) == before


def test_an_output_dir_that_is_a_file_is_one_clear_line(mirror, tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    argv = ["teach", "--tasks", "coin_flip", "--limit", "2", "--data_dir", str(mirror), "--cache_dir",
            str(tmp_path / "c.sqlite"), "--output_dir", str(target)]  # fmt: skip
    exits_2_in_one_line(argv, capsys, "is a file", alone=False)
    assert target.read_text() == "mine"


# -- 2. a second task joins the folder ------------------------------------------------------------------------------
def test_teaching_a_second_task_into_the_folder_keeps_the_first_and_reteaching_replaces_only_it(
    mirror, tmp_path, capsys
):
    out = tmp_path / "rationales"
    common = ["--data_dir", str(mirror), "--cache_dir", str(tmp_path / "c.sqlite"), "--output_dir", str(out)]
    (tmp_path / "rationales").mkdir()
    (out / "NOTES.md").write_text("my notes")  # a file of the user's: carried over
    assert main(["teach", "--tasks", "coin_flip", "--limit", "5", *common]) == 0
    assert main(["teach", "--tasks", "multiarith", "--limit", "5", *common]) == 0
    rows = _checked_rows(out, tmp_path)
    assert list(rows) == ["coin_flip", "multiarith"]
    assert load_dataset(str(out), "coin_flip", cache_dir=str(tmp_path / "hf"))["test"].num_rows == 150
    multiarith_files = {p.name: p.read_bytes() for p in (out / "multiarith").iterdir()}

    assert main(["teach", "--tasks", "coin_flip", "--limit", "3", *common]) == 0
    again = _checked_rows(out, tmp_path)
    meta = json.loads((out / "yield_report.json").read_text())
    assert [(r["task"], r["questions"]) for r in meta["reports"]] == [("coin_flip", 3), ("multiarith", 5)]
    assert again["multiarith"] == rows["multiarith"]
    assert {p.name: p.read_bytes() for p in (out / "multiarith").iterdir()} == multiarith_files
    assert len(list((out / "coin_flip").glob("train-*.parquet"))) == 1
    assert (out / "NOTES.md").read_text() == "my notes"
    card = (out / "README.md").read_text()
    assert card.count("config_name:") == 2 and "| multiarith |" in card and "| coin_flip |" in card
    assert sorted(meta["task_configs"]) == ["coin_flip", "multiarith"]
    assert meta["task_configs"]["coin_flip"]["limit"] == 3 and meta["task_configs"]["multiarith"]["limit"] == 5


def test_a_user_dataset_task_stays_defined_when_a_builtin_task_joins_its_folder(mirror, tmp_path):
    data = tmp_path / "sums.jsonl"
    data.write_text("".join(json.dumps({"q": f"What is {a} plus {a}?", "a": str(2 * a)}) + "\n" for a in range(12)))
    out = tmp_path / "rationales"
    teach_user_dataset(data, out, question_column="q", answer_column="a", task_name="sums", test_size=4)
    _teach(out, mirror, tmp_path, "coin_flip", 4)
    meta = json.loads((out / "yield_report.json").read_text())
    assert meta["tasks"]["sums"]["answer_type"] == "number"
    assert _checked_rows(out, tmp_path) == {"sums": 8, "coin_flip": meta["reports"][1]["kept"]}


def test_a_fresh_folder_is_not_merged_with_anything(mirror, tmp_path):
    out = tmp_path / "rationales"
    out.mkdir()
    (out / "README.md").write_text("# not a rationale dataset\n")  # no yield_report.json: nothing to merge
    _teach(out, mirror, tmp_path, "coin_flip", 3)
    assert list(_checked_rows(out, tmp_path)) == ["coin_flip"]


def test_a_folder_whose_yield_report_is_unreadable_is_refused_not_overwritten(mirror, tmp_path, capsys):
    out = tmp_path / "rationales"
    _teach(out, mirror, tmp_path, "coin_flip", 3)
    (out / "yield_report.json").write_text('{"reports": [')  # cut short
    files = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    argv = ["teach", "--tasks", "multiarith", "--limit", "2", "--data_dir", str(mirror), "--cache_dir",
            str(tmp_path / "c.sqlite"), "--output_dir", str(out)]  # fmt: skip
    exits_2_in_one_line(argv, capsys, "cannot be read", alone=False)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


# -- 5. replies cut by the token limit ------------------------------------------------------------------------------
class CuttingTeacher(StubTeacher):
    """Every answer is right; question i's rationale is cut (``length``) when i % 3 == 0, its stage-2 answer when
    i % 3 == 1."""

    backend, model = "cutting", "cutting-v1"

    def reply(self, r: Request) -> list[Generation]:
        i = int(r.prompt.split("question ")[1].split(" ")[0])
        gold = r.prompt.split("[gold:")[1].split("]")[0]
        if "Therefore" in r.prompt:
            return [Generation(f" {gold}.", "length" if i % 3 == 1 else "stop", 10, 2)]
        cut = "length" if i % 3 == 0 else "stop"
        return [Generation(f" Rationale {j} of {i}", cut) for j in range(r.first_index, r.first_index + r.n)]


def test_cut_rationales_and_answers_are_not_kept_by_correct_and_are_counted_per_stage():
    augmenter = RationaleAugmenter(CuttingTeacher(), "coin_flip", degree=2, temperature=0.7)
    kept, report = augment(scripted_records(), augmenter)
    assert report.correct == 12 and report.kept == kept.num_rows == 4
    assert sorted(set(kept["sample_index"])) == [2, 5]
    assert (report.rationale_truncated, report.answer_truncated, report.truncated_dropped) == (4, 4, 8)
    assert report.finish_length == 4  # the rationales cut, as before
    table = YieldReport.markdown([report])
    assert "cut (rationale/answer)" in table and "| 4/4 |" in table

    everything, _ = augment(scripted_records(), RationaleAugmenter(CuttingTeacher(), "coin_flip"), keep="all")
    assert everything["finish_reason"] == ["length", "stop", "stop"] * 2
    assert everything["answer_finish_reason"] == ["stop", "length", "stop"] * 2

    opted, report = augment(scripted_records(), RationaleAugmenter(CuttingTeacher(), "coin_flip", keep_truncated=True))
    assert opted.num_rows == report.kept == 6 and report.truncated_dropped == 0
    assert (report.rationale_truncated, report.answer_truncated) == (2, 2)


def test_the_teach_summary_says_how_many_replies_were_cut_and_keep_truncated_keeps_them(mirror, tmp_path, capsys):
    # Two of the recorded teacher's first five multiarith rationales ran into the 128-token limit (one's answer is
    # right anyway). The recorded teacher's preset keeps them (the paper did); --keep_truncated false drops them.
    common = ["--tasks", "multiarith", "--limit", "5", "--data_dir", str(mirror), "--cache_dir",
              str(tmp_path / "c.sqlite")]  # fmt: skip
    assert main(["teach", *common, "--keep_truncated", "false", "--output_dir", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "cut (rationale/answer)" in printed
    summary = "multiarith: 2 rationales and 0 answers cut by the token limit; 1 correct sample among them not kept"
    assert summary in printed
    assert "--keep_truncated true" in printed
    dropped = json.loads((tmp_path / "a" / "yield_report.json").read_text())["reports"][0]
    assert (dropped["rationale_truncated"], dropped["truncated_dropped"]) == (2, 1)

    assert main(["teach", *common, "--keep_truncated", "true", "--output_dir", str(tmp_path / "b")]) == 0
    kept = json.loads((tmp_path / "b" / "yield_report.json").read_text())["reports"][0]
    assert kept["kept"] == dropped["kept"] + 1 and kept["truncated_dropped"] == 0
    assert main(["teach", *common, "--output_dir", str(tmp_path / "c")]) == 0  # the preset's default
    assert json.loads((tmp_path / "c" / "yield_report.json").read_text())["reports"][0]["kept"] == kept["kept"]
