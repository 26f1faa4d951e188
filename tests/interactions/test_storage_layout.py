"""The interactions SQLite file's layout: what an interaction costs on disk, and that a file
written by the first release opens, migrated, with its data intact."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from interactions.adapters import event_codec
from interactions.adapters.documents import micros, to_document
from interactions.adapters.sqlite_store import SCHEMA_VERSION, SqliteInteractionStore
from interactions.domain.model import (
    Amendment,
    Channel,
    Direction,
    Interaction,
    InteractionDetails,
    InteractionType,
    KnownContact,
    PromiseInInteraction,
    PromiseKind,
    Purchase,
)
from interactions.ports import Change, Scope, TimelineFilter
from promesa.clock import ManualClock
from promesa.ids import derived_id, new_id
from tests.support import assert_migrated

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# The first release's schema (layout 0), as it created the file, kept here verbatim.
FIRST_LAYOUT = """
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
# An interaction exactly as the first release wrote it (copied from a file it made).
FIRST_LAYOUT_INTERACTION = (
    '{"id": "d3e8c72e-7e30-4c96-aeba-0808f456bd7e", "contact_id": "seed-contact-000000",'
    ' "type": "COMPLAINT", "channel": "IN_PERSON", "direction": "INBOUND", "occurred_at":'
    ' "2025-01-01T00:00:00+00:00", "agent_id": "agent-000", "team": "team-00", "summary":'
    ' "Asked when order 0 will be delivered", "notes": "The carrier is late; explained the'
    ' delay and what happens next.", "outcome": "Customer satisfied with the explanation",'
    ' "purchase": null, "thread_id": "", "promises": [{"id":'
    ' "d9327383-a31e-5760-a39f-ddb8f796d6b6", "text": "Call back with the delivery date",'
    ' "due_at": "2025-01-03T00:00:00+00:00", "owner_id": "agent-000", "kind": "CALL_BACK"}],'
    ' "satisfaction": null, "rated_at": null, "amendments": [], "created_at":'
    ' "2025-01-01T00:00:00+00:00", "updated_at": "2025-01-01T00:00:00+00:00", "created_by":'
    ' "bench", "updated_by": "bench", "version": 1, "erased_at": null}'
)


def a_touch(contact_id: str = "c-1", minutes: int = 0, **fields: object) -> Interaction:
    at = T0 + timedelta(minutes=minutes)
    iid = new_id()
    values: dict[str, object] = {
        "id": iid,
        "contact_id": contact_id,
        "details": InteractionDetails(
            type=InteractionType.INQUIRY,
            channel=Channel.PHONE,
            occurred_at=at,
            agent_id="agent-ana",
            direction=Direction.INBOUND,
            team="madrid",
            summary="Asked when the order will be delivered",
            notes="The carrier is late; promised to call back with a date.",
        ),
        "created_at": at,
        "updated_at": at,
        "created_by": "agent-ana",
        "updated_by": "agent-ana",
        "promises": (
            PromiseInInteraction(
                derived_id(iid, "0"),
                "Call back with the delivery date",
                at + timedelta(days=2),
                "agent-ana",
                PromiseKind.CALL_BACK,
            ),
        ),
        **fields,
    }
    return Interaction(**values)  # type: ignore[arg-type]


def worn() -> Interaction:
    """Every field away from its default."""
    return a_touch(
        details=InteractionDetails(
            type=InteractionType.PURCHASE,
            channel=Channel.EMAIL,
            occurred_at=T0,
            agent_id="agent-bea",
            direction=Direction.OUTBOUND,
            team="",
            summary="Bought the blue one",
            notes="n",
            outcome="o",
            purchase=Purchase(12_345, "EUR"),
            thread_id=new_id(),
        ),
        updated_at=T0 + timedelta(hours=1),
        updated_by="agent-bea",
        satisfaction=4,
        rated_at=T0 + timedelta(minutes=5),
        amendments=(
            Amendment("agent-bea", T0 + timedelta(hours=1), ("notes",), "typo", (("notes", "m"),)),
        ),
        version=3,
        erased_at=T0 + timedelta(days=1),
    )


