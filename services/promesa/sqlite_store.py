"""A base for a service's SQLite store: the connection, the one write transaction with its inbox
row and idempotency key, and the outbox and dead-letter methods the relay and consumers use."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from promesa import sqlite as db
from promesa.clock import Clock
from promesa.event_catalog import subject_token
from promesa.events import IncomingEvent, OutgoingEvent
from promesa.storage import (
    AlreadyHandledError,
    DeadLetter,
    DuplicateRequestError,
    IdempotencyKey,
    InboxKey,
    VersionConflictError,
)


class SqliteStore:
    """Subclasses add their schema and domain tables; every write goes through `_writing`."""

    def __init__(self, path: Path, schema: str, clock: Clock, *, synchronous: str = "FULL") -> None:
        self._conn = db.open_database(path, synchronous=synchronous)
        self._conn.executescript(schema)
        self._clock = clock

    @contextmanager
    def _writing(
        self,
        events: Sequence[OutgoingEvent] = (),
        *,
        handled: InboxKey | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Iterator[sqlite3.Connection]:
        """One transaction: the inbox row first (AlreadyHandledError), the idempotency key
        (DuplicateRequestError), the caller's writes, then the outbox rows."""
        conn = self._conn
        with db.transaction(conn):
            if handled is not None and not db.inbox_claim(
                conn, handled.consumer, handled.event_id, self._clock.now()
            ):
                raise AlreadyHandledError(handled.event_id)
            if idempotency is not None:
                k = idempotency
                try:
                    db.remember_idempotent(
                        conn, k.request_id, k.operation, k.resource_id, k.fingerprint
                    )
                except sqlite3.IntegrityError:
                    raise DuplicateRequestError(k.request_id) from None
            yield conn
            db.append_outbox(conn, events)

    @staticmethod
    def _save_versioned(
        conn: sqlite3.Connection, table: str, row: Mapping[str, object], expected: int
    ) -> None:
        """Inserts a new resource (`expected` 0) or updates the version it was read at;
        VersionConflictError when the id exists already or another writer got there first.
        `row` names every column, `id` and `version` among them."""
        if expected == 0:
            columns = ", ".join(row)
            marks = ", ".join(f":{c}" for c in row)
            try:
                conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row)
            except sqlite3.IntegrityError:
                raise VersionConflictError(str(row["id"])) from None
            return
        assignments = ", ".join(f"{c} = :{c}" for c in row if c != "id")
        cur = conn.execute(
            f"UPDATE {table} SET {assignments} WHERE id = :id AND version = :expected_version",
            {**row, "expected_version": expected},
        )
        if cur.rowcount != 1:
            raise VersionConflictError(str(row["id"]))

    async def find_request(self, request_id: str) -> IdempotencyKey | None:
        row = self._conn.execute(
            "SELECT operation, fingerprint, resource_id FROM idempotency WHERE request_id = ?",
            (request_id,),
        ).fetchone()
        return IdempotencyKey(request_id, row[0], row[1], row[2]) if row else None

    async def pending_events(self, limit: int) -> Sequence[tuple[int, OutgoingEvent]]:
        return db.pending_outbox(self._conn, limit)

    async def claim_events(
        self, holder: str, limit: int, lease: timedelta
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        now = self._clock.now()
        return db.claim_outbox(self._conn, holder, limit, now, now + lease)

    async def release_events(self, holder: str) -> None:
        db.release_outbox(self._conn, holder)

    async def mark_events_sent(self, seqs: Sequence[int]) -> None:
        db.delete_outbox(self._conn, seqs)

    async def outbox_backlog(self) -> int:
        return db.outbox_backlog(self._conn)

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None:
        db.record_dead_letter(self._conn, consumer, event, error, self._clock.now())

    async def dead_letters(self) -> list[dict[str, object]]:
        return db.dead_letters(self._conn)

    async def list_dead_letters(
        self, consumer: str | None, after_id: str | None, limit: int
    ) -> Sequence[DeadLetter]:
        """Oldest first; `consumer` None for every consumer's; nothing after a malformed id."""
        return db.list_dead_letters(self._conn, consumer, after_id, limit)

    async def dead_letter(self, letter_id: str) -> DeadLetter | None:
        """None for an unknown id, and for one this backend could not have made."""
        return db.dead_letter(self._conn, letter_id)

    async def mark_dead_letter_replayed(self, letter_id: str, at: datetime) -> None:
        """Idempotent: the first replay's instant stays; an unknown id changes nothing."""
        db.mark_dead_letter_replayed(self._conn, letter_id, at)

    async def prune_inbox(self, before: datetime, limit: int) -> int:
        """Forgets up to `limit` events handled before `before` (one bounded batch; returns how
        many): an event redelivered after that is applied again, so `before` must lie further
        back than the stream's duplicate window and the longest redelivery."""
        return db.prune_inbox(self._conn, before, limit)

    async def forget_dead_letters(self, contact_id: str) -> None:
        """An erased person's dead letters go: their payloads may hold what they said."""
        suffix = "." + subject_token(contact_id)
        with db.transaction(self._conn) as conn:
            conn.execute(
                "DELETE FROM dead_letters WHERE substr(subject, -?) = ?", (len(suffix), suffix)
            )

    async def scrub(self) -> None:
        """After an erasure commits: the WAL is checkpointed into the database and truncated,
        so no earlier version of an erased row lingers in the -wal file (secure_delete zeroes
        what the database file frees)."""
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def close(self) -> None:
        self._conn.close()
