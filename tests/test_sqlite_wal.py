"""utils/sqlite.connect_wal: the WAL switch two processes make together on a fresh cache is retried, not fatal."""

from __future__ import annotations

import sqlite3

import pytest

from ftcot_hf.utils import sqlite as wal


class _Flaky:
    """A connection whose WAL switch answers "database is locked" ``fails`` times, as SQLite does at once (no busy
    wait) to one of two connections switching a new file together."""

    def __init__(self, real: sqlite3.Connection, fails: int, message: str = "database is locked"):
        self.real, self.fails, self.message, self.closed = real, fails, message, False

    def execute(self, sql: str, *args):
        if sql.startswith("PRAGMA journal_mode") and self.fails:
            self.fails -= 1
            raise sqlite3.OperationalError(self.message)
        return self.real.execute(sql, *args)

    def close(self) -> None:
        self.closed = True
        self.real.close()


def _patch(monkeypatch, fails: int, message: str = "database is locked") -> list[_Flaky]:
    made: list[_Flaky] = []
    connect = sqlite3.connect

    def flaky_connect(*args, **kwargs):
        made.append(_Flaky(connect(*args, **kwargs), fails, message))
        return made[-1]

    monkeypatch.setattr(wal.sqlite3, "connect", flaky_connect)
    monkeypatch.setattr(wal.time, "sleep", lambda seconds: None)
    return made


def test_a_locked_wal_switch_is_retried_until_it_takes(monkeypatch, tmp_path):
    made = _patch(monkeypatch, fails=3)
    conn = wal.connect_wal(tmp_path / "c.sqlite", synchronous="NORMAL")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal" and made[0].fails == 0
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_another_error_or_a_lock_past_the_deadline_is_raised_and_the_connection_closed(monkeypatch, tmp_path):
    made = _patch(monkeypatch, fails=1, message="disk I/O error")
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        wal.connect_wal(tmp_path / "a.sqlite")
    assert made[-1].closed
    made = _patch(monkeypatch, fails=10**6)
    monkeypatch.setattr(wal, "BUSY_SECONDS", 0.0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        wal.connect_wal(tmp_path / "b.sqlite")
    assert made[-1].closed
