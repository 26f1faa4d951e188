"""SQLite plumbing shared by the services' embedded stores: WAL, outbox, inbox, dead letters.

The write functions run on the group writer's thread inside the group's transaction
(promesa.sqlite_writer): none begins or commits a transaction of its own.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import structlog

from promesa.events import IncomingEvent, OutgoingEvent
from promesa.storage import DeadLetter

log = structlog.get_logger(__name__)

PLATFORM_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    ce_subject TEXT NOT NULL,
    data BLOB NOT NULL,
    claimed_by TEXT,
    claimed_until TEXT,
    traceparent TEXT,
    tracestate TEXT
);
CREATE TABLE IF NOT EXISTS inbox (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    handled_at TEXT NOT NULL,
    PRIMARY KEY (consumer, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inbox_by_handled_at ON inbox (handled_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    error TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    ce_subject TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL DEFAULT '',
    replayed_at TEXT
);
CREATE INDEX IF NOT EXISTS dead_letters_by_consumer ON dead_letters (consumer, id);
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
    _add_missing_columns(conn)
    return conn


def open_reader(path: Path) -> sqlite3.Connection:
    """The read connection served on the event loop, beside the writer's (WAL): it refuses
    writes, so none can bypass the group commit."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    return conn


# Columns that came after a table did: a database written by an older release gets them when it
# is opened (its outbox rows unclaimed, its dead letters without source, ce_subject and time).
ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "outbox": (
        ("claimed_by", "TEXT"),
        ("claimed_until", "TEXT"),
        ("traceparent", "TEXT"),
        ("tracestate", "TEXT"),
    ),
    "dead_letters": (
        ("source", "TEXT NOT NULL DEFAULT ''"),
        ("ce_subject", "TEXT NOT NULL DEFAULT ''"),
        ("time", "TEXT NOT NULL DEFAULT ''"),
        ("replayed_at", "TEXT"),
    ),
}


