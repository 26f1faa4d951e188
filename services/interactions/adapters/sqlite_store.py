"""The embedded default store: SQLite in WAL mode, interaction documents plus indexed columns.

Times that are sorted or compared are kept as integer microseconds since the epoch: exact,
compact, and ordered the same way as the instants (ISO text would be, too, only while every
value has the same offset and precision).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from interactions.adapters.documents import from_document, to_document
from interactions.domain.events import InteractionEvent
from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Change, ContactGoneError, TimelineFilter, VersionConflictError
from promesa.clock import Clock
from promesa.events import OutgoingEvent
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
    erased_at TEXT
) WITHOUT ROWID;
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(at: datetime) -> int:
    return (at - _EPOCH) // _MICROSECOND


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

    # --- reads -------------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> Interaction | None:
        row = self._conn.execute(
            "SELECT doc FROM interactions WHERE id = ?", (interaction_id,)
        ).fetchone()
        return from_document(json.loads(row[0])) if row else None

    async def timeline(
        self, f: TimelineFilter, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Interaction]:
        where = ["contact_id = ?"]
        args: list[object] = [f.contact_id]
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
            args.extend([micros(after[0]), after[1]])
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
            "SELECT merged_into_id, erased_at FROM known_contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        if row is None:
            return None
        erased_at = datetime.fromisoformat(row[1]) if row[1] else None
        return KnownContact(contact_id, merged_into_id=row[0], erased_at=erased_at)

    def _documents(self, sql: str, args: Sequence[object]) -> list[Interaction]:
        return [from_document(json.loads(r[0])) for r in self._conn.execute(sql, args)]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]
        with self._writing(events, handled=change.handled, idempotency=change.idempotency) as conn:
            if change.live_contact and not self._is_live(conn, change.live_contact):
                raise ContactGoneError(change.live_contact)
            conn.executemany(
                "INSERT INTO known_contacts (id, merged_into_id, erased_at) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET merged_into_id = excluded.merged_into_id,"
                " erased_at = excluded.erased_at",
                [
                    (c.id, c.merged_into_id, c.erased_at.isoformat() if c.erased_at else None)
                    for c in change.contacts
                ],
            )
            for interaction, expected in change.saves:
                self._save(conn, interaction, expected)

    @staticmethod
    def _is_live(conn: sqlite3.Connection, contact_id: str) -> bool:
        row = conn.execute(
            "SELECT 1 FROM known_contacts WHERE id = ? AND merged_into_id = ''"
            " AND erased_at IS NULL",
            (contact_id,),
        ).fetchone()
        return row is not None

    @staticmethod
    def _save(conn: sqlite3.Connection, i: Interaction, expected: int) -> None:
        d = i.details
        row = (
            i.contact_id,
            micros(d.occurred_at),
            d.type.value,
            d.channel.value,
            d.agent_id,
            int(i.erased_at is not None),
            i.version,
            json.dumps(to_document(i)),
            i.id,
        )
        if expected == 0:
            try:
                conn.execute(
                    "INSERT INTO interactions (contact_id, occurred_us, type, channel, agent_id,"
                    " erased, version, doc, id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError:
                raise VersionConflictError(i.id) from None  # the id exists already
            return
        cur = conn.execute(
            "UPDATE interactions SET contact_id = ?, occurred_us = ?, type = ?, channel = ?,"
            " agent_id = ?, erased = ?, version = ?, doc = ? WHERE id = ? AND version = ?",
            (*row, expected),
        )
        if cur.rowcount != 1:
            raise VersionConflictError(i.id)
