"""A persistent, content-addressed cache of every teacher request.

One row per request: key = sha256 of (backend, model, prompt, every sampling parameter, chat flag), holding the
request's samples by index as one JSON array, written (and committed) as soon as the request completes, in
SQLite's WAL mode: a re-run makes zero calls, a killed run (even kill -9) repeats at most the requests that were in
flight, and concurrent writers (threads or processes) are serialised by SQLite rather than corrupting the file. A
request for more samples of a cached prompt asks only for the missing tail, which is merged into the same row.

Why one row per request (schema 2), not one per sample (schema 1, table ``generations``): a fully cached re-run of
10M samples then looks up ~300k keys instead of 10M and hashes one key per request instead of one per sample
(``bench/cache_scale.py``). A schema-1 file stays readable: a sample not found in schema 2 is looked up by its
schema-1 key, and what is found there is copied into schema 2 (so a second re-run no longer needs the old table).

The default location follows HF conventions: ``$FTCOT_CACHE`` or ``$HF_HOME/ftcot/teacher_cache.sqlite``
(``~/.cache/huggingface/ftcot/...``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.base import Generation, Request, Teacher, TeacherError, is_failure, is_unusable
from ftcot_hf.utils.fs import hf_home
from ftcot_hf.utils.sqlite import connect_wal

logger = logging.getLogger(__name__)

CACHE_ENV = "FTCOT_CACHE"
LOOKUP_BATCH = 500
"""Keys per ``WHERE key IN (...)`` (SQLite allows 32,766 parameters; 500 is past the point of diminishing returns)."""
WINDOW = 1024
"""Requests looked up at a time by :meth:`CachedTeacher.generate`, so its memory does not grow with the call."""

Samples = list[Generation | None]
"""A request's cached samples by index (``None``: a sample not cached)."""


def default_cache_path() -> Path:
    """``$FTCOT_CACHE``, else ``<HF home>/ftcot/teacher_cache.sqlite`` (:func:`ftcot_hf.utils.fs.hf_home`: the
    environment as it is now, by huggingface_hub's rule)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return hf_home() / "ftcot" / "teacher_cache.sqlite"


def _payload(identity: dict[str, Any], request: Request, params_key: dict[str, Any] | None = None) -> dict[str, Any]:
    params = params_key if params_key is not None else request.params.key()
    return {**identity, "prompt": request.prompt, "params": params, "chat": request.chat}


def request_digest(identity: dict[str, Any], request: Request, params_key: dict[str, Any] | None = None) -> bytes:
    """The schema-2 key of ``request``'s samples (every sample index shares it). ``params_key`` is
    ``request.params.key()`` when the caller has it (``dataclasses.asdict`` is most of the cost of a key)."""
    payload = _payload(identity, request, params_key)
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).digest()


def request_key(identity: dict[str, Any], request: Request, sample_index: int) -> str:
    """The schema-1 key of one sample (how files written before schema 2 are read)."""
    payload = {**_payload(identity, request), "sample_index": sample_index}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _encode(samples: Samples) -> str:
    return json.dumps(
        [None if g is None else [g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens] for g in samples],
        ensure_ascii=False,
    )


def _is_sample(s: Any) -> bool:
    return (isinstance(s, list) and len(s) == 4 and isinstance(s[0], str) and isinstance(s[1], str | None)
            and all(isinstance(t, int | None) and not isinstance(t, bool) for t in s[2:]))  # fmt: skip


def decode_row(text: Any) -> Samples | None:
    """A row's samples, or None when the row is unreadable (broken JSON, or not a list of ``[text, finish_reason,
    prompt_tokens, completion_tokens]``): such a row is never served, it is asked again and overwritten."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return None
    if not isinstance(data, list) or not all(s is None or _is_sample(s) for s in data):
        return None
    return [None if s is None else Generation(*s) for s in data]


_DAMAGED = ("file is not a database", "malformed", "database disk image", "not a database", "file is encrypted")
_READ_ONLY = ("readonly", "read-only", "unable to open")


def merge(samples: Samples, first_index: int, gens: Sequence[Generation | None]) -> Samples:
    """``samples`` with ``gens`` placed from index ``first_index`` (new samples win; gaps stay ``None``)."""
    merged = list(samples) + [None] * max(0, first_index + len(gens) - len(samples))
    for j, g in enumerate(gens):
        if g is not None:
            merged[first_index + j] = g
    return merged


class CacheFullError(FtcotError, OSError):
    """The request cache could not be written for lack of space: one line for the user, and an ``OSError`` with
    ``ENOSPC`` for code that handles full disks (``ftcot run``'s stages)."""

    def __init__(self, message: str):
        FtcotError.__init__(self, message)
        self.errno = errno.ENOSPC