def _missing_columns(conn: sqlite3.Connection) -> list[tuple[str, str, str]]:
    missing = []
    for table, columns in ADDED_COLUMNS.items():
        present = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
        missing += [(table, name, decl) for name, decl in columns if name not in present]
    return missing


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Checked again inside the write lock: two replicas may open an old file at once."""
    if not _missing_columns(conn):
        return
    with transaction(conn):
        for table, name, decl in _missing_columns(conn):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")


def lay_out(
    conn: sqlite3.Connection,
    database: str,
    schema: str,
    version: int,
    upgrade: Callable[[sqlite3.Connection, int], bool],
) -> None:
    """Lays a service's schema down, first bringing a file of an older layout (`PRAGMA
    user_version` below `version`) up to it with `upgrade(conn, found)` (True if it rewrote
    rows), in one transaction: a crash leaves the old file as it was, and of two replicas
    opening it at once the second (BEGIN IMMEDIATE waits) finds the work done. A file from a
    newer release is refused rather than misread."""
    with transaction(conn):
        found = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if found > version:
            raise RuntimeError(
                f"the {database} database has layout {found}; this release reads up to"
                f" {version}: run a newer release"
            )
        rewrote = found < version and upgrade(conn, found)
        for statement in filter(str.strip, schema.split(";")):
            conn.execute(statement)  # not executescript: it would commit the transaction
        conn.execute(f"PRAGMA user_version = {version}")
    if rewrote:
        # The rewrite went through the WAL, which would otherwise keep its size (the whole
        # file's) for as long as the service runs.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    """The table's columns; none if it does not exist."""
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


Convert = Callable[[sqlite3.Row], Mapping[str, object]]


def rewrite(
    conn: sqlite3.Connection, schema: str, found: int, version: int, tables: Mapping[str, Convert]
) -> None:
    """Rewrites `tables` from layout `found` into the one `schema` lays down: each is set aside
    (its indexes dropped, so the new table's take their names), the schema laid down, every row
    copied through its conversion in rowid order and batches, the old table dropped. Freed
    pages are reused by later rows (no VACUUM: it would need the file's size again in free
    disk, and its time)."""
    started = time.perf_counter()
    for table in tables:
        for (index,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?"
            " AND sql IS NOT NULL",
            (table,),
        ).fetchall():
            conn.execute(f"DROP INDEX {index}")
        conn.execute(f"ALTER TABLE {table} RENAME TO {table}_layout{found}")
    for statement in filter(str.strip, schema.split(";")):
        conn.execute(statement)
    rows = {
        table: _copy_rows(conn, f"{table}_layout{found}", table, convert)
        for table, convert in tables.items()
    }
    log.info(
        "sqlite_layout_migrated",
        layout=version,
        seconds=round(time.perf_counter() - started, 2),
        **rows,
    )


def _copy_rows(conn: sqlite3.Connection, source: str, table: str, convert: Convert) -> int:
    count = 0
    old = conn.execute(f"SELECT * FROM {source} ORDER BY rowid")
    while batch := old.fetchmany(1000):
        rows = [convert(r) for r in batch]
        names = list(rows[0])
        marks = ", ".join(f":{n}" for n in names)
        conn.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", rows)
        count += len(rows)
    conn.execute(f"DROP TABLE {source}")
    return count


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


def append_outbox(
    conn: sqlite3.Connection,
    events: Sequence[OutgoingEvent],
    held_by: str | None = None,
    until: datetime | None = None,
) -> None:
    """Inside the state change's transaction; `held_by` claims the rows for that relay until
    `until` as they are written (`OutboxStore.hold_new_events`)."""
    claim = {"claimed_by": held_by, "claimed_until": _iso(until) if until else None}
    conn.executemany(
        "INSERT OR IGNORE INTO outbox (event_id, subject, type, source, time, ce_subject, data,"
        " traceparent, tracestate, claimed_by, claimed_until)"
        " VALUES (:event_id, :subject, :type, :source, :time, :ce_subject, :data,"
        " :traceparent, :tracestate, :claimed_by, :claimed_until)",
        [{**e.row(), **claim} for e in events],
    )


def held_outbox(
    conn: sqlite3.Connection, holder: str, after: int, limit: int
) -> list[tuple[int, OutgoingEvent]]:
    """The events `holder` holds past `after`, in commit order: a read, as they were claimed
    when written. Those whose claim ran out are included while nobody took them over, so a
    relay that fell behind still sends in commit order."""
    if limit <= 0:
        return []
    rows = conn.execute(
        f"SELECT seq, {_EVENT_COLUMNS} FROM outbox WHERE seq > ? AND claimed_by = ?"
        " ORDER BY seq LIMIT ?",
        (after, holder, limit),
    ).fetchall()
    return [(r["seq"], OutgoingEvent.from_row(r)) for r in rows]


def pending_outbox(conn: sqlite3.Connection, limit: int) -> list[tuple[int, OutgoingEvent]]:
    """The oldest unsent events, claimed or not: what is waiting, for tests and tools."""
    if limit <= 0:
        return []
    rows = conn.execute(
        f"SELECT seq, {_EVENT_COLUMNS} FROM outbox ORDER BY seq LIMIT ?", (limit,)
    ).fetchall()
    return [(r["seq"], OutgoingEvent.from_row(r)) for r in rows]


_EVENT_COLUMNS = "event_id, subject, type, source, time, ce_subject, data, traceparent, tracestate"


def claim_outbox(
    conn: sqlite3.Connection, holder: str, limit: int, now: datetime, until: datetime
) -> list[tuple[int, OutgoingEvent]]:
    """Claims for `holder` until `until` the oldest events no other relay holds (never claimed,
    or held past their claim's end by a relay that died) and those `holder` holds already
    (a publish it must retry), in commit order. One transaction, so two relays never claim
    one row."""
    if limit <= 0:
        return []
    rows = conn.execute(
        "UPDATE outbox SET claimed_by = :holder, claimed_until = :until WHERE seq IN ("
        " SELECT seq FROM outbox WHERE claimed_by IS NULL OR claimed_by = :holder"
        " OR claimed_until <= :now ORDER BY seq LIMIT :limit)"
        f" RETURNING seq, {_EVENT_COLUMNS}",
        {"holder": holder, "until": _iso(until), "now": _iso(now), "limit": limit},
    ).fetchall()
    rows.sort(key=lambda r: int(r["seq"]))  # RETURNING promises no order
    return [(r["seq"], OutgoingEvent.from_row(r)) for r in rows]


def release_outbox(conn: sqlite3.Connection, holder: str) -> None:
    """A relay that stops hands its unsent claims back, so another takes them over at once."""
    conn.execute(
        "UPDATE outbox SET claimed_by = NULL, claimed_until = NULL WHERE claimed_by = ?",
        (holder,),
    )


def delete_outbox(conn: sqlite3.Connection, seqs: Sequence[int]) -> None:
    """Sent rows are deleted: JetStream is the record of what was published."""
    conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])


def _iso(at: datetime) -> str:
    """The stored form of an instant: ISO-8601 in UTC, so strings compare as instants do."""
    return at.astimezone(UTC).isoformat()


def outbox_backlog(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


def inbox_claim(conn: sqlite3.Connection, consumer: str, event_id: str, now: datetime) -> bool:
    """Inside the effect's transaction: True the first time an event is seen, False after."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO inbox (consumer, event_id, handled_at) VALUES (?, ?, ?)",
        (consumer, event_id, _iso(now)),
    )
    return cur.rowcount == 1


def prune_inbox(conn: sqlite3.Connection, before: datetime, limit: int) -> int:
    """Deletes up to `limit` inbox rows handled before `before`, oldest first (through the
    `handled_at` index), one bounded batch a group so writers wait for one batch at most."""
    if limit <= 0:
        return 0
    cur = conn.execute(
        "DELETE FROM inbox WHERE (consumer, event_id) IN (SELECT consumer, event_id FROM inbox"
        " WHERE handled_at < ? ORDER BY handled_at LIMIT ?)",
        (_iso(before), limit),
    )
    return cur.rowcount


def record_dead_letter(
    conn: sqlite3.Connection, consumer: str, event: IncomingEvent, error: str, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO dead_letters (consumer, event_id, subject, type, source, ce_subject,"
        " time, data, error, deliveries, recorded_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            consumer,
            event.event_id,
            event.subject,
            event.type,
            event.source,
            event.ce_subject,
            event.time,
            event.data,
            error,
            event.delivery,
            _iso(now),
        ),
    )


def dead_letters(conn: sqlite3.Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        "SELECT consumer, event_id, subject, type, error, deliveries, recorded_at"
        " FROM dead_letters ORDER BY id"
    ).fetchall()
    return [dict(r) for r in rows]


_LETTER_COLUMNS = (
    "id, consumer, event_id, subject, type, source, ce_subject, time, data, error, deliveries,"
    " recorded_at, replayed_at"
)


def list_dead_letters(
    conn: sqlite3.Connection, consumer: str | None, after_id: str | None, limit: int
) -> list[DeadLetter]:
    """Oldest first; after a malformed `after_id` there is nothing (no letter has that id)."""
    if limit <= 0:
        return []
    after: int | str = 0
    if after_id is not None:
        parsed = _rowid(after_id)
        if parsed is None:
            return []
        after = parsed
    where, args = "id > ?", [after]
    if consumer is not None:
        where += " AND consumer = ?"
        args.append(consumer)
    rows = conn.execute(
        f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE {where} ORDER BY id LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [_dead_letter(r) for r in rows]


def dead_letter(conn: sqlite3.Connection, letter_id: str) -> DeadLetter | None:
    rowid = _rowid(letter_id)
    if rowid is None:
        return None
    row = conn.execute(
        f"SELECT {_LETTER_COLUMNS} FROM dead_letters WHERE id = ?", (rowid,)
    ).fetchone()
    return _dead_letter(row) if row else None


def mark_dead_letter_replayed(conn: sqlite3.Connection, letter_id: str, at: datetime) -> None:
    """The first replay's time stays: marking again (a retried replay) changes nothing."""
    rowid = _rowid(letter_id)
    if rowid is None:
        return
    conn.execute(
        "UPDATE dead_letters SET replayed_at = ? WHERE id = ? AND replayed_at IS NULL",
        (_iso(at), rowid),
    )


def _rowid(letter_id: str) -> int | None:
    """A dead letter's id as SQLite numbers it; None for anything else (no letter has it)."""
    if not (letter_id.isascii() and letter_id.isdigit()) or len(letter_id) > 18:
        return None
    return int(letter_id)


def _dead_letter(row: sqlite3.Row) -> DeadLetter:
    return DeadLetter.from_row(str(row["id"]), row)


def remember_idempotent(
    conn: sqlite3.Connection, request_id: str, operation: str, resource_id: str, fingerprint: str
) -> None:
    conn.execute(
        "INSERT INTO idempotency (request_id, operation, resource_id, fingerprint)"
        " VALUES (?, ?, ?, ?)",
        (request_id, operation, resource_id, fingerprint),
    )
