"""The embedded default store: SQLite in WAL mode, interaction documents plus indexed columns.

Times that are sorted or compared are kept as integer microseconds since the epoch
(`documents.micros`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from interactions.adapters.documents import from_document, micros, timeline_key, to_document
from interactions.domain.events import InteractionEvent
from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Change, ContactGoneError, Scope, TimelineFilter
from promesa.clock import Clock
from promesa.events import OutgoingEvent
from promesa.pagination import Cursor
from promesa.sqlite_store import SqliteStore

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

# Columns the read model gained after its first release, added to a database made before
# (the schema's index is on merged_into_id, which every version of the table has).
ADDED_COLUMNS = {
    "owner_id": "TEXT NOT NULL DEFAULT ''",
    "team": "TEXT NOT NULL DEFAULT ''",
    "profile_at": "TEXT",
    "erasure_confirmed_at": "TEXT",
}
KNOWN_COLUMNS = "id, merged_into_id, erased_at, owner_id, team, profile_at, erasure_confirmed_at"


class SqliteInteractionStore(SqliteStore):
    def __init__(
        self,
        path: Path,
        encode: Callable[[InteractionEvent], OutgoingEvent],
        clock: Clock,
        *,
        synchronous: str = "FULL",
    ) -> None:
        super().__init__(path, SCHEMA, clock, synchronous=synchronous)
        self._encode = encode

    def _migrate(self, conn: sqlite3.Connection) -> None:
        present = {r[1] for r in conn.execute("PRAGMA table_info(known_contacts)")}
        for column, declaration in ADDED_COLUMNS.items():
            if column not in present:
                conn.execute(f"ALTER TABLE known_contacts ADD COLUMN {column} {declaration}")

    # --- reads -------------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> Interaction | None:
        row = self._conn.execute(
            "SELECT doc FROM interactions WHERE id = ?", (interaction_id,)
        ).fetchone()
        return from_document(json.loads(row[0])) if row else None

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
            f"SELECT doc FROM interactions WHERE {' AND '.join(where)}"
            " ORDER BY occurred_us DESC, id DESC LIMIT ?"
        )
        return self._documents(sql, (*args, limit))

    async def of_contact(
        self, contact_id: str, limit: int, *, unerased_only: bool = False
    ) -> Sequence[Interaction]:
        unerased = " AND erased = 0" if unerased_only else ""
        sql = f"SELECT doc FROM interactions WHERE contact_id = ?{unerased} LIMIT ?"
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
        return [from_document(json.loads(r[0])) for r in self._conn.execute(sql, args)]

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
        d = i.details
        row = {
            "id": i.id,
            "contact_id": i.contact_id,
            "occurred_us": micros(d.occurred_at),
            "type": d.type.value,
            "channel": d.channel.value,
            "agent_id": d.agent_id,
            "erased": int(i.erased_at is not None),
            "version": i.version,
            "doc": json.dumps(to_document(i)),
        }
        self._save_versioned(conn, "interactions", row, expected)


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
