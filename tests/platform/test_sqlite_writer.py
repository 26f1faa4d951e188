"""The group writer on a real SQLite file: concurrent writes share a commit, a failing one rolls
back alone, and nobody is left waiting when something goes wrong."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from promesa import sqlite as db
from promesa.sqlite_writer import GroupWriter, WriterClosedError


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupWriter]:
    conn = db.open_database(tmp_path / "w.db")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)")
    writer = GroupWriter(conn)
    yield writer
    await writer.close()


def insert(text: str) -> Callable[[sqlite3.Connection], int]:
    def apply(conn: sqlite3.Connection) -> int:
        cur = conn.execute("INSERT INTO notes (text) VALUES (?)", (text,))
        return int(cur.lastrowid or 0)

    return apply


def stored(path: Path) -> set[str]:
    reader = db.open_reader(path)
    try:
        return {row[0] for row in reader.execute("SELECT text FROM notes")}
    finally:
        reader.close()


async def test_concurrent_writes_share_commits_and_each_is_visible_when_answered(
    writer: GroupWriter, tmp_path: Path
) -> None:
    texts = [f"note {n}" for n in range(200)]
    ids = await asyncio.gather(*(writer.write(insert(t)) for t in texts))
    assert len(set(ids)) == 200
    assert stored(tmp_path / "w.db") == set(texts)
    assert writer.changes == 200
    assert writer.groups < 200  # they joined commits in flight


async def test_a_failing_change_rolls_back_alone_and_its_caller_gets_the_error(
    writer: GroupWriter, tmp_path: Path
) -> None:
    await writer.write(insert("taken"))

    def two_rows_then_a_clash(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO notes (text) VALUES ('half-done')")
        conn.execute("INSERT INTO notes (text) VALUES ('taken')")

    results = await asyncio.gather(
        writer.write(insert("before")),
        writer.write(two_rows_then_a_clash),
        writer.write(insert("after")),
        return_exceptions=True,
    )
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert stored(tmp_path / "w.db") == {"taken", "before", "after"}


async def test_a_change_that_leaves_a_statement_open_is_refused_and_the_writer_goes_on(
    writer: GroupWriter, tmp_path: Path
) -> None:
    def returns_a_cursor(conn: sqlite3.Connection) -> sqlite3.Cursor:
        return conn.execute("SELECT text FROM notes")

    results = await asyncio.gather(
        writer.write(returns_a_cursor),
        writer.write(insert("still written")),
        writer.alone(lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")),
        writer.write(insert("and this")),
        return_exceptions=True,
    )
    assert isinstance(results[0], TypeError)
    assert isinstance(results[2], TypeError)
    assert stored(tmp_path / "w.db") == {"still written", "and this"}


async def test_a_write_after_close_is_refused_not_left_waiting(tmp_path: Path) -> None:
    writer = GroupWriter(db.open_database(tmp_path / "closed.db"))
    await writer.close()
    with pytest.raises(WriterClosedError):
        await writer.write(lambda conn: None)