class RequestCache:
    """The SQLite store. Safe to share between threads; several processes may open the same file."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        if self.path.is_dir():
            raise FtcotError(f"The teacher request cache {self.path} is a directory: --cache_dir names the cache "
                             f"file itself; give a file path, e.g. --cache_dir {self.path / 'teacher_cache.sqlite'}.")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise FtcotError(f"Cannot create the folder of the teacher request cache {self.path} "
                             f"({e.strerror or e}): give a writable --cache_dir.") from None  # fmt: skip
        self._local = threading.local()
        self.bad_rows = 0
        """Rows found unreadable (broken JSON, the wrong shape): skipped, asked again and overwritten."""
        try:
            conn = self._conn()
            conn.execute(
                "CREATE TABLE IF NOT EXISTS requests (key BLOB PRIMARY KEY, n INTEGER NOT NULL, samples TEXT NOT NULL)"
            )
            # schema 1: one row per sample; read (and copied forward) when it holds anything
            self.legacy = bool(
                conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'generations'").fetchone()
                and conn.execute("SELECT 1 FROM generations LIMIT 1").fetchone()
            )
        except sqlite3.DatabaseError as e:
            self.close()
            raise self._write_error(e) from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_wal(self.path, synchronous="NORMAL")
            self._local.conn = conn
        return conn

    def lookup(self, digests: Sequence[bytes]) -> dict[bytes, Samples]:
        """The cached samples of each request found (schema 2 only)."""
        found: dict[bytes, Samples] = {}
        conn = self._conn()
        for start in range(0, len(digests), LOOKUP_BATCH):
            chunk = digests[start : start + LOOKUP_BATCH]
            marks = ",".join("?" * len(chunk))
            try:
                rows = conn.execute(f"SELECT key, samples FROM requests WHERE key IN ({marks})", chunk).fetchall()
            except sqlite3.DatabaseError as e:
                raise self._write_error(e) from None
            for key, text in rows:
                samples = decode_row(text)
                if samples is None:
                    self.bad_rows += 1
                    logger.warning("%s: an unreadable cached reply (broken JSON or the wrong shape) is skipped and "
                                   "asked again (`ftcot cache check` lists them)", self.path)  # fmt: skip
                    continue
                found[key] = samples
        return found

    def store(self, digest: bytes, first_index: int, gens: Sequence[Generation | None]) -> Samples:
        """Merge ``gens`` (samples ``first_index``...) into the request's row, in one transaction (another process
        may have added samples since we read it); returns what the row holds now."""
        try:
            return self._store(digest, first_index, gens)
        except sqlite3.DatabaseError as e:
            raise self._write_error(e) from None

    def _write_error(self, e: sqlite3.DatabaseError) -> Exception:
        """A failure of the file as one line saying what to do: the disk full (or over a quota or file-size limit),
        the file damaged (not SQLite, garbage pages), read-only; other SQLite errors as they are."""
        text = str(e).lower()
        if any(s in text for s in _DAMAGED):
            return FtcotError(
                f"The teacher request cache {self.path} is damaged ({e}). Run `ftcot cache repair --cache_dir "
                f"{self.path}` (it keeps every readable reply and moves the damaged file aside), or move the file "
                "aside yourself; then re-run the same command: it asks again only what is not cached."
            )
        if any(s in text for s in _READ_ONLY):
            return FtcotError(
                f"The teacher request cache {self.path} cannot be written ({e}): make it and its folder writable "
                f"(chmod u+w {self.path}) or give another --cache_dir."
            )
        if not any(s in text for s in ("disk i/o error", "database or disk is full", "file is too large")):
            return e
        return CacheFullError(
            f"The teacher request cache {self.path} could not be written ({e}): the disk is full or over a limit. "
            "Every reply cached before is kept; free some space (or give --cache_dir on another disk) and re-run "
            "the same command: it sends only what is not cached."
        )

    def _store(self, digest: bytes, first_index: int, gens: Sequence[Generation | None]) -> Samples:
        conn = self._conn()
        if first_index == 0 and all(g is not None for g in gens):  # the common case: a request not cached yet
            count, encoded = len(gens), _encode(list(gens))
            sql = "INSERT INTO requests VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING"
            if conn.execute(sql, (digest, count, encoded)).rowcount == 1:  # one statement, its own transaction
                return list(gens)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT samples FROM requests WHERE key = ?", (digest,)).fetchone()
            samples = merge((decode_row(row[0]) or []) if row else [], first_index, gens)  # a bad row: overwritten
            count = sum(g is not None for g in samples)
            conn.execute("INSERT OR REPLACE INTO requests VALUES (?, ?, ?)", (digest, count, _encode(samples)))
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:  # a failed write (a full disk) may have ended the transaction already
                pass
            raise
        return samples

    def get_legacy(self, keys: Sequence[str]) -> dict[str, Generation]:
        """Schema-1 samples by their :func:`request_key`."""
        found: dict[str, Generation] = {}
        if not self.legacy:
            return found
        conn = self._conn()
        for start in range(0, len(keys), LOOKUP_BATCH):
            chunk = list(keys[start : start + LOOKUP_BATCH])
            marks = ",".join("?" * len(chunk))
            for key, text, finish, p_tok, c_tok in conn.execute(
                "SELECT key, text, finish_reason, prompt_tokens, completion_tokens FROM generations "
                f"WHERE key IN ({marks})",
                chunk,
            ):
                found[key] = Generation(text, finish, p_tok, c_tok)
        return found

    def __len__(self) -> int:
        """Cached samples (schema 2; schema-1 rows not yet copied forward are not counted)."""
        return self._conn().execute("SELECT COALESCE(SUM(n), 0) FROM requests").fetchone()[0]

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

    With ``retry_unusable`` (the default), a cached sample that is unusable (:func:`~ftcot_hf.teachers.base.
    is_unusable`: empty, null, reasoning-only) is not served: it is asked again and overwritten (``reasked`` counts
    them); without it, it is replayed as it was (a deliberate greedy replay).
    """

    def __init__(
        self, teacher: Teacher, cache: RequestCache | str | os.PathLike | None = None, *, retry_unusable: bool = True
    ):
        self.teacher = teacher
        self.retry_unusable = retry_unusable
        self.reasked = 0
        self.backend = teacher.backend
        self.model = teacher.model
        self.cache = cache if isinstance(cache, RequestCache) else RequestCache(cache)
        attach = getattr(teacher, "attach_cache", None)
        if callable(attach):  # a batch teacher records its batches in the same file (they must outlive a kill)
            attach(self.cache)
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

    def live(self) -> dict[str, Any]:
        return self.teacher.live()

    def generate(self, requests: Sequence[Request]) -> Iterator[tuple[int, list[Generation]]]:
        identity = self.identity()
        params_keys: dict[Any, dict[str, Any]] = {}  # the requests of a run share a few SamplingParams
        missing: list[Request] = []
        origin: list[tuple[int, bytes, list[Generation | None]]] = []  # (position, key, the samples cached)
        for start in range(0, len(requests), WINDOW):
            part = requests[start : start + WINDOW]
            digests = []
            for r in part:
                if r.params not in params_keys:
                    params_keys[r.params] = r.params.key()
                digests.append(request_digest(identity, r, params_keys[r.params]))
            cached = self.cache.lookup(digests)
            for offset, (request, digest) in enumerate(zip(part, digests, strict=True)):
                have = cached.get(digest, ())
                lo = request.first_index
                gens = list(have[lo : lo + request.n])
                gens += [None] * (request.n - len(gens))
                if self.cache.legacy and any(g is None for g in gens):
                    gens = self._from_legacy(identity, request, digest, gens)
                if self.retry_unusable:
                    unusable = [j for j, g in enumerate(gens) if g is not None and is_unusable(g)]
                    self.reasked += len(unusable)
                    for j in unusable:
                        gens[j] = None
                hits = sum(g is not None for g in gens)  # `is`: Generation's == compares every field
                self.cache_hits += hits
                if hits == request.n:
                    yield start + offset, gens  # type: ignore[misc]
                    continue
                # Samples are produced in order, so only a tail can be missing (an unusable sample aside: the tail
                # from it is asked, and only the holes take the new samples); ask for that tail in one request.
                first = next(j for j, g in enumerate(gens) if g is None)
                missing.append(Request(request.prompt, request.params, request.n - first, lo + first, request.chat))
                origin.append((start + offset, digest, gens))
        if not missing:
            return
        for mpos, gens in self.teacher.generate(missing):
            self.calls += 1
            pos, digest, merged = origin[mpos]
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
            first = len(merged) - request.n
            fresh = [g if merged[first + j] is None else None for j, g in enumerate(gens)]  # usable ones stay
            self.cache.store(digest, request.first_index, fresh)
            merged[first:] = [g if m is None else m for m, g in zip(merged[first:], gens, strict=True)]
            yield pos, merged  # type: ignore[misc]

    def _from_legacy(
        self, identity: dict[str, Any], request: Request, digest: bytes, gens: list[Generation | None]
    ) -> list[Generation | None]:
        """Fill ``gens``' holes from a schema-1 table, and copy what was found into schema 2."""
        holes = [j for j, g in enumerate(gens) if g is None]
        keys = {j: request_key(identity, request, request.first_index + j) for j in holes}
        found = self.cache.get_legacy(list(keys.values()))
        if not found:
            return gens
        gens = [found.get(keys[j]) if g is None else g for j, g in enumerate(gens)]
        self.cache.store(digest, request.first_index, gens)
        return gens

    def close(self) -> None:
        self.teacher.close()
        self.cache.close()
