"""Bytes on disk per row: a store file's size over its rows, and what each table and index takes.

Measured on a seeded file once nothing has it open: the WAL is checkpointed into the file and
truncated first, so the size is the database's alone. SQLite's `dbstat` virtual table (when the
build has it) gives the pages of every table and index, so a figure over target says which
index costs what.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from bench.progress import say, ticking


@dataclass(frozen=True)
class ObjectBytes:
    """One b-tree of the file: a table or an index (or SQLite's own), and the pages it uses."""

    name: str
    table: str  # the table it belongs to (itself for a table)
    kind: str  # "table", "index" or "" (SQLite's internals)
    bytes: int


@dataclass(frozen=True)
class Footprint:
    what: str  # one of the rows counted, e.g. "open promise"
    rows: int
    file_bytes: int
    bytes_per_row: float
    objects: list[ObjectBytes]  # biggest first; empty when this SQLite has no dbstat
    free_bytes: int  # pages on the freelist (in the file, in no b-tree)
    note: str  # how the rows were made


async def measure(path: Path, what: str, rows: int, note: str) -> Footprint:
    """Checkpoints `path` (nothing else may have it open for writing) and measures it, on a
    thread: dbstat reads every page, a while for a file of gigabytes."""
    say(f"bytes on disk per {what}: checkpointing and reading dbstat of {path.name}...")
    started = time.perf_counter()
    status = f"bytes on disk per {what}: reading dbstat of {path.name}"
    async with ticking(lambda: f"{status}, {time.perf_counter() - started:.0f} s"):
        return await asyncio.to_thread(_measure, path, what, rows, note)


def _measure(path: Path, what: str, rows: int, note: str) -> Footprint:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        file_bytes = path.stat().st_size
        kinds = {
            name: (kind, table)
            for kind, name, table in conn.execute("SELECT type, name, tbl_name FROM sqlite_schema")
        }
        try:
            pages = conn.execute(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
            ).fetchall()
        except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
            pages = []
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        free = int(conn.execute("PRAGMA freelist_count").fetchone()[0]) * page_size
    finally:
        conn.close()
    objects = [
        ObjectBytes(
            name,
            kinds.get(name, ("", name))[1],
            kinds.get(name, ("", ""))[0],
            int(size),
        )
        for name, size in pages
    ]
    per_row = file_bytes / rows if rows else 0.0
    say(f"bytes on disk per {what}: {per_row:,.0f} B ({rows:,} rows, {file_bytes / 1e6:,.1f} MB)")
    return Footprint(what, rows, file_bytes, per_row, objects, free, note)
