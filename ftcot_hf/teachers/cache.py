"""A persistent, content-addressed cache of every teacher request.

Key = sha256 of (backend, model, prompt, every sampling parameter, chat flag, sample index). One row per
sample, written (and committed) as soon as it is produced, in SQLite's WAL mode: a re-run makes zero calls,
a killed run (even kill -9) repeats at most the requests that were in flight, and concurrent writers (threads
or processes) are serialised by SQLite rather than corrupting the file. The default location follows HF
conventions: ``$FTCOT_CACHE`` or ``$HF_HOME/ftcot/teacher_cache.sqlite`` (``~/.cache/huggingface/ftcot/...``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ftcot_hf.teachers.base import Generation, Request, Teacher, TeacherError, is_failure
from ftcot_hf.utils.fs import hf_home

logger = logging.getLogger(__name__)

CACHE_ENV = "FTCOT_CACHE"


def default_cache_path() -> Path:
    """``$FTCOT_CACHE``, else ``<HF home>/ftcot/teacher_cache.sqlite`` (:func:`ftcot_hf.utils.fs.hf_home`: the
    environment as it is now, by huggingface_hub's rule)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return hf_home() / "ftcot" / "teacher_cache.sqlite"


def request_key(identity: dict[str, Any], request: Request, sample_index: int) -> str:
    payload = {
        **identity,
        "prompt": request.prompt,
        "params": request.params.key(),
        "chat": request.chat,
        "sample_index": sample_index,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class RequestCache:
    """The SQLite store. Safe to share between threads; several processes may open the same file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
                "finish_reason TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, meta TEXT)"
            )

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get_many(self, keys: Sequence[str]) -> dict[str, Generation]:
        found: dict[str, Generation] = {}
        conn = self._conn()
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            for key, text, finish, p_tok, c_tok in conn.execute(
                "SELECT key, text, finish_reason, prompt_tokens, completion_tokens FROM generations "
                f"WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = Generation(text, finish, p_tok, c_tok)
        return found

    def put_many(self, items: Sequence[tuple[str, Generation, dict | None]]) -> None:
        if not items:
            return
        conn = self._conn()
        rows = [
            (k, g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens, json.dumps(m) if m else None)
            for k, g, m in items
        ]
        with conn:  # one transaction: all of a request's samples, or none
            conn.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM generations").fetchone()[0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class CachedTeacher(Teacher):
    """Wraps a teacher: serves cached samples, asks the backend only for missing ones, stores each result at once.

    ``calls`` counts the requests actually sent to the backend (what a re-run must keep at zero). With
    ``keep_going`` (passed on to the backend), a request that failed for good is passed on as the backend's
    :class:`~ftcot_hf.teachers.base.FailedRequest` and never stored, so a re-run asks for exactly those again;
    ``failed`` counts them and ``last_error`` keeps the latest one's message.
    """

    def __init__(self, teacher: Teacher, cache: RequestCache | str | os.PathLike | None = None):
        self.teacher = teacher
        self.backend = teacher.backend
        self.model = teacher.model
        self.cache = cache if isinstance(cache, RequestCache) else RequestCache(cache)
        self.calls = 0
        self.cache_hits = 0
        self.failed = 0
        self.last_error: str | None = None

    @property
    def keep_going(self) -> bool:  # type: ignore[override]
        return self.teacher.keep_going

    @keep_going.setter
    def keep_going(self, value: bool) -> None:
        self.teacher.keep_going = value

    @property
    def max_concurrency(self) -> int | None:  # type: ignore[override]
        return self.teacher.max_concurrency

    def identity(self) -> dict[str, Any]:
        return self.teacher.identity()

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        identity = self.identity()
        keys = [[request_key(identity, r, r.first_index + j) for j in range(r.n)] for r in requests]
        cached = self.cache.get_many([k for ks in keys for k in ks])
        missing: list[Request] = []
        origin: list[tuple[int, int]] = []  # (request position, offset of the first missing sample)
        results: dict[int, list[Generation | None]] = {}
        for pos, (request, ks) in enumerate(zip(requests, keys, strict=True)):
            gens = [cached.get(k) for k in ks]
            self.cache_hits += sum(g is not None for g in gens)
            if all(g is not None for g in gens):
                yield pos, gens  # type: ignore[misc]
                continue
            first = next(j for j, g in enumerate(gens) if g is None)
            # Samples are produced in order, so only a tail can be missing; ask for that tail in one request.
            results[pos] = gens
            missing.append(
                Request(request.prompt, request.params, request.n - first, request.first_index + first, request.chat)
            )
            origin.append((pos, first))
        if not missing:
            return
        for mpos, gens in self.teacher.generate(missing):
            self.calls += 1
            pos, first = origin[mpos]
            request = missing[mpos]
            if is_failure(gens):
                self.failed += 1
                self.last_error = str(gens.error)  # type: ignore[attr-defined]
                yield pos, gens
                continue
            if len(gens) != request.n:
                raise TeacherError(
                    f"{self.backend} teacher returned {len(gens)} samples for a request of {request.n} "
                    f"(prompt {request.prompt[:60]!r})."
                )
            self.cache.put_many([(keys[pos][first + j], g, None) for j, g in enumerate(gens)])
            merged = results[pos]
            merged[first:] = gens
            yield pos, merged  # type: ignore[misc]

    def close(self) -> None:
        self.teacher.close()
        self.cache.close()
