"""The embedded default store: SQLite in WAL mode, promise documents plus indexed columns.

Reminders live in their own table with a partial index on `next_attempt_at`, so the scheduler
reads only what is due, however many promises are open. A claim moves `next_attempt_at` to the
end of the lease and stamps a token: a replica that dies leaves rows that fall due again when
the lease ends, and one that comes back late cannot complete what another took over. The
holder renews the lease (`renew_claims`) while it is still delivering, so a slow receiver never
lets a claim lapse under it.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from followup.adapters import documents
from followup.adapters.documents import iso
from followup.domain.contacts import ContactFate, ContactPreferences
from followup.domain.events import PromiseEvent
from followup.domain.model import Promise, PromiseKind, Status
from followup.domain.reminders import Outcome, ReminderDelivery
from followup.ports import Change, Claim, ContactGoneError, LeaseLostError, PromiseFilter
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.ids import new_id
from promesa.pagination import Cursor
from promesa.sqlite_store import SqliteStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS promises (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    team TEXT NOT NULL,
    status TEXT NOT NULL,
    kind TEXT NOT NULL,
    due_at TEXT NOT NULL,
    paused_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS promises_by_due ON promises (due_at, id);
CREATE INDEX IF NOT EXISTS promises_by_owner ON promises (owner_id, due_at, id);
CREATE INDEX IF NOT EXISTS promises_by_team ON promises (team, due_at, id);
CREATE INDEX IF NOT EXISTS promises_by_contact ON promises (contact_id, due_at, id);
CREATE INDEX IF NOT EXISTS promises_by_status ON promises (status, due_at, id);
CREATE INDEX IF NOT EXISTS promises_by_created ON promises (created_at);
CREATE TABLE IF NOT EXISTS reminders (
    id TEXT PRIMARY KEY,
    promise_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    scheduled_at TEXT NOT NULL,
    next_attempt_at TEXT,
    lease_token TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reminders_due ON reminders (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS reminders_by_promise ON reminders (promise_id, scheduled_at, id);
CREATE INDEX IF NOT EXISTS reminders_by_owner ON reminders (owner_id, scheduled_at, id);
CREATE INDEX IF NOT EXISTS reminders_by_time ON reminders (scheduled_at, id);
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


class SqlitePromiseStore(SqliteStore):
    def __init__(
        self,
        path: Path,
        encode: Callable[[PromiseEvent], OutgoingEvent],
        clock: Clock,
        *,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(path, SCHEMA, clock, synchronous=synchronous)
        self._encode = encode

    # --- reads -------------------------------------------------------------------------------

    def _promises(self, sql: str, args: Sequence[object]) -> builtins.list[Promise]:
        return [documents.promise_from(json.loads(r[0])) for r in self._conn.execute(sql, args)]

    async def get(self, promise_id: str) -> Promise | None:
        found = self._promises("SELECT doc FROM promises WHERE id = ?", (promise_id,))
        return found[0] if found else None

    async def get_many(self, promise_ids: Sequence[str]) -> builtins.list[Promise]:
        marks = ",".join("?" * len(promise_ids))
        return self._promises(f"SELECT doc FROM promises WHERE id IN ({marks})", promise_ids)

    async def list(self, f: PromiseFilter, after: Cursor | None, limit: int) -> Sequence[Promise]:
        where: builtins.list[str] = []
        args: builtins.list[object] = []
        for column in ("owner_id", "team", "contact_id"):
            if getattr(f, column):
                where.append(f"{column} = ?")
                args.append(getattr(f, column))
        if f.status is not None:
            where.append("status = ?")
            args.append(f.status.value)
        if f.due_after is not None:
            where.append("due_at >= ?")
            args.append(iso(f.due_after))
        if f.due_before is not None:
            where.append("due_at < ?")
            args.append(iso(f.due_before))
        if f.overdue_at is not None:
            # Waiting promises have their clock stopped: overdue only if paused after due.
            where.append(
                "((status = 'OPEN' AND due_at < ?)"
                " OR (status = 'WAITING_ON_CUSTOMER' AND paused_at > due_at))"
            )
            args.append(iso(f.overdue_at))
        if after is not None and after.at is not None:
            where.append("(due_at, id) > (?, ?)")
            args.extend([iso(after.at), after.id])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT doc FROM promises {clause} ORDER BY due_at, id LIMIT ?"
        return self._promises(sql, (*args, limit))

    async def of_contact(self, contact_id: str) -> Sequence[Promise]:
        return self._promises("SELECT doc FROM promises WHERE contact_id = ?", (contact_id,))

    async def open_of_kind(self, contact_id: str, kind: PromiseKind) -> Sequence[Promise]:
        return self._promises(
            "SELECT doc FROM promises WHERE contact_id = ? AND kind = ? AND status IN (?, ?)",
            (contact_id, kind.value, Status.OPEN.value, Status.WAITING_ON_CUSTOMER.value),
        )

    async def made_between(self, start: datetime | None, end: datetime | None) -> Sequence[Promise]:
        return self._promises(
            "SELECT doc FROM promises WHERE created_at >= ? AND created_at < ?",
            (iso(start) if start else "", iso(end) if end else "~"),  # "~" sorts after digits
        )

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
            "SELECT contact_id FROM contact_fates WHERE merged_into_id = ? ORDER BY contact_id",
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
                args.append(value)
        if before is not None and before.at is not None:
            where.append("(scheduled_at, id) < (?, ?)")
            args.extend([iso(before.at), before.id])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(
            f"SELECT doc FROM reminders {clause} ORDER BY scheduled_at DESC, id DESC LIMIT ?",
            (*args, limit),
        )
        return [documents.delivery_from(json.loads(r[0])) for r in rows]

    # --- the scheduler's claim ------------------------------------------------------------------

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> Sequence[Claim]:
        token = new_id()

        def claim(conn: sqlite3.Connection) -> builtins.list[Claim]:
            rows = conn.execute(
                "SELECT id, doc FROM reminders WHERE next_attempt_at <= ?"
                " ORDER BY next_attempt_at LIMIT ?",
                (iso(now), limit),
            ).fetchall()
            conn.executemany(
                "UPDATE reminders SET next_attempt_at = ?, lease_token = ? WHERE id = ?",
                [(iso(lease_until), token, r[0]) for r in rows],
            )
            return [Claim(documents.delivery_from(json.loads(r[1])), token) for r in rows]

        return await self._write(claim)

    async def renew_claims(self, claims: Sequence[Claim], until: datetime) -> set[str]:
        by_token: dict[str, builtins.list[str]] = {}
        for c in claims:
            by_token.setdefault(c.token, []).append(c.delivery.id)

        def renew(conn: sqlite3.Connection) -> set[str]:
            held: set[str] = set()
            for token, reminder_ids in by_token.items():
                marks = ",".join("?" * len(reminder_ids))
                conn.execute(
                    "UPDATE reminders SET next_attempt_at = ?"
                    f" WHERE lease_token = ? AND id IN ({marks})",
                    (iso(until), token, *reminder_ids),
                )
                rows = conn.execute(
                    f"SELECT id FROM reminders WHERE lease_token = ? AND id IN ({marks})",
                    (token, *reminder_ids),
                )
                held.update(r[0] for r in rows)
            return held

        return await self._write(renew)

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        def apply(conn: sqlite3.Connection) -> None:
            if change.live_contact:
                # Inside the write transaction (BEGIN IMMEDIATE): no fate changes meanwhile.
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
                    (promise_id, Outcome.PENDING.value),
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
        r = claim.delivery
        cur = conn.execute(
            "UPDATE reminders SET doc = ?, outcome = ?, next_attempt_at = ?, lease_token = NULL"
            " WHERE id = ? AND lease_token = ?",
            (
                json.dumps(documents.delivery_doc(r)),
                r.outcome.value,
                iso(r.next_attempt_at) if r.next_attempt_at else None,
                r.id,
                claim.token,
            ),
        )
        if cur.rowcount != 1:
            raise LeaseLostError(r.id)

    def _progress(self, conn: sqlite3.Connection, claim: Claim) -> None:
        r = claim.delivery
        cur = conn.execute(
            "UPDATE reminders SET doc = ?, outcome = ? WHERE id = ? AND lease_token = ?",
            (json.dumps(documents.delivery_doc(r)), r.outcome.value, r.id, claim.token),
        )
        if cur.rowcount != 1:
            raise LeaseLostError(r.id)

    def _insert(self, conn: sqlite3.Connection, planned: Sequence[ReminderDelivery]) -> None:
        conn.executemany(
            "INSERT INTO reminders (id, promise_id, owner_id, outcome, scheduled_at,"
            " next_attempt_at, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.id,
                    r.promise_id,
                    r.owner_id,
                    r.outcome.value,
                    iso(r.scheduled_at),
                    iso(r.next_attempt_at) if r.next_attempt_at else None,
                    json.dumps(documents.delivery_doc(r)),
                )
                for r in planned
            ],
        )

    def _save(self, conn: sqlite3.Connection, p: Promise, expected: int) -> None:
        row = {
            "id": p.id,
            "version": p.version,
            "doc": json.dumps(documents.promise_doc(p)),
            "contact_id": p.contact_id,
            "owner_id": p.owner_id,
            "team": p.team,
            "status": p.status.value,
            "kind": p.kind.value,
            "due_at": iso(p.due_at),
            "paused_at": iso(p.paused_at) if p.paused_at else None,
            "created_at": iso(p.created_at),
        }
        self._save_versioned(conn, "promises", row, expected)
