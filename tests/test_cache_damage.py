"""Issue 31, item 2: a damaged request cache is one line naming the file and what to do (exit 2), never a
traceback; a bad row is skipped, counted, asked again and overwritten, never served; `ftcot cache check` finds the
damage and `ftcot cache repair` salvages the readable rows into a fresh file, the damaged one kept aside."""

from __future__ import annotations

import contextlib
import io
import os
import sqlite3
from pathlib import Path

import pytest

from ftcot_hf.cli import main
from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.base import Generation, Request, SamplingParams
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache, request_digest
from tests.doubles import NumberedTeacher, error_line

PARAMS = SamplingParams(max_tokens=8)


def fill(path: Path, count: int = 300) -> list[Request]:
    """A healthy cache of ``count`` requests (long prompts: many pages), closed (its WAL checkpointed)."""
    requests = [Request(f"question {i} " + "padding " * 60, PARAMS) for i in range(count)]
    cached = CachedTeacher(NumberedTeacher(), path)
    list(cached.generate(requests))
    cached.close()
    return requests


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def damage_pages(path: Path, first: int = 8, count: int = 4) -> None:
    size = 4096
    data = bytearray(path.read_bytes())
    assert len(data) > (first + count + 2) * size, "the file must be larger than the pages damaged"
    data[first * size : (first + count) * size] = bytes((i * 37) % 251 for i in range(count * size))
    path.write_bytes(bytes(data))


