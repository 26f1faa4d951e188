"""The embedded default store: SQLite in WAL mode, contact documents plus indexed columns."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from contacts.adapters.documents import (
    Confirmations,
    confirmation_from_document,
    confirmation_to_document,
    equalities,
    erasure_from_document,
    erasure_to_document,
    from_document,
    instant,
    query_keys,
    to_document,
)
from contacts.domain.erasure import ErasureRecord
from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact
from contacts.ports import Change, ContactFilter, ContactSearch, EmailTakenError
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.pagination import Cursor
from promesa.sqlite_store import SqliteStore
from promesa.storage import VersionConflictError

SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL,
    status TEXT NOT NULL,
    live INTEGER NOT NULL,
    owner_id TEXT NOT NULL,
    team TEXT NOT NULL,
    kind TEXT NOT NULL,
    relationship TEXT NOT NULL,
    display_key TEXT NOT NULL,
    preferred_key TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    last_purchase_at TEXT
);
CREATE INDEX IF NOT EXISTS contacts_by_created ON contacts (created_at, id);
CREATE INDEX IF NOT EXISTS contacts_lapsing ON contacts (status, last_purchase_at)
    WHERE live = 1;
CREATE INDEX IF NOT EXISTS contacts_by_owner ON contacts (owner_id, created_at, id);
CREATE INDEX IF NOT EXISTS contacts_by_team ON contacts (team, created_at, id);
CREATE INDEX IF NOT EXISTS contacts_by_display ON contacts (display_key) WHERE live = 1;
CREATE INDEX IF NOT EXISTS contacts_by_preferred ON contacts (preferred_key) WHERE live = 1;
CREATE TABLE IF NOT EXISTS contact_emails (
    email TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contact_emails_by_contact ON contact_emails (contact_id);
CREATE TABLE IF NOT EXISTS contact_phones (
    phone TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (phone, contact_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contact_phones_by_contact ON contact_phones (contact_id);
CREATE TABLE IF NOT EXISTS contact_tags (
    tag TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    PRIMARY KEY (tag, contact_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS contact_tags_by_contact ON contact_tags (contact_id);
CREATE TABLE IF NOT EXISTS erasures (
    contact_id TEXT PRIMARY KEY,
    requested_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    erased_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS erasures_newest ON erasures (erased_at, contact_id);
CREATE TABLE IF NOT EXISTS erasure_confirmations (
    contact_id TEXT NOT NULL,
    service TEXT NOT NULL,
    confirmed_at TEXT NOT NULL,
    PRIMARY KEY (contact_id, service)
) WITHOUT ROWID;
"""
# Columns of the contacts table copied from the document as they are.
COLUMNS = (
    "id",
    "version",
    "status",
    "owner_id",
    "team",
    "kind",
    "relationship",
    "created_at",
    "updated_at",
    "last_purchase_at",
)


def _scope(teams: Sequence[str] | None, where: list[str], args: list[object]) -> None:
    """Only contacts of the reader's teams; None is every team, and no team at all is none."""
    if teams is None:
        return
    if not teams:
        where.append("0")
        return
    where.append(f"c.team IN ({', '.join('?' for _ in teams)})")
    args.extend(teams)


