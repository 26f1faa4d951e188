"""The bench's bytes-on-disk figure: a file's size over its rows, and each b-tree's share."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.footprint import measure


async def test_footprint_counts_the_checkpointed_file_and_names_each_index(tmp_path: Path) -> None:
    # Given a WAL database whose rows are still in the -wal file
    path = tmp_path / "store.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, owner TEXT, body TEXT)")
    conn.execute("CREATE INDEX notes_by_owner ON notes (owner)")
    with conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO notes VALUES (?, ?, ?)",
            [(f"note-{i:05d}", f"owner-{i % 7}", "x" * 200) for i in range(2_000)],
        )
    conn.close()

    # When it is measured
    f = await measure(path, "note", 2_000, "test rows")

    # Then the WAL is in the file, and the per-row figure is the file's size over the rows
    assert (
        not (tmp_path / "store.db-wal").exists() or (tmp_path / "store.db-wal").stat().st_size == 0
    )
    assert f.file_bytes == path.stat().st_size
    assert f.bytes_per_row == f.file_bytes / 2_000
    # and each b-tree is named with the table it belongs to, the biggest first
    by_name = {o.name: o for o in f.objects}
    assert by_name["notes"].kind == "table"
    assert by_name["notes_by_owner"].kind == "index"
    assert by_name["notes_by_owner"].table == "notes"
    assert f.objects[0].name == "notes"
    assert [o.bytes for o in f.objects] == sorted((o.bytes for o in f.objects), reverse=True)
    assert sum(o.bytes for o in f.objects) + f.free_bytes == f.file_bytes