def write_first_layout(path: Path, interactions: list[Interaction]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
        for i in interactions:
            conn.execute(
                "INSERT INTO interactions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    i.id,
                    i.contact_id,
                    micros(i.details.occurred_at),
                    i.details.type.value,
                    i.details.channel.value,
                    i.details.agent_id,
                    int(i.erased_at is not None),
                    i.version,
                    json.dumps(to_document(i)),
                ),
            )
        conn.execute("INSERT INTO known_contacts (id, merged_into_id) VALUES ('c-1', '')")
    conn.close()


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[SqliteInteractionStore]:
    store = SqliteInteractionStore(
        tmp_path / "interactions.db", event_codec.encode, ManualClock(T0)
    )
    try:
        yield store
    finally:
        await store.close()


async def test_a_file_of_the_first_release_opens_migrated_with_every_interaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "interactions.db"
    first, second, full = a_touch(minutes=1), a_touch(minutes=2), worn()
    write_first_layout(path, [first, second, full])

    store = SqliteInteractionStore(path, event_codec.encode, ManualClock(T0))
    try:
        for i in (first, second, full):
            assert await store.get(i.id) == i
        assert await store.timeline(TimelineFilter("c-1"), None, 10) == [second, first, full]
        assert await store.timeline(
            TimelineFilter("c-1"), None, 10, Scope("lisbon", "agent-zoe")
        ) == [full]  # unassigned (no team) touches are everyone's
        assert await store.of_contact("c-1", 10, unerased_only=True) == [first, second]
        assert await store.contact("c-1") == KnownContact("c-1")
    finally:
        await store.close()
    assert_migrated(path, SCHEMA_VERSION)


async def test_the_first_releases_document_as_written_reads_back(tmp_path: Path) -> None:
    """Pinned to bytes a first-release file holds, not to today's encoder of that format."""
    path = tmp_path / "interactions.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
        conn.execute(
            "INSERT INTO interactions VALUES ('d3e8c72e-7e30-4c96-aeba-0808f456bd7e',"
            " 'seed-contact-000000', 1735689600000000, 'COMPLAINT', 'IN_PERSON', 'agent-000', 0,"
            " 1, ?)",
            (FIRST_LAYOUT_INTERACTION,),
        )
    conn.close()

    store = SqliteInteractionStore(path, event_codec.encode, ManualClock(T0))
    try:
        [found] = await store.timeline(TimelineFilter("seed-contact-000000"), None, 10)
    finally:
        await store.close()

    assert found.id == "d3e8c72e-7e30-4c96-aeba-0808f456bd7e"
    assert found.details.occurred_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert found.details.notes.startswith("The carrier is late")
    assert found.promises[0].due_at == datetime(2025, 1, 3, tzinfo=UTC)
    assert found.updated_by == "bench"


async def test_a_file_from_a_newer_release_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "interactions.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(RuntimeError, match="newer release"):
        SqliteInteractionStore(path, event_codec.encode, ManualClock(T0))


async def test_every_field_reads_back_from_the_compact_row(
    opened: SqliteInteractionStore,
) -> None:
    full, plain = worn(), a_touch(promises=())
    await opened.commit(Change(saves=[(full, 0), (plain, 0)]))

    assert await opened.get(full.id) == full
    assert await opened.get(plain.id) == plain


async def test_an_interaction_takes_at_most_a_kilobyte(tmp_path: Path) -> None:
    """Issue 13's budget, indexes included: the bench's touch (three texts, a promise in one
    of three), written with the indexes maintained as rows arrive."""
    path = tmp_path / "interactions.db"
    count = 3_000
    store = SqliteInteractionStore(path, event_codec.encode, ManualClock(T0), synchronous="OFF")
    try:
        for start in range(0, count, 100):
            saves = [
                (a_touch(f"c-{i % 700}", i, **({} if i % 3 == 0 else {"promises": ()})), 0)
                for i in range(start, start + 100)
            ]
            await store.commit(Change(saves=saves))
        await store.scrub()  # checkpoints the WAL into the file
    finally:
        await store.close()

    per_interaction = path.stat().st_size / count
    assert per_interaction <= 1_000, f"{per_interaction:.0f} B per interaction"
