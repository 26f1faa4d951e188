"""The embedded default store: SQLite in WAL mode, compact promise and reminder rows.

A row is the columns its queries use (ids packed, times in microseconds) and a `doc` of the
rest without its defaults: an open promise with its three reminders takes about a quarter of
the first layout's bytes, indexes included (`SCHEMA_VERSION`; an older file is brought up to
it when opened).

Reminders live in their own table with a partial index on `next_attempt_us`, so the scheduler
reads only what is due, however many promises are open. A claim moves `next_attempt_us` to the
end of the lease and stamps a token: a replica that dies leaves rows that fall due again when
the lease ends, and one that comes back late cannot complete what another took over. The
holder renews the lease (`renew_claims`) while it is still delivering, so a slow receiver never
lets a claim lapse under it.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from followup.adapters import documents
from followup.adapters.documents import from_micros, micros, packed_id
from followup.domain.contacts import ContactFate, ContactPreferences
from followup.domain.events import PromiseEvent
from followup.domain.model import Priority, Promise, PromiseKind, Status
from followup.domain.reminders import Outcome, ReminderDelivery
from followup.ports import (
    Change,
    Claim,
    ContactGoneError,
    LeaseLostError,
    OpenCount,
    PromiseFilter,
)
from promesa import sqlite as db
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.ids import new_id
from promesa.pagination import Cursor
from promesa.sqlite_store import SqliteStore
from promesa.storage import VersionConflictError

# The file's layout version, in `PRAGMA user_version`: 0 is the first release's (text ids and
# ISO times in every index, whole JSON documents beside the columns), rewritten at open; 1 kept
# a promise's priority in its doc, and gets the column and its index at open (`_upgrade`).
SCHEMA_VERSION = 2
# Ids are packed (`documents.packed_id`: a UUID in 16 bytes), times are integer microseconds,
# and a row's `doc` holds what no query reads (`documents.promise_row`, `delivery_row`); a
# promise's priority comes last, where layout 1's upgrade adds it, so both files have one table.
# Each index serves a query and no two the same one:
#   promises (id key)     get, get_many, a save's version check
#   promises_by_due       list() unfiltered or by due window, in (due_us, id) order
#   promises_by_owner     list(owner_id=…)          promises_by_team     list(team=…)
#   promises_by_contact   list(contact_id=…), of_contact, open_of_kind
#   promises_by_status    list(status=…), overdue   promises_by_created  made_between (stats)
#   promises_open_counts  count_open (the gauges), from the index alone in group order
#                         (partial: open and waiting promises only)
#   reminders_due         claim_due, next_due (partial: only what may still fall due)
#   reminders_by_promise  deliveries(promise_id), a replan's delete, and the claimed row by
#                         (promise_id, id): reminders need no index of their own on id
#   reminders_by_owner    deliveries(owner_id)      reminders_by_time    deliveries() unfiltered
#   contact_fates_by_survivor  duplicates_of (partial: merged contacts only)
SCHEMA = """
CREATE TABLE IF NOT EXISTS promises (
    id BLOB NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    contact_id BLOB NOT NULL,
    owner_id BLOB NOT NULL,
    team TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    due_us INTEGER NOT NULL,
    paused_us INTEGER,
    created_us INTEGER NOT NULL,
    doc TEXT NOT NULL,
    priority TEXT NOT NULL DEFAULT 'NORMAL'
);
CREATE INDEX IF NOT EXISTS promises_by_due ON promises (due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_owner ON promises (owner_id, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_team ON promises (team, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_contact ON promises (contact_id, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_status ON promises (status, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_created ON promises (created_us);
CREATE INDEX IF NOT EXISTS promises_open_counts
    ON promises (team, priority, status, due_us, paused_us)
    WHERE status IN ('OPEN', 'WAITING_ON_CUSTOMER');
CREATE TABLE IF NOT EXISTS reminders (
    id BLOB NOT NULL,
    promise_id BLOB NOT NULL,
    contact_id BLOB NOT NULL,
    owner_id BLOB NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    scheduled_us INTEGER NOT NULL,
    next_attempt_us INTEGER,
    lease_token TEXT,
    remaining TEXT NOT NULL,
    doc TEXT
);
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (next_attempt_us)
    WHERE next_attempt_us IS NOT NULL;
CREATE INDEX IF NOT EXISTS reminders_by_promise ON reminders (promise_id, scheduled_us, id);
CREATE INDEX IF NOT EXISTS reminders_by_owner ON reminders (owner_id, scheduled_us, id);
CREATE INDEX IF NOT EXISTS reminders_by_time ON reminders (scheduled_us, id);
CREATE TABLE IF NOT EXISTS contact_profiles (
    contact_id TEXT PRIMARY KEY,
    doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS contact_fates (
    contact_id TEXT PRIMARY KEY,
    merged_into_id TEXT NOT NULL,
    doc TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contact_fates_by_survivor ON contact_fates (merged_into_id)
    WHERE merged_into_id != '';
"""
PROMISE_COLUMNS = (
    "id, version, contact_id, owner_id, team, status, kind, due_us, paused_us, created_us, doc,"
    " priority"
)
# The gauges' count (`count_open`), from `promises_open_counts` alone, in its order: no table
# row, no JSON, no sort. The index is named: without statistics the planner would take
# promises_by_status and read every open promise's row.
COUNT_OPEN = (
    "SELECT team, priority, count(*), sum((status = 'OPEN' AND due_us < :now)"
    " OR (status = 'WAITING_ON_CUSTOMER' AND paused_us > due_us))"
    " FROM promises INDEXED BY promises_open_counts"
    " WHERE status IN ('OPEN', 'WAITING_ON_CUSTOMER') GROUP BY team, priority"
)
REMINDER_COLUMNS = (
    "id, promise_id, contact_id, owner_id, kind, outcome, scheduled_us, next_attempt_us,"
    " remaining, doc"
)


def _upgrade(conn: sqlite3.Connection, found: int) -> bool:
    """Layout 0 with promises in it: every promise and reminder is read through the
    whole-document decoders (the documents MongoDB keeps) and written in the compact form; a
    claimed reminder keeps its lease (token and end). An empty file just gets the schema.
    Layout 1 gets the priority column in place (`_priority_to_column`)."""
    if found == 1:
        _priority_to_column(conn)
        return True  # the new index is built through the WAL
    if "due_at" not in db.columns(conn, "promises"):
        return False
    db.rewrite(
        conn,
        SCHEMA,
        found,
        SCHEMA_VERSION,
        {
            "promises": lambda r: documents.promise_row(
                documents.promise_from(json.loads(r["doc"]))
            ),
            "reminders": _reminder_from_first_layout,
        },
    )
    return True


def _priority_to_column(conn: sqlite3.Connection) -> None:
    """Layout 1 to 2 without rewriting the table: the added column costs the stored rows
    nothing (SQLite reads its default for a row stored without it), and only the docs that
    hold a priority (any but NORMAL) are rewritten, without it; the schema then builds
    `promises_open_counts`. At a million open promises: some 2 s of CPU with all of them
    NORMAL, 5 s with 600,000 of other priorities, where a full rewrite takes minutes."""
    conn.execute("ALTER TABLE promises ADD COLUMN priority TEXT NOT NULL DEFAULT 'NORMAL'")
    conn.execute(
        "UPDATE promises SET priority = json_extract(doc, '$.priority'),"
        " doc = json_remove(doc, '$.priority') WHERE json_extract(doc, '$.priority') IS NOT NULL"
    )


def _reminder_from_first_layout(old: sqlite3.Row) -> dict[str, object]:
    """A claimed reminder keeps its lease: its token, and its end, which the column held."""
    token = old["lease_token"]
    row = documents.delivery_row(
        documents.delivery_from(json.loads(old["doc"])), claimed=token is not None
    )
    if token is not None:
        row["next_attempt_us"] = micros(datetime.fromisoformat(old["next_attempt_at"]))
    return {**row, "lease_token": token}


class SqlitePromiseStore(SqliteStore):
    def __init__(
        self,
        path: Path,
        encode: Callable[[PromiseEvent], OutgoingEvent],
        clock: Clock,
        *,
        synchronous: str = "FULL",
    ) -> None:
        # The schema is laid down by `_migrate`, which knows the older layouts it replaces.
        super().__init__(path, "", clock, synchronous=synchronous)
        self._encode = encode
        self._path = path

    def _migrate(self, conn: sqlite3.Connection) -> None:
        db.lay_out(conn, "follow-up", SCHEMA, SCHEMA_VERSION, _upgrade)

    # --- reads -------------------------------------------------------------------------------

    def _promises(self, where: str, args: Sequence[object]) -> builtins.list[Promise]:
        rows = self._conn.execute(f"SELECT {PROMISE_COLUMNS} FROM promises {where}", args)
        return [documents.promise_from_row(r) for r in rows]

    async def get(self, promise_id: str) -> Promise | None:
        found = self._promises("WHERE id = ?", (packed_id(promise_id),))
        return found[0] if found else None

    async def get_many(self, promise_ids: Sequence[str]) -> builtins.list[Promise]:
        marks = ",".join("?" * len(promise_ids))
        return self._promises(f"WHERE id IN ({marks})", [packed_id(i) for i in promise_ids])

    async def list(self, f: PromiseFilter, after: Cursor | None, limit: int) -> Sequence[Promise]:
        where: builtins.list[str] = []
        args: builtins.list[object] = []
        for column in ("owner_id", "contact_id"):
            if getattr(f, column):
                where.append(f"{column} = ?")
                args.append(packed_id(getattr(f, column)))
        if f.team:
            where.append("team = ?")
            args.append(f.team)
        if f.status is not None:
            where.append("status = ?")
            args.append(f.status.value)
        if f.due_after is not None:
            where.append("due_us >= ?")
            args.append(micros(f.due_after))
        if f.due_before is not None:
            where.append("due_us < ?")
            args.append(micros(f.due_before))
        if f.overdue_at is not None:
            # Waiting promises have their clock stopped: overdue only if paused after due.
            where.append(
                "((status = 'OPEN' AND due_us < ?)"
                " OR (status = 'WAITING_ON_CUSTOMER' AND paused_us > due_us))"
            )
            args.append(micros(f.overdue_at))
        if after is not None and after.at is not None:
            where.append("(due_us, id) > (?, ?)")
            args.extend([micros(after.at), packed_id(after.id)])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._promises(f"{clause} ORDER BY due_us, id LIMIT ?", (*args, limit))

    async def of_contact(self, contact_id: str) -> Sequence[Promise]:
        return self._promises("WHERE contact_id = ?", (packed_id(contact_id),))

    async def open_of_kind(self, contact_id: str, kind: PromiseKind) -> Sequence[Promise]:
        return self._promises(
            "WHERE contact_id = ? AND kind = ? AND status IN (?, ?)",
            (
                packed_id(contact_id),
                kind.value,
                Status.OPEN.value,
                Status.WAITING_ON_CUSTOMER.value,
            ),
        )

    async def made_between(self, start: datetime | None, end: datetime | None) -> Sequence[Promise]:
        where: builtins.list[str] = []
        args: builtins.list[object] = []
        if start is not None:
            where.append("created_us >= ?")
            args.append(micros(start))
        if end is not None:
            where.append("created_us < ?")
            args.append(micros(end))
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._promises(clause, args)

    async def count_open(self, now: datetime) -> Sequence[OpenCount]:
        """`COUNT_OPEN` on a connection of its own in a thread: still a pass over every open
        promise's index entry (0.2 s of CPU at a million), which must not hold up the calls
        served on the event loop's connection."""

        def count() -> list[tuple[str, str, int, int]]:
            conn = db.open_reader(self._path)
            try:
                return conn.execute(COUNT_OPEN, {"now": micros(now)}).fetchall()
            finally:
                conn.close()

        rows = await asyncio.to_thread(count)
        return [
            OpenCount(team, Priority(priority), n, overdue) for team, priority, n, overdue in rows
        ]

    async def profile(self, contact_id: str) -> ContactPreferences | None:
        return self._profile(self._conn, contact_id)

    @staticmethod
    def _profile(conn: sqlite3.Connection, contact_id: str) -> ContactPreferences | None:
        row = conn.execute(
            "SELECT doc FROM contact_profiles WHERE contact_id = ?", (contact_id,)
        ).fetchone()
        return documents.profile_from(json.loads(row[0])) if row else None

    async def fate(self, contact_id: str) -> ContactFate | None:
        return self._fate(self._conn, contact_id)

    async def duplicates_of(self, contact_id: str) -> Sequence[str]:
        rows = self._conn.execute(
            # The second term names the partial index's condition, so the planner may use it.
            "SELECT contact_id FROM contact_fates WHERE merged_into_id = ?"
            " AND merged_into_id != '' ORDER BY contact_id",
            (contact_id,),
        )
        return [r[0] for r in rows]

    @staticmethod
    def _fate(conn: sqlite3.Connection, contact_id: str) -> ContactFate | None:
        row = conn.execute(
            "SELECT doc FROM contact_fates WHERE contact_id = ?", (contact_id,)
        ).fetchone()
        return documents.fate_from(json.loads(row[0])) if row else None

    async def deliveries(
        self, promise_id: str, owner_id: str, before: Cursor | None, limit: int
    ) -> Sequence[ReminderDelivery]:
        where: builtins.list[str] = []
        args: builtins.list[object] = []
        for column, value in (("promise_id", promise_id), ("owner_id", owner_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(packed_id(value))
        if before is not None and before.at is not None:
            where.append("(scheduled_us, id) < (?, ?)")
            args.extend([micros(before.at), packed_id(before.id)])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(
            f"SELECT {REMINDER_COLUMNS} FROM reminders {clause}"
            " ORDER BY scheduled_us DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        return [documents.delivery_from_row(r) for r in rows]

    # --- the scheduler's claim ------------------------------------------------------------------

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> Sequence[Claim]:
        token = new_id()
        until = micros(lease_until)

        def claim(conn: sqlite3.Connection) -> builtins.list[Claim]:
            rows = conn.execute(
                f"SELECT rowid, {REMINDER_COLUMNS} FROM reminders WHERE next_attempt_us <= ?"
                " ORDER BY next_attempt_us LIMIT ?",
                (micros(now), limit),
            ).fetchall()
            claimed = [documents.delivery_from_row(r) for r in rows]
            # The row's next attempt becomes the lease's end; the doc keeps the delivery's own.
            conn.executemany(
                "UPDATE reminders SET next_attempt_us = ?, lease_token = ?, doc = ?"
                " WHERE rowid = ?",
                [
                    (until, token, documents.delivery_row(d, claimed=True)["doc"], r[0])
                    for r, d in zip(rows, claimed, strict=True)
                ],
            )
            return [Claim(d, token) for d in claimed]

        return await self._write(claim)

    async def next_due(self) -> datetime | None:
        # A read: on the loop's reader connection, the first entry of `reminders_due`.
        row = self._conn.execute(
            "SELECT next_attempt_us FROM reminders WHERE next_attempt_us IS NOT NULL"
            " ORDER BY next_attempt_us LIMIT 1"
        ).fetchone()
        return from_micros(row[0]) if row else None

    async def renew_claims(self, claims: Sequence[Claim], until: datetime) -> set[str]:
        held_by = [
            (c.token, packed_id(c.delivery.promise_id), packed_id(c.delivery.id), c.delivery.id)
            for c in claims
        ]

        def renew(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            for token, promise_id, reminder_id, text_id in held_by:
                cur = conn.execute(
                    "UPDATE reminders SET next_attempt_us = ?"
                    " WHERE promise_id = ? AND id = ? AND lease_token = ?",
                    (micros(until), promise_id, reminder_id, token),
                )
                if cur.rowcount:
                    held.add(text_id)
            return held

        return await self._write(renew)

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        def apply(conn: sqlite3.Connection) -> None:
            if change.live_contact:
                # Inside the write transaction: no fate changes meanwhile.
                known = self._fate(conn, change.live_contact)
                if known is not None and not known.is_live:
                    raise ContactGoneError(change.live_contact)
            for fate in change.fates:
                stored = self._fate(conn, fate.contact_id)
                combined = stored.combined(fate) if stored else fate
                conn.execute(
                    "INSERT OR REPLACE INTO contact_fates (contact_id, merged_into_id, doc)"
                    " VALUES (?, ?, ?)",
                    (
                        combined.contact_id,
                        combined.merged_into_id,
                        json.dumps(documents.fate_doc(combined)),
                    ),
                )
            for claim in change.completed:
                self._complete(conn, claim)
            for claim in change.progressed:
                self._progress(conn, claim)
            for promise, expected in change.saves:
                self._save(conn, promise, expected)
            for promise_id, planned in change.replans.items():
                conn.execute(
                    "DELETE FROM reminders WHERE promise_id = ? AND outcome = ?",
                    (packed_id(promise_id), Outcome.PENDING.value),
                )
                self._insert(conn, planned)
            self._insert(conn, change.added)
            for profile in change.profiles:
                kept = self._profile(conn, profile.contact_id)
                if kept is not None and not profile.supersedes(kept):
                    continue  # an older change heard late
                conn.execute(
                    "INSERT OR REPLACE INTO contact_profiles (contact_id, doc) VALUES (?, ?)",
                    (profile.contact_id, json.dumps(documents.profile_doc(profile))),
                )
            conn.executemany(
                "DELETE FROM contact_profiles WHERE contact_id = ?",
                [(c,) for c in change.forgotten_profiles],
            )

        await self._write(apply, events, handled=change.handled, idempotency=change.idempotency)

    def _complete(self, conn: sqlite3.Connection, claim: Claim) -> None:
        """The claim ends: the row's next attempt is the delivery's again (none when done)."""
        row = documents.delivery_row(claim.delivery)
        cur = conn.execute(
            "UPDATE reminders SET doc = :doc, outcome = :outcome, remaining = :remaining,"
            " next_attempt_us = :next_attempt_us, lease_token = NULL"
            " WHERE promise_id = :promise_id AND id = :id AND lease_token = :token",
            {**row, "token": claim.token},
        )
        if cur.rowcount != 1:
            raise LeaseLostError(claim.delivery.id)

    def _progress(self, conn: sqlite3.Connection, claim: Claim) -> None:
        """Still claimed: the lease's end stays the row's next attempt."""
        row = documents.delivery_row(claim.delivery, claimed=True)
        cur = conn.execute(
            "UPDATE reminders SET doc = :doc, outcome = :outcome, remaining = :remaining"
            " WHERE promise_id = :promise_id AND id = :id AND lease_token = :token",
            {**row, "token": claim.token},
        )
        if cur.rowcount != 1:
            raise LeaseLostError(claim.delivery.id)

    def _insert(self, conn: sqlite3.Connection, planned: Sequence[ReminderDelivery]) -> None:
        conn.executemany(
            f"INSERT INTO reminders ({REMINDER_COLUMNS}) VALUES (:id, :promise_id, :contact_id,"
            " :owner_id, :kind, :outcome, :scheduled_us, :next_attempt_us, :remaining, :doc)",
            [documents.delivery_row(r) for r in planned],
        )

    def _save(self, conn: sqlite3.Connection, p: Promise, expected: int) -> None:
        try:
            self._save_versioned(conn, "promises", documents.promise_row(p), expected)
        except VersionConflictError:
            raise VersionConflictError(p.id) from None  # the id as callers know it, not packed
