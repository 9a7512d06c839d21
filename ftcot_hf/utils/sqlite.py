"""One way to open the SQLite files several processes share (the request cache and its batch tables)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

BUSY_SECONDS = 60.0
"""How long a connection waits for another process's lock (SQLite's busy timeout, and the WAL switch below)."""


def connect_wal(path: str | Path, *, synchronous: str | None = None) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode (autocommit; ``synchronous`` set when given).

    Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is locked" at once, without
    waiting out its busy timeout, when two processes make that switch together (two runs started on one fresh
    cache): so the switch is retried until :data:`BUSY_SECONDS` have passed."""
    conn = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    deadline = time.monotonic() + BUSY_SECONDS
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
    if synchronous is not None:
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn
