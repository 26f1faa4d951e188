"""The embedded default store: SQLite in WAL mode, compact contact rows (`contact_row`)."""

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
    contact_from_row,
    contact_row,
    equalities,
    erasure_from_document,
    erasure_to_document,
    from_document,
    instant,
    micros,
)
from contacts.domain.erasure import ErasureRecord
from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact
from contacts.ports import Change, ContactFilter, ContactSearch, EmailTakenError
from promesa import sqlite as db
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.pagination import Cursor
from promesa.sqlite_store import SqliteStore
from promesa.storage import VersionConflictError

# The file's layout version, in `PRAGMA user_version`: 0 is the first release's (ISO times in
# the indexes, the whole JSON document beside the columns), rewritten at open.
SCHEMA_VERSION = 1
# Times are integer microseconds since the epoch; `doc` is the rest of the contact without its
# defaults (`documents.contact_row`). What each index serves:
#   contacts_by_created        list() by created time (no owner or team filter), page cursor
#   contacts_by_owner / _team  list(owner_id=…) / list(team=…) in created order
#   contacts_lapsing           lapsed(): live ACTIVE contacts by last purchase
#   contacts_by_display / _preferred   search by name prefix (live contacts)
#   contact_emails (its key)   the one-holder rule, holder_of_email, search by email
#   contact_phones / contact_tags (keys)   search by phone, list by tag
#   *_by_contact               a save's delete of the contact's emails, phones and tags
#   erasures_newest            erasures(), newest first
SCHEMA = """
CREATE TABLE IF NOT EXISTS contacts (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    live INTEGER NOT NULL,
    owner_id TEXT NOT NULL,
    team TEXT NOT NULL,
    kind TEXT NOT NULL,
    relationship TEXT NOT NULL,
    display_key TEXT NOT NULL,
    preferred_key TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    last_purchase_us INTEGER,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS contacts_by_created ON contacts (created_us, id);
CREATE INDEX IF NOT EXISTS contacts_lapsing ON contacts (status, last_purchase_us)
    WHERE live = 1;
CREATE INDEX IF NOT EXISTS contacts_by_owner ON contacts (owner_id, created_us, id);
CREATE INDEX IF NOT EXISTS contacts_by_team ON contacts (team, created_us, id);
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
CONTACT_COLUMNS = (
    "id, version, status, live, owner_id, team, kind, relationship, display_key, preferred_key,"
    " created_us, updated_us, last_purchase_us, doc"
)


def _upgrade(conn: sqlite3.Connection, found: int) -> bool:
    """Layout 0 with contacts in it: each is read through the whole-document decoder (the
    document MongoDB keeps) and written in the compact form; the email, phone, tag and erasure
    tables stay as they are. An empty file just gets the schema."""
    if "created_at" not in db.columns(conn, "contacts"):
        return False
    db.rewrite(
        conn,
        SCHEMA,
        found,
        SCHEMA_VERSION,
        {"contacts": lambda r: contact_row(from_document(json.loads(r["doc"])))},
    )
    return True


def _scope(
    teams: Sequence[str] | None, where: list[str], args: list[object], *, by_index: bool = True
) -> None:
    """Only contacts of the reader's teams; None is every team, and no team at all is none.
    Not `by_index` where the other criteria are the selective ones (a search by email must
    not walk the million contacts of an agent's team, `+` keeps the planner off its index)."""
    if teams is None:
        return
    if not teams:
        where.append("0")
        return
    column = "c.team" if by_index else "+c.team"
    where.append(f"{column} IN ({', '.join('?' for _ in teams)})")
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
        # The schema is laid down by `_migrate`, which knows the older layouts it replaces.
        super().__init__(path, "", clock, synchronous=synchronous)
        self._encode = encode

    def _migrate(self, conn: sqlite3.Connection) -> None:
        db.lay_out(conn, "contacts", SCHEMA, SCHEMA_VERSION, _upgrade)

    # --- reads -------------------------------------------------------------------------------

    async def get(self, contact_id: str) -> Contact | None:
        row = self._conn.execute(
            f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        return contact_from_row(row) if row else None

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
            where.append("c.updated_us >= ?")
            args.append(micros(f.updated_since))
        if f.tag:
            where.append("c.id IN (SELECT contact_id FROM contact_tags WHERE tag = ?)")
            args.append(f.tag)
        _scope(f.teams, where, args)
        if after is not None and after.at is not None:
            where.append("(c.created_us, c.id) > (?, ?)")
            args.extend([micros(after.at), after.id])
        return self._select(where, args, "c.created_us, c.id", limit)

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
        _scope(q.teams, where, args, by_index=False)
        if after is not None:
            where.append("c.id > ?")
            args.append(after.id)
        return self._select(where, args, "c.id", limit)

    async def lapsed(self, purchased_before: datetime, limit: int) -> Sequence[Contact]:
        where = ["c.live = 1", "c.status = 'ACTIVE'", "c.last_purchase_us <= ?"]
        return self._select(where, [micros(purchased_before)], "c.last_purchase_us", limit)

    def _select(
        self, where: Sequence[str], args: Sequence[object], order: str, limit: int
    ) -> Sequence[Contact]:
        sql = (
            f"SELECT {CONTACT_COLUMNS} FROM contacts c WHERE {' AND '.join(where)}"
            f" ORDER BY {order} LIMIT ?"
        )
        rows = self._conn.execute(sql, (*args, limit)).fetchall()
        return [contact_from_row(r) for r in rows]

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
        return contact_row(c)

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
