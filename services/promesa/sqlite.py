"""SQLite plumbing shared by the services' embedded stores: WAL, transactions, outbox, inbox.

Calls are synchronous on purpose: a short stdlib sqlite3 transaction (~40 µs) is cheaper than
handing it to a thread, and a transaction that never awaits cannot interleave with another.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from promesa.events import IncomingEvent, OutgoingEvent

PLATFORM_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    ce_subject TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    error TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    request_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL
) WITHOUT ROWID;
"""


def open_database(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """Opens (creating) a database in WAL mode, in autocommit so transactions are explicit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA foreign_keys=ON")
    # Deleted and overwritten content is zeroed, not left in free pages: an erased person's
    # data must not be recoverable from the file.
    conn.execute("PRAGMA secure_delete=ON")
    conn.executescript(PLATFORM_SCHEMA)
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def append_outbox(conn: sqlite3.Connection, events: Sequence[OutgoingEvent]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (event_id, subject, type, source, time, ce_subject, data)"
        " VALUES (:event_id, :subject, :type, :source, :time, :ce_subject, :data)",
        [e.row() for e in events],
    )


def pending_outbox(conn: sqlite3.Connection, limit: int) -> list[tuple[int, OutgoingEvent]]:
    if limit <= 0:
        return []
    rows = conn.execute(
        "SELECT seq, event_id, subject, type, source, time, ce_subject, data FROM outbox"
        " ORDER BY seq LIMIT ?",
        (limit,),
    ).fetchall()
    return [(r["seq"], OutgoingEvent.from_row(r)) for r in rows]


def delete_outbox(conn: sqlite3.Connection, seqs: Sequence[int]) -> None:
    """Sent rows are deleted: JetStream is the record of what was published.

    This commit skips the fsync a state change pays: if a power loss undoes it, the rows are
    published again, JetStream drops the copies by `Nats-Msg-Id` and consumers' inboxes drop
    any that outlive its duplicate window.
    """
    level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        with transaction(conn):
            conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])
    finally:
        conn.execute(f"PRAGMA synchronous={level}")


def outbox_backlog(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def inbox_claim(conn: sqlite3.Connection, consumer: str, event_id: str, now: datetime) -> bool:
    """Inside the effect's transaction: True the first time an event is seen, False after."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO inbox (consumer, event_id, handled_at) VALUES (?, ?, ?)",
        (consumer, event_id, now.isoformat()),
    )
    return cur.rowcount == 1


def record_dead_letter(
    conn: sqlite3.Connection, consumer: str, event: IncomingEvent, error: str, now: datetime
) -> None:
    with transaction(conn):
        conn.execute(
            "INSERT INTO dead_letters (consumer, event_id, subject, type, data, error,"
            " deliveries, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                consumer,
                event.event_id,
                event.subject,
                event.type,
                event.data,
                error,
                event.delivery,
                now.isoformat(),
            ),
        )


def dead_letters(conn: sqlite3.Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        "SELECT consumer, event_id, subject, type, error, deliveries, recorded_at"
        " FROM dead_letters ORDER BY id"
    ).fetchall()
    return [dict(r) for r in rows]


def remember_idempotent(
    conn: sqlite3.Connection, request_id: str, operation: str, resource_id: str, fingerprint: str
) -> None:
    conn.execute(
        "INSERT INTO idempotency (request_id, operation, resource_id, fingerprint)"
        " VALUES (?, ?, ?, ?)",
        (request_id, operation, resource_id, fingerprint),
    )
