"""A base for a service's SQLite store: the read connection, the one write path (group commit)
with its inbox row and idempotency key, and the outbox and dead-letter methods the relay and
consumers use."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

from promesa import sqlite as db
from promesa import tracing
from promesa.clock import Clock
from promesa.event_catalog import subject_token
from promesa.events import IncomingEvent, OutgoingEvent
from promesa.outbox import Hold
from promesa.settings import CommonSettings
from promesa.sqlite_writer import GroupWriter
from promesa.storage import (
    AlreadyHandledError,
    DeadLetter,
    DuplicateRequestError,
    IdempotencyKey,
    InboxKey,
    VersionConflictError,
)

T = TypeVar("T")


class SqliteStore:
    """Subclasses add their schema and domain tables. Reads use `_conn` on the event loop; every
    write goes through `_write`, on the group writer's connection (promesa.sqlite_writer).

    Open one with `opened`, off the event loop: opening lays out or migrates the file (seconds
    on a large one) and waits for its write lock, which another store on the same file in this
    process holds until the loop has run its group's statements."""

    def __init__(self, path: Path, schema: str, clock: Clock, *, synchronous: str = "FULL") -> None:
        writer = db.open_database(path, synchronous=synchronous)
        writer.executescript(schema)
        self._migrate(writer)
        self._writer = GroupWriter(writer, name=f"sqlite-writer:{path.name}")
        self._conn = db.open_reader(path)
        self._clock = clock
        self._hold: Hold | None = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Brings a file written by an older release up to this schema, before any write."""

    async def _write(
        self,
        apply: Callable[[sqlite3.Connection], T],
        events: Sequence[OutgoingEvent] = (),
        *,
        handled: InboxKey | None = None,
        idempotency: IdempotencyKey | None = None,
        durable: bool = True,
    ) -> T:
        """One change, atomic, in the next group commit: the inbox row first
        (AlreadyHandledError), the idempotency key (DuplicateRequestError), `apply`'s writes,
        then the outbox rows. Returns once it is durable (`durable` False: bookkeeping that may
        be lost and redone, committed without an fsync of its own)."""
        now = self._clock.now()
        held_by, until = self._hold.claim(now) if self._hold else (None, None)

        def change(conn: sqlite3.Connection) -> T:
            if handled is not None and not db.inbox_claim(
                conn, handled.consumer, handled.event_id, now
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
            result = apply(conn)
            if events:
                db.append_outbox(conn, events, held_by, until)
            return result

        with tracing.commit_span(events) as traced:
            events = traced  # `change` reads them when it runs: stamped with the commit's span
            return await self._writer.write(change, durable=durable)

    @staticmethod
    def _save_versioned(
        conn: sqlite3.Connection, table: str, row: Mapping[str, object], expected: int
    ) -> None:
        """Inserts a new resource (`expected` 0) or updates the version it was read at;
        VersionConflictError when the id exists already or another writer got there first.
        `row` names every column, `id` and `version` among them."""
        if expected == 0:
            try:
                conn.execute(_insert_sql(table, tuple(row)), row)
            except sqlite3.IntegrityError:
                raise VersionConflictError(str(row["id"])) from None
            return
        cur = conn.execute(_update_sql(table, tuple(row)), {**row, "expected_version": expected})
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
        return await self._write(
            lambda conn: db.claim_outbox(conn, holder, limit, now, now + lease), durable=False
        )

    def hold_new_events(self, holder: str | None, lease: timedelta) -> None:
        self._hold = Hold(holder, lease) if holder else None

    async def held_events(
        self, holder: str, after: int, limit: int
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        return db.held_outbox(self._conn, holder, after, limit)

    async def release_events(self, holder: str) -> None:
        await self._write(lambda conn: db.release_outbox(conn, holder), durable=False)

    async def mark_events_sent(self, seqs: Sequence[int]) -> None:
        await self._write(lambda conn: db.delete_outbox(conn, seqs), durable=False)

    async def outbox_backlog(self) -> int:
        return db.outbox_backlog(self._conn)

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None:
        now = self._clock.now()
        await self._write(lambda conn: db.record_dead_letter(conn, consumer, event, error, now))

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
        await self._write(lambda conn: db.mark_dead_letter_replayed(conn, letter_id, at))

    async def prune_inbox(self, before: datetime, limit: int) -> int:
        """Forgets up to `limit` events handled before `before` (one bounded batch; returns how
        many): an event redelivered after that is applied again, so `before` must lie further
        back than the stream's duplicate window and the longest redelivery."""
        return await self._write(lambda conn: db.prune_inbox(conn, before, limit))

    async def forget_dead_letters(self, contact_id: str) -> None:
        """An erased person's dead letters go: their payloads may hold what they said."""
        suffix = "." + subject_token(contact_id)

        def forget(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM dead_letters WHERE substr(subject, -?) = ?", (len(suffix), suffix)
            )

        await self._write(forget)

    async def scrub(self) -> None:
        """After an erasure commits: the WAL is checkpointed into the database and truncated,
        so no earlier version of an erased row lingers in the -wal file (secure_delete zeroes
        what the database file frees)."""
        await self._writer.alone(
            lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        )

    async def close(self) -> None:
        await self._writer.close()
        self._conn.close()


# The statements of `_save_versioned`, made once per table and set of columns (a handful per
# service) rather than on every write; the same text also hits sqlite3's statement cache.
@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join(f":{c}" for c in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"


@functools.cache
def _update_sql(table: str, columns: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{c} = :{c}" for c in columns if c != "id")
    return f"UPDATE {table} SET {assignments} WHERE id = :id AND version = :expected_version"


S = TypeVar("S", bound=SqliteStore, covariant=True)


class _Opening(Protocol[S]):
    """A service's store class: (path, its event encoder, clock, synchronous)."""

    def __call__(self, path: Path, encode: Any, clock: Clock, *, synchronous: str) -> S: ...


async def opened(store: _Opening[S], common: CommonSettings, encode: Any, clock: Clock) -> S:
    """The service's store on CRM_SQLITE_PATH, opened off the event loop (see SqliteStore)."""
    return await asyncio.to_thread(
        store, common.sqlite_path, encode, clock, synchronous=common.sqlite_synchronous
    )
