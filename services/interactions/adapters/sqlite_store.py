"""The embedded default store: SQLite in WAL mode, compact interaction rows plus the contacts
read model.

Times that are sorted or compared are kept as integer microseconds since the epoch
(`documents.micros`); a row's `doc` is the rest of the interaction without its defaults
(`documents.interaction_row`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from interactions.adapters.documents import (
    from_document,
    interaction_from_row,
    interaction_row,
    micros,
    timeline_key,
)
from interactions.domain.events import InteractionEvent
from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Change, ContactGoneError, Scope, TimelineFilter
from promesa import sqlite as db
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.pagination import Cursor
from promesa.sqlite_store import SqliteStore

# The file's layout version, in `PRAGMA user_version`: 0 is the first release's (the whole JSON
# document beside the columns), rewritten at open.
SCHEMA_VERSION = 1
# What each index serves:
#   interactions_timeline   timeline() of a contact, newest first, every filter and page cursor
#   interactions_unerased   of_contact(unerased_only=True): what an erasure still has to scrub
#   known_contacts_merged   merged_into(): the contacts merged into one
SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL,
    occurred_us INTEGER NOT NULL,
    type TEXT NOT NULL,
    channel TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    erased INTEGER NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_timeline
    ON interactions (contact_id, occurred_us DESC, id DESC);
CREATE INDEX IF NOT EXISTS interactions_unerased ON interactions (contact_id) WHERE erased = 0;
CREATE TABLE IF NOT EXISTS known_contacts (
    id TEXT PRIMARY KEY,
    merged_into_id TEXT NOT NULL,
    erased_at TEXT,
    owner_id TEXT NOT NULL DEFAULT '',
    team TEXT NOT NULL DEFAULT '',
    profile_at TEXT,
    erasure_confirmed_at TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS known_contacts_merged ON known_contacts (merged_into_id);
"""
INTERACTION_COLUMNS = "id, contact_id, occurred_us, type, channel, agent_id, erased, version, doc"

# Columns the read model gained after its first release, added to a database made before
# (the schema's index is on merged_into_id, which every version of the table has).
ADDED_COLUMNS = {
    "owner_id": "TEXT NOT NULL DEFAULT ''",
    "team": "TEXT NOT NULL DEFAULT ''",
    "profile_at": "TEXT",
    "erasure_confirmed_at": "TEXT",
}
KNOWN_COLUMNS = "id, merged_into_id, erased_at, owner_id, team, profile_at, erasure_confirmed_at"


def _upgrade(conn: sqlite3.Connection, found: int) -> bool:
    """Layout 0: its interactions are read through the whole-document decoder (the document
    MongoDB keeps) and written in the compact form into a new table, so the rows are packed
    again (an empty file just gets the schema); its read model of contacts gets the columns
    that came later."""
    rewrite = bool(db.columns(conn, "interactions"))
    if rewrite:
        db.rewrite(
            conn,
            SCHEMA,
            found,
            SCHEMA_VERSION,
            {"interactions": lambda r: interaction_row(from_document(json.loads(r["doc"])))},
        )
    present = db.columns(conn, "known_contacts")
    for column, declaration in ADDED_COLUMNS.items():
        if present and column not in present:
            conn.execute(f"ALTER TABLE known_contacts ADD COLUMN {column} {declaration}")
    return rewrite


