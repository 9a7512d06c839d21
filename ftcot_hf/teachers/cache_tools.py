"""`ftcot cache check` and `ftcot cache repair`: what to do with a damaged teacher request cache.

``check`` reads the whole file (SQLite's ``quick_check``, then every row decoded as the cache decodes it) and says
what is wrong; ``repair`` copies every readable reply into a fresh file, keeps the damaged one aside as
``<file>.damaged-<timestamp>`` (with its ``-wal``/``-shm``), and puts the fresh one in its place. What could not be
read is simply asked again by the next run (the cache is content-addressed: nothing else refers to a row).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from ftcot_hf.errors import FtcotError
from ftcot_hf.teachers.cache import RequestCache, decode_row, default_cache_path

logger = logging.getLogger(__name__)

BATCH = 500
MAX_MISSES = 100_000
"""Row ids probed one by one past a damaged page before the scan gives up on the rest of the table."""


@dataclass
class Salvage:
    """What a scan of a cache file found."""

    rows: list[tuple[bytes, int, str]] = field(default_factory=list)
    """Readable ``requests`` rows (key, n, samples)."""
    legacy: list[tuple] = field(default_factory=list)
    """Readable schema-1 ``generations`` rows."""
    legacy_sql: str | None = None
    bad_rows: int = 0
    """Rows read but unusable (broken JSON, the wrong shape)."""
    problems: list[str] = field(default_factory=list)
    """What SQLite said about the file (damaged pages, not a database)."""

    @property
    def damaged(self) -> bool:
        return bool(self.problems or self.bad_rows)


def _existing(path: str | os.PathLike | None) -> Path:
    path = Path(path).expanduser() if path is not None else default_cache_path()
    if path.is_dir():
        raise FtcotError(f"--cache_dir {path} is a directory: give the cache file itself (e.g. "
                         f"{path / 'teacher_cache.sqlite'}).")  # fmt: skip
    if not path.is_file():
        raise FtcotError(f"No teacher request cache at {path}: give the file with --cache_dir.")
    return path


def _scan_requests(conn: sqlite3.Connection, found: Salvage) -> None:
    """Every readable row of ``requests``, stepping over damaged pages row id by row id."""
    last, misses = 0, 0
    while misses < MAX_MISSES:
        try:
            batch = conn.execute("SELECT rowid, key, n, samples FROM requests WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                 (last, BATCH)).fetchall()  # fmt: skip
        except sqlite3.DatabaseError as e:
            if not found.problems or found.problems[-1] != str(e):
                found.problems.append(f"requests after row {last}: {e}")
            last, misses = last + 1, misses + 1
            try:  # the one row past the damage, if it is readable
                row = conn.execute("SELECT rowid, key, n, samples FROM requests WHERE rowid = ?", (last,)).fetchone()
            except sqlite3.DatabaseError:
                continue
            batch = [row] if row else []
            if not batch:
                continue
        if not batch:
            return
        misses = 0
        for rowid, key, n, samples in batch:
            last = rowid
            if isinstance(key, bytes) and decode_row(samples) is not None:
                found.rows.append((key, n, samples))
            else:
                found.bad_rows += 1


def scan(path: Path) -> Salvage:
    found = Salvage()
    conn = sqlite3.connect(path, timeout=60)
    try:
        try:
            verdict = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
            if verdict != ["ok"]:
                found.problems.append("integrity: " + "; ".join(verdict[:5]))
        except sqlite3.DatabaseError as e:
            found.problems.append(str(e))
        try:
            tables = {r[0]: r[1] for r in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as e:  # not a database at all, or its schema page is gone: nothing to read
            if str(e) not in found.problems:
                found.problems.append(str(e))
            return found
        if "requests" in tables:
            _scan_requests(conn, found)
        if "generations" in tables:
            found.legacy_sql = tables["generations"]
            try:
                found.legacy = conn.execute("SELECT * FROM generations").fetchall()
            except sqlite3.DatabaseError as e:
                found.problems.append(f"generations (schema 1): {e}")
    finally:
        conn.close()
    return found


def check(path: str | os.PathLike | None = None) -> tuple[int, str]:
    """(exit status, report): 0 when every row is readable, 1 when the file is damaged."""
    file = _existing(path)
    found = scan(file)
    line = f"{file}: {len(found.rows)} readable cached requests"
    if found.legacy:
        line += f", {len(found.legacy)} schema-1 samples"
    if not found.damaged:
        return 0, line + "; no damage found."
    why = "; ".join(found.problems)
    return 1, (f"{line}, {found.bad_rows} unreadable rows (broken JSON or the wrong shape){f'; {why}' if why else ''}."
               f"\nRepair it with `ftcot cache repair --cache_dir {file}`: it keeps the readable rows, moves the "
               "damaged file aside; the next run asks again only what is missing.")  # fmt: skip


def repair(path: str | os.PathLike | None = None) -> tuple[int, str]:
    """Salvage the readable rows into a fresh file put in place of ``path``; the damaged one is kept aside."""
    file = _existing(path)
    found = scan(file)
    if not found.damaged:
        return 0, f"{file}: {len(found.rows)} readable cached requests, no damage found: nothing to repair."
    fresh = file.with_name(f"{file.name}.repair-{os.getpid()}")
    for stale in (fresh, Path(f"{fresh}-wal"), Path(f"{fresh}-shm")):
        stale.unlink(missing_ok=True)
    cache = RequestCache(fresh)
    try:
        conn = cache._conn()
        conn.execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO requests VALUES (?, ?, ?)", found.rows)
        if found.legacy and found.legacy_sql:
            conn.execute(found.legacy_sql)
            marks = ",".join("?" * len(found.legacy[0]))
            conn.executemany(f"INSERT OR REPLACE INTO generations VALUES ({marks})", found.legacy)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        cache.close()
    aside = file.with_name(f"{file.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{file}{suffix}").exists():
            os.replace(f"{file}{suffix}", f"{aside}{suffix}")
    for suffix in ("-wal", "-shm"):
        Path(f"{fresh}{suffix}").unlink(missing_ok=True)
    os.replace(fresh, file)
    lost = f"{found.bad_rows} unreadable rows" + (f" and what the damaged pages held ({'; '.join(found.problems)})"
                                                  if found.problems else "")  # fmt: skip
    return 0, (f"{file}: kept {len(found.rows)} readable cached requests"
               f"{f' and {len(found.legacy)} schema-1 samples' if found.legacy else ''}; left out {lost}. The "
               f"damaged file is kept as {aside}; the next run asks again only what is missing.")  # fmt: skip