class SqliteContactStore(SqliteStore):
    def __init__(
        self,
        path: Path,
        encode: Callable[[ContactEvent], OutgoingEvent],
        clock: Clock,
        *,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(path, SCHEMA, clock, synchronous=synchronous)
        self._encode = encode

    # --- reads -------------------------------------------------------------------------------

    async def get(self, contact_id: str) -> Contact | None:
        row = self._conn.execute("SELECT doc FROM contacts WHERE id = ?", (contact_id,)).fetchone()
        return from_document(json.loads(row[0])) if row else None

    async def holder_of_email(self, email: str) -> str | None:
        row = self._conn.execute(
            "SELECT contact_id FROM contact_emails WHERE email = ?", (email,)
        ).fetchone()
        return str(row[0]) if row else None

    async def list(self, f: ContactFilter, after: Cursor | None, limit: int) -> Sequence[Contact]:
        where = ["c.live = 1"]
        args: list[object] = []
        for column, value in equalities(f).items():
            where.append(f"c.{column} = ?")
            args.append(value)
        if f.updated_since is not None:
            where.append("c.updated_at >= ?")
            args.append(instant(f.updated_since))
        if f.tag:
            where.append("c.id IN (SELECT contact_id FROM contact_tags WHERE tag = ?)")
            args.append(f.tag)
        _scope(f.teams, where, args)
        if after is not None and after.at is not None:
            where.append("(c.created_at, c.id) > (?, ?)")
            args.extend([instant(after.at), after.id])
        return self._select(where, args, "c.created_at, c.id", limit)

    async def search(self, q: ContactSearch, after: Cursor | None, limit: int) -> Sequence[Contact]:
        where = ["c.live = 1"]
        args: list[object] = []
        if q.name_prefix:
            upper = q.name_prefix + "\U0010ffff"
            where.append(
                "((c.display_key >= ? AND c.display_key < ?)"
                " OR (c.preferred_key >= ? AND c.preferred_key < ?))"
            )
            args.extend([q.name_prefix, upper, q.name_prefix, upper])
        if q.email:
            where.append("c.id IN (SELECT contact_id FROM contact_emails WHERE email = ?)")
            args.append(q.email)
        if q.phone:
            where.append("c.id IN (SELECT contact_id FROM contact_phones WHERE phone = ?)")
            args.append(q.phone)
        _scope(q.teams, where, args)
        if after is not None:
            where.append("c.id > ?")
            args.append(after.id)
        return self._select(where, args, "c.id", limit)

    async def lapsed(self, purchased_before: datetime, limit: int) -> Sequence[Contact]:
        where = ["c.live = 1", "c.status = 'ACTIVE'", "c.last_purchase_at <= ?"]
        return self._select(where, [instant(purchased_before)], "c.last_purchase_at", limit)

    def _select(
        self, where: Sequence[str], args: Sequence[object], order: str, limit: int
    ) -> Sequence[Contact]:
        sql = f"SELECT c.doc FROM contacts c WHERE {' AND '.join(where)} ORDER BY {order} LIMIT ?"
        rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [from_document(json.loads(r[0])) for r in rows]

    async def erasure(self, contact_id: str) -> ErasureRecord | None:
        found = self._erasures("WHERE contact_id = ?", (contact_id,), 1)
        return found[0] if found else None

    async def erasures(self, after: Cursor | None, limit: int) -> Sequence[ErasureRecord]:
        if after is not None and after.at is not None:
            where, args = "WHERE (erased_at, contact_id) < (?, ?)", (instant(after.at), after.id)
            return self._erasures(where, args, limit)
        return self._erasures("", (), limit)

    def _erasures(self, where: str, args: Sequence[object], limit: int) -> Sequence[ErasureRecord]:
        columns = "contact_id, requested_by, reason, erased_at"
        rows = self._conn.execute(
            f"SELECT {columns} FROM erasures {where}"
            " ORDER BY erased_at DESC, contact_id DESC LIMIT ?",
            (*args, limit),
        ).fetchall()
        names = columns.split(", ")
        docs = [dict(zip(names, row, strict=True)) for row in rows]
        confirmations: Confirmations = {d["contact_id"]: [] for d in docs}
        if docs:
            marks = ", ".join("?" for _ in docs)
            for contact_id, service, confirmed_at in self._conn.execute(
                "SELECT contact_id, service, confirmed_at FROM erasure_confirmations"
                f" WHERE contact_id IN ({marks})",
                list(confirmations),
            ):
                doc = {"contact_id": contact_id, "service": service, "confirmed_at": confirmed_at}
                confirmations[contact_id].append(confirmation_from_document(doc))
        return [erasure_from_document(d, confirmations[d["contact_id"]]) for d in docs]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]
        rows = [(self._row(contact), contact, expected) for contact, expected in change.saves]

        def apply(conn: sqlite3.Connection) -> None:
            for row, contact, expected in rows:
                self._save(conn, row, contact, expected)
            if change.erasure is not None:
                try:
                    conn.execute(
                        "INSERT INTO erasures (contact_id, requested_by, reason, erased_at)"
                        " VALUES (:contact_id, :requested_by, :reason, :erased_at)",
                        erasure_to_document(change.erasure),
                    )
                except sqlite3.IntegrityError:
                    raise VersionConflictError(change.erasure.contact_id) from None
            # A service's first confirmation stays; a redelivered one is ignored.
            conn.executemany(
                "INSERT OR IGNORE INTO erasure_confirmations (contact_id, service, confirmed_at)"
                " VALUES (:contact_id, :service, :confirmed_at)",
                [confirmation_to_document(c) for c in change.confirmations],
            )

        await self._write(apply, events, handled=change.handled, idempotency=change.idempotency)

    @staticmethod
    def _row(c: Contact) -> dict[str, object]:
        """Built on the event loop, so the writer thread only runs SQL."""
        doc = to_document(c)
        return {**{name: doc[name] for name in COLUMNS}, **query_keys(c), "doc": json.dumps(doc)}

    def _save(
        self, conn: sqlite3.Connection, row: dict[str, object], c: Contact, expected: int
    ) -> None:
        """The contact's row (the emails have a table of their own, whose primary key is the
        one-holder rule), then the rows its emails, phones and tags are found by."""
        d = c.details
        self._save_versioned(conn, "contacts", row, expected)
        conn.execute("DELETE FROM contact_emails WHERE contact_id = ?", (c.id,))
        conn.execute("DELETE FROM contact_phones WHERE contact_id = ?", (c.id,))
        conn.execute("DELETE FROM contact_tags WHERE contact_id = ?", (c.id,))
        if not c.is_live:
            return
        for email in d.emails:
            try:
                conn.execute(
                    "INSERT INTO contact_emails (email, contact_id) VALUES (?, ?)", (email, c.id)
                )
            except sqlite3.IntegrityError:
                holder = conn.execute(
                    "SELECT contact_id FROM contact_emails WHERE email = ?", (email,)
                ).fetchone()
                raise EmailTakenError(email, holder[0] if holder else "") from None
        conn.executemany(
            "INSERT OR IGNORE INTO contact_phones (phone, contact_id) VALUES (?, ?)",
            [(p, c.id) for p in d.phones],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO contact_tags (tag, contact_id) VALUES (?, ?)",
            [(t, c.id) for t in d.tags],
        )