class SqliteInteractionStore(SqliteStore):
    def __init__(
        self,
        path: Path,
        encode: Callable[[InteractionEvent], OutgoingEvent],
        clock: Clock,
        *,
        synchronous: str = "FULL",
    ) -> None:
        # The schema is laid down by `_migrate`, which knows the older layouts it replaces.
        super().__init__(path, "", clock, synchronous=synchronous)
        self._encode = encode

    def _migrate(self, conn: sqlite3.Connection) -> None:
        db.lay_out(conn, "interactions", SCHEMA, SCHEMA_VERSION, _upgrade)

    # --- reads -------------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> Interaction | None:
        row = self._conn.execute(
            f"SELECT {INTERACTION_COLUMNS} FROM interactions WHERE id = ?", (interaction_id,)
        ).fetchone()
        return interaction_from_row(row) if row else None

    async def timeline(
        self, f: TimelineFilter, after: Cursor | None, limit: int, scope: Scope | None = None
    ) -> Sequence[Interaction]:
        where = ["contact_id = ?"]
        args: list[object] = [f.contact_id]
        if scope is not None:
            # Read from the document: the walk of one contact's timeline drops what is out of
            # scope, so no column or index of its own is needed.
            where.append("(json_extract(doc, '$.team') IN (?, '') OR agent_id = ?)")
            args.extend((scope.team, scope.agent_id))
        for column, value in (("type", f.type), ("channel", f.channel), ("agent_id", f.agent_id)):
            if value:
                where.append(f"{column} = ?")
                args.append(str(value))
        if f.occurred_after is not None:
            where.append("occurred_us >= ?")
            args.append(micros(f.occurred_after))
        if f.occurred_before is not None:
            where.append("occurred_us < ?")
            args.append(micros(f.occurred_before))
        if after is not None:
            where.append("(occurred_us, id) < (?, ?)")
            args.extend(timeline_key(after))
        sql = (
            f"SELECT {INTERACTION_COLUMNS} FROM interactions WHERE {' AND '.join(where)}"
            " ORDER BY occurred_us DESC, id DESC LIMIT ?"
        )
        return self._documents(sql, (*args, limit))

    async def of_contact(
        self, contact_id: str, limit: int, *, unerased_only: bool = False
    ) -> Sequence[Interaction]:
        unerased = " AND erased = 0" if unerased_only else ""
        sql = (
            f"SELECT {INTERACTION_COLUMNS} FROM interactions WHERE contact_id = ?{unerased} LIMIT ?"
        )
        return self._documents(sql, (contact_id, limit))

    async def contact(self, contact_id: str) -> KnownContact | None:
        row = self._conn.execute(
            f"SELECT {KNOWN_COLUMNS} FROM known_contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        if row is None:
            return None
        return KnownContact(
            row["id"],
            merged_into_id=row["merged_into_id"],
            erased_at=_instant(row["erased_at"]),
            owner_id=row["owner_id"],
            team=row["team"],
            profile_at=_instant(row["profile_at"]),
            erasure_confirmed_at=_instant(row["erasure_confirmed_at"]),
        )

    async def merged_into(self, contact_id: str) -> Sequence[str]:
        rows = self._conn.execute(
            "SELECT id FROM known_contacts WHERE merged_into_id = ? ORDER BY id", (contact_id,)
        )
        return [r[0] for r in rows]

    def _documents(self, sql: str, args: Sequence[object]) -> list[Interaction]:
        return [interaction_from_row(r) for r in self._conn.execute(sql, args)]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        def apply(conn: sqlite3.Connection) -> None:
            if change.live_contact and not self._is_live(conn, change.live_contact):
                raise ContactGoneError(change.live_contact)
            conn.executemany(
                f"INSERT OR REPLACE INTO known_contacts ({KNOWN_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        c.id,
                        c.merged_into_id,
                        _when(c.erased_at),
                        c.owner_id,
                        c.team,
                        _when(c.profile_at),
                        _when(c.erasure_confirmed_at),
                    )
                    for c in change.contacts
                ],
            )
            for interaction, expected in change.saves:
                self._save(conn, interaction, expected)

        await self._write(apply, events, handled=change.handled, idempotency=change.idempotency)

    @staticmethod
    def _is_live(conn: sqlite3.Connection, contact_id: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM known_contacts WHERE id = ? AND merged_into_id = ''"
            " AND erased_at IS NULL",
            (contact_id,),
        ).fetchone()
        return row is not None

    def _save(self, conn: sqlite3.Connection, i: Interaction, expected: int) -> None:
        self._save_versioned(conn, "interactions", interaction_row(i), expected)


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
