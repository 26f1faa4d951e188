"""The embedded default store: SQLite in WAL mode, contact documents plus indexed columns."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from contacts.adapters.documents import from_document, to_document
from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact
from contacts.ports import Change, ContactFilter, EmailTakenError, VersionConflictError
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.sqlite_store import SqliteStore

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
"""


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

    async def list(
        self, f: ContactFilter, after: tuple[str, str] | None, limit: int
    ) -> Sequence[Contact]:
        where = ["c.live = 1"]
        args: list[object] = []
        if f.status is not None:
            where.append("c.status = ?")
            args.append(f.status.value)
        for column in ("owner_id", "team"):
            if getattr(f, column):
                where.append(f"c.{column} = ?")
                args.append(getattr(f, column))
        if f.kind is not None:
            where.append("c.kind = ?")
            args.append(f.kind.value)
        if f.relationship is not None:
            where.append("c.relationship = ?")
            args.append(f.relationship.value)
        if f.updated_since is not None:
            where.append("c.updated_at >= ?")
            args.append(f.updated_since.astimezone(UTC).isoformat())
        if f.tag:
            where.append("c.id IN (SELECT contact_id FROM contact_tags WHERE tag = ?)")
            args.append(f.tag.strip().lower())
        if after is not None:
            where.append("(c.created_at, c.id) > (?, ?)")
            args.extend(after)
        sql = (
            f"SELECT c.doc FROM contacts c WHERE {' AND '.join(where)}"
            " ORDER BY c.created_at, c.id LIMIT ?"
        )
        rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [from_document(json.loads(r[0])) for r in rows]

    async def search(
        self, name_prefix: str, email: str, phone: str, after: str | None, limit: int
    ) -> Sequence[Contact]:
        where = ["c.live = 1"]
        args: list[object] = []
        if name_prefix:
            upper = name_prefix + "\U0010ffff"
            where.append(
                "((c.display_key >= ? AND c.display_key < ?)"
                " OR (c.preferred_key >= ? AND c.preferred_key < ?))"
            )
            args.extend([name_prefix, upper, name_prefix, upper])
        if email:
            where.append("c.id IN (SELECT contact_id FROM contact_emails WHERE email = ?)")
            args.append(email)
        if phone:
            where.append("c.id IN (SELECT contact_id FROM contact_phones WHERE phone = ?)")
            args.append(phone)
        if after is not None:
            where.append("c.id > ?")
            args.append(after)
        sql = f"SELECT c.doc FROM contacts c WHERE {' AND '.join(where)} ORDER BY c.id LIMIT ?"
        rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [from_document(json.loads(r[0])) for r in rows]

    async def lapsed(self, purchased_before: datetime, limit: int) -> Sequence[Contact]:
        rows = self._conn.execute(
            "SELECT doc FROM contacts WHERE live = 1 AND status = 'ACTIVE'"
            " AND last_purchase_at <= ? ORDER BY last_purchase_at LIMIT ?",
            (purchased_before.astimezone(UTC).isoformat(), limit),
        ).fetchall()
        return [from_document(json.loads(r[0])) for r in rows]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]
        with self._writing(events, handled=change.handled, idempotency=change.idempotency) as conn:
            for contact, expected in change.saves:
                self._save(conn, contact, expected)

    def _save(self, conn: sqlite3.Connection, c: Contact, expected: int) -> None:
        doc = to_document(c)
        d = c.details
        row = (
            c.version,
            json.dumps(doc),
            c.status.value,
            int(c.is_live),
            d.owner_id,
            d.team,
            d.kind.value,
            d.relationship.value,
            d.display_name.lower(),
            d.preferred_name.lower(),
            doc["created_at"],
            doc["updated_at"],
            doc["last_purchase_at"],
        )
        if expected == 0:
            try:
                conn.execute(
                    "INSERT INTO contacts (version, doc, status, live, owner_id, team, kind,"
                    " relationship, display_key, preferred_key, created_at, updated_at,"
                    " last_purchase_at, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, c.id),
                )
            except sqlite3.IntegrityError:
                raise VersionConflictError(c.id) from None  # the id exists already
        else:
            cur = conn.execute(
                "UPDATE contacts SET version = ?, doc = ?, status = ?, live = ?, owner_id = ?,"
                " team = ?, kind = ?, relationship = ?, display_key = ?, preferred_key = ?,"
                " created_at = ?, updated_at = ?, last_purchase_at = ?"
                " WHERE id = ? AND version = ?",
                (*row, c.id, expected),
            )
            if cur.rowcount != 1:
                raise VersionConflictError(c.id)
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