def make(kind: str, path: Path) -> Path:
    if kind == "directory":
        path.mkdir()
        return path
    if kind == "garbage":
        path.write_bytes(b"this is not SQLite at all\x00\xff" * 200)
        return path
    fill(path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "garbage pages":
        damage_pages(path, first=1, count=6)  # the schema's neighbours: the file cannot be used at all
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "garbage pages", "directory"])
def test_a_damaged_cache_is_one_line_naming_the_file_and_exit_2(kind, tmp_path, mirror):
    cache = make(kind, tmp_path / "teacher.sqlite")
    code, _, err = run_cli(["teach", "--tasks", "coin_flip", "--limit", "2", "--data_dir", str(mirror),
                            "--cache_dir", str(cache), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    line = error_line(err, str(cache))  # (after a progress bar, if any)
    assert code == 2 and err.rstrip().endswith(line), err
    assert ("directory" in line) if kind == "directory" else ("ftcot cache repair" in line)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_cache_is_one_line(tmp_path, mirror):
    cache = tmp_path / "teacher.sqlite"
    fill(cache, 3)
    cache.chmod(0o444)
    code, _, err = run_cli(["teach", "--tasks", "coin_flip", "--limit", "2", "--data_dir", str(mirror),
                            "--cache_dir", str(cache), "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "Traceback" not in err and str(cache) in err and "writable" in err, err


def test_a_read_only_file_is_worded_as_such_whoever_runs_the_tests(tmp_path):
    cache = RequestCache(tmp_path / "teacher.sqlite")
    error = cache._write_error(sqlite3.OperationalError("attempt to write a readonly database"))
    cache.close()
    assert isinstance(error, FtcotError) and "chmod u+w" in str(error) and str(cache.path) in str(error)


def test_damaged_pages_met_by_a_lookup_are_an_error_naming_the_file(tmp_path):
    path = tmp_path / "teacher.sqlite"
    requests = fill(path)
    damage_pages(path)
    cached = CachedTeacher(NumberedTeacher(), path)
    with pytest.raises(FtcotError, match="ftcot cache repair") as e:
        list(cached.generate(requests))
    assert str(path) in str(e.value)
    cached.close()


@pytest.mark.parametrize("bad", ['[["half a row', '{"not": "a list"}', "[[1, 2, 3, 4]]", '[["text", "stop", 1]]',
                                 "null", "[[null, null, null, null]]"])  # fmt: skip
def test_a_bad_row_is_skipped_counted_asked_again_and_overwritten(bad, tmp_path):
    path = tmp_path / "teacher.sqlite"
    requests = fill(path, 5)
    identity = NumberedTeacher().identity()
    spoiled = request_digest(identity, requests[2])
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE requests SET samples = ? WHERE key = ?", (bad, spoiled))
    conn.close()
    teacher = NumberedTeacher()
    cached = CachedTeacher(teacher, path)
    got = dict(cached.generate(requests))
    assert [r.prompt for r in teacher.requests] == [requests[2].prompt]  # only the bad row is asked again
    assert cached.cache.bad_rows == 1
    assert got[2] == [Generation(f"{requests[2].prompt} #0", "stop", 1, 1)]  # never the bad row's content
    cached.close()
    again = CachedTeacher(NumberedTeacher(), path)
    list(again.generate(requests))
    assert again.calls == 0 and again.cache.bad_rows == 0  # overwritten: the next run serves it
    again.close()


def test_cache_check_finds_the_damage_and_repair_salvages_the_readable_rows(tmp_path):
    path = tmp_path / "teacher.sqlite"
    requests = fill(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE requests SET samples = '[[' WHERE key = ?",
                     (request_digest(NumberedTeacher().identity(), requests[0]),))  # fmt: skip
    conn.close()
    damage_pages(path)
    code, out, _ = run_cli(["cache", "check", "--cache_dir", str(path)])
    assert code == 1 and "1 unreadable rows" in out and "ftcot cache repair" in out, out
    code, out, _ = run_cli(["cache", "repair", "--cache_dir", str(path)])
    assert code == 0, out
    [aside] = tmp_path.glob("teacher.sqlite.damaged-*")
    assert str(aside) in out
    kept = int(out.split("kept ")[1].split()[0])
    assert 0 < kept < len(requests) - 1
    code, out, _ = run_cli(["cache", "check", "--cache_dir", str(path)])
    assert code == 0 and f"{kept} readable cached requests; no damage found." in out, out
    teacher = NumberedTeacher()
    cached = CachedTeacher(teacher, path)
    got = dict(cached.generate(requests))
    assert len(teacher.requests) == len(requests) - kept  # only what was lost is asked again
    assert all(got[i] == [Generation(f"{r.prompt} #0", "stop", 1, 1)] for i, r in enumerate(requests))
    cached.close()


def test_cache_commands_on_a_missing_file_or_a_directory_are_one_line(tmp_path):
    for target in (tmp_path / "nothing.sqlite", tmp_path):
        code, _, err = run_cli(["cache", "check", "--cache_dir", str(target)])
        assert code == 2 and err.count("\n") == 1 and str(target) in err, err
    RequestCache(tmp_path / "ok.sqlite").close()
    assert run_cli(["cache", "repair", "--cache_dir", str(tmp_path / "ok.sqlite")])[1].endswith("nothing to repair.\n")


def test_unusable_cached_samples_are_asked_again_and_usable_siblings_kept(tmp_path):
    """Issue 31, item 3: only the unusable samples change; ``retry_unusable=False`` replays them."""
    from ftcot_hf.teachers.base import is_unusable

    assert all(is_unusable(Generation(t, "stop", 1, 1)) for t in ("", "  \n", None, "<think>only a trace</think> "))
    assert not any(is_unusable(Generation(t, "length", 1, 1)) for t in ("a", "<think>t</think>42", "<think>cut"))
    path = tmp_path / "teacher.sqlite"
    request = Request("q", SamplingParams(max_tokens=8, temperature=0.7), n=3)
    digest = request_digest(NumberedTeacher().identity(), request)
    kept = Generation("usable", "stop", 1, 1)
    cache = RequestCache(path)
    cache.store(digest, 0, [kept, Generation("", "stop", 1, 0), Generation("<think>t</think>", "stop", 1, 1)])
    cache.close()
    replay = CachedTeacher(NumberedTeacher(), path, retry_unusable=False)
    assert dict(replay.generate([request]))[0][1].text == "" and replay.calls == 0
    replay.close()
    teacher = NumberedTeacher()
    cached = CachedTeacher(teacher, path)
    got = dict(cached.generate([request]))[0]
    assert [(r.first_index, r.n) for r in teacher.requests] == [(1, 2)] and cached.reasked == 2
    assert got == [kept, Generation("q #1", "stop", 1, 1), Generation("q #2", "stop", 1, 1)]
    cached.close()
    again = CachedTeacher(NumberedTeacher(), path)
    assert dict(again.generate([request]))[0] == got and again.calls == 0  # the new samples were stored
    again.close()
