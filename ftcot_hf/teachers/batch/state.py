"""What survives a kill: the batches and their lines, in the request cache's SQLite file (tables ``batch_jobs`` and
``batch_lines``), and the key that names a line (:func:`batch_key`)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ftcot_hf.utils.sqlite import connect_wal


def batch_key(digest: bytes, first_index: int, count: int) -> str:
    """The ``custom_id`` of a line: the request cache's key of the prompt (:func:`~ftcot_hf.teachers.cache.
    request_digest`) with the samples it asks for, as 64 hex characters (Anthropic allows ``[a-zA-Z0-9_-]{1,64}``)."""
    return hashlib.sha256(digest + f":{first_index}:{count}".encode()).hexdigest()


@dataclass
class Line:
    """One line of a batch: ``count`` samples (from ``first_index + offset``) of the request at ``pos``."""

    custom_id: str
    pos: int
    offset: int
    count: int
    digest: bytes
    first_index: int
    worst: float = 0.0


class BatchState:
    """The batches and their lines, in the request cache's SQLite file (its own tables): what survives a kill."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS batch_jobs (job TEXT PRIMARY KEY, backend TEXT NOT NULL, "
                     "base_url TEXT NOT NULL, batch_id TEXT, state TEXT NOT NULL, lines INTEGER NOT NULL, "
                     "created REAL NOT NULL)")  # fmt: skip
        conn.execute(
            "CREATE TABLE IF NOT EXISTS batch_lines (custom_id TEXT NOT NULL, job TEXT NOT NULL, digest BLOB "
            "NOT NULL, first_index INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (custom_id, job))"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS batch_lines_job ON batch_lines (job)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_wal(self.path)
            self._local.conn = conn
        return conn

    def intent(self, job: str, backend: str, base_url: str, lines: Sequence[Line]) -> None:
        """Record a batch about to be created, with its lines (one transaction, committed before the API call)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO batch_jobs VALUES (?, ?, ?, NULL, 'submitting', ?, ?)",
                         (job, backend, base_url, len(lines), time.time()))  # fmt: skip
            conn.executemany(
                "INSERT OR REPLACE INTO batch_lines VALUES (?, ?, ?, ?, ?)",
                [(x.custom_id, job, x.digest, x.first_index + x.offset, x.count) for x in lines],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def submitted(self, job: str, batch_id: str) -> None:
        self._conn().execute("UPDATE batch_jobs SET batch_id = ?, state = 'running' WHERE job = ?", (batch_id, job))

    def finish(self, job: str, state: str) -> None:
        self._conn().execute("UPDATE batch_jobs SET state = ? WHERE job = ?", (state, job))

    def open_jobs(self, backend: str, custom_ids: Sequence[str]) -> dict[str, list[str]]:
        """The batches (submitting or running) holding any of ``custom_ids``: job -> those of its custom ids."""
        found: dict[str, list[str]] = {}
        conn = self._conn()
        for start in range(0, len(custom_ids), 500):
            chunk = list(custom_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                "SELECT l.custom_id, l.job FROM batch_lines l JOIN batch_jobs j ON j.job = l.job WHERE j.backend = ? "
                f"AND j.state IN ('submitting', 'running') AND l.custom_id IN ({marks})", [backend, *chunk]
            ).fetchall()  # fmt: skip
            for cid, job in rows:
                found.setdefault(job, []).append(cid)
        return found

    def job(self, job: str) -> tuple[str | None, str, str]:
        """(batch id, state, base URL shown) of a job."""
        row = self._conn().execute("SELECT batch_id, state, base_url FROM batch_jobs WHERE job = ?", (job,)).fetchone()
        return row[0], row[1], row[2]

    def lines(self, job: str) -> dict[str, tuple[bytes, int, int]]:
        """custom id -> (request digest, first sample index, sample count) of a job's lines."""
        rows = self._conn().execute("SELECT custom_id, digest, first_index, count FROM batch_lines WHERE job = ?",
                                    (job,)).fetchall()  # fmt: skip
        return {cid: (digest, first, count) for cid, digest, first, count in rows}

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
