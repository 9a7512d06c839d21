"""The request cache's schema 2 (one row per request): schema-1 files stay readable and are copied forward, tails
merge into one row, lookups are windowed, and a re-run is served without the teacher."""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from ftcot_hf.teachers import cache as cache_module
from ftcot_hf.teachers.base import Generation, Request, SamplingParams
from ftcot_hf.teachers.cache import CachedTeacher, RequestCache, merge, request_digest, request_key
from tests.doubles import NumberedTeacher

PARAMS = SamplingParams(temperature=0.7)


def asked(teacher: NumberedTeacher) -> list[tuple[str, int, int]]:
    """(prompt, first sample, samples) of every request the teacher was sent."""
    return [(r.prompt, r.first_index, r.n) for r in teacher.requests]


def write_schema_1(path, identity: dict, rows: dict[tuple[str, int], str]) -> None:
    """A cache file as the schema-1 code wrote it: table ``generations``, one row per sample."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE generations (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT NOT NULL, "
        "prompt_tokens INTEGER, completion_tokens INTEGER, meta TEXT)"
    )
    for (prompt, index), text in rows.items():
        key = request_key(identity, Request(prompt, PARAMS), index)
        conn.execute("INSERT INTO generations VALUES (?, ?, 'stop', 3, 4, NULL)", (key, text))
    conn.commit()
    conn.close()


def test_schema_1_key_is_unchanged():
    """Files written before schema 2 are found by exactly the key the old code computed."""
    identity = {"backend": "b", "model": "m"}
    request = Request("p", PARAMS)
    payload = {**identity, "prompt": "p", "params": PARAMS.key(), "chat": False, "sample_index": 2}
    old = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    assert request_key(identity, request, 2) == old
    assert request_digest(identity, request) == request_digest(identity, Request("p", PARAMS, n=5, first_index=3))
    assert request_digest(identity, request) != request_digest(identity, Request("p", PARAMS, chat=True))


def test_a_schema_1_file_is_read_then_copied_forward(tmp_path):
    path = tmp_path / "old.sqlite"
    teacher = NumberedTeacher()
    write_schema_1(path, teacher.identity(), {("a", 0): "old a0", ("a", 1): "old a1", ("b", 0): "old b0"})
    cached = CachedTeacher(teacher, RequestCache(path))
    assert cached.cache.legacy and len(cached.cache) == 0
    out = dict(cached.generate([Request("a", PARAMS, n=3), Request("b", PARAMS)]))
    assert [g.text for g in out[0]] == ["old a0", "old a1", "a #2"]  # only the tail was asked for
    assert [g.text for g in out[1]] == ["old b0"]
    assert asked(teacher) == [("a", 2, 1)] and cached.calls == 1 and cached.cache_hits == 3
    # copied forward: a fresh teacher finds everything in schema 2 even with the old table gone
    sqlite3.connect(path).execute("DROP TABLE generations").connection.commit()
    again = CachedTeacher(NumberedTeacher(), RequestCache(path))
    assert not again.cache.legacy
    out2 = dict(again.generate([Request("a", PARAMS, n=3), Request("b", PARAMS)]))
    assert out2 == out and again.calls == 0 and len(again.cache) == 4


def test_tails_merge_into_one_row_and_first_index_reads_from_the_middle(tmp_path):
    teacher = NumberedTeacher()
    cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
    dict(cached.generate([Request("p", PARAMS, n=2)]))
    dict(cached.generate([Request("p", PARAMS, n=2, first_index=2)]))
    assert asked(teacher) == [("p", 0, 2), ("p", 2, 2)]
    rows = sqlite3.connect(tmp_path / "c.sqlite").execute("SELECT n FROM requests").fetchall()
    assert rows == [(4,)]
    out = dict(cached.generate([Request("p", PARAMS, n=3, first_index=1), Request("p", PARAMS, n=6)]))
    assert [g.text for g in out[0]] == ["p #1", "p #2", "p #3"]
    assert [g.text for g in out[1]] == [f"p #{j}" for j in range(6)]
    assert asked(teacher)[-1] == ("p", 4, 2)


def test_merge_keeps_existing_samples_and_fills_gaps():
    a, b, c = (Generation(t, "stop") for t in "abc")
    assert merge([a], 2, [c]) == [a, None, c]
    assert merge([a, None, c], 1, [b]) == [a, b, c]
    assert merge([a, b], 0, [None, c]) == [a, c]


def test_lookups_are_windowed_and_a_rerun_never_calls_the_teacher(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_module, "WINDOW", 7)
    monkeypatch.setattr(cache_module, "LOOKUP_BATCH", 3)
    teacher = NumberedTeacher()
    cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
    requests = [Request(f"q{i}", PARAMS, n=1 + i % 4) for i in range(30)]
    first = dict(cached.generate(requests))
    assert sorted(first) == list(range(30)) and len(cached.cache) == sum(r.n for r in requests)
    seen: list[int] = []
    original = cached.cache.lookup

    def spy(digests):
        seen.append(len(digests))
        return original(digests)

    monkeypatch.setattr(cached.cache, "lookup", spy)
    again = dict(cached.generate(requests))
    assert again == first and len(teacher.requests) == 30  # nothing more asked
    assert max(seen) == 7 and sum(seen) == 30


@pytest.mark.parametrize("n", [0, 1])
def test_a_request_for_zero_samples_is_served_without_the_teacher(tmp_path, n):
    teacher = NumberedTeacher()
    cached = CachedTeacher(teacher, tmp_path / "c.sqlite")
    out = dict(cached.generate([Request("z", PARAMS, n=n)]))
    assert len(out[0]) == n and len(teacher.requests) == n


def test_storing_from_index_0_over_an_existing_row_merges_instead_of_replacing(tmp_path):
    """The insert fast path (a new request) must not drop samples another writer stored first."""
    cache = RequestCache(tmp_path / "c.sqlite")
    a, b, c, x = (Generation(t, "stop") for t in "abcx")
    assert cache.store(b"k", 0, [a, b, c]) == [a, b, c]
    assert cache.store(b"k", 0, [x]) == [x, b, c]
    assert cache.lookup([b"k"])[b"k"] == [x, b, c] and len(cache) == 3
