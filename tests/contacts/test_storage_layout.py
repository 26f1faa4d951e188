"""The contacts SQLite file's layout: what a contact costs on disk, that the queries read through
indexes, and that a file written by the first release opens, migrated, with its data intact."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contacts.adapters import event_codec
from contacts.adapters.documents import query_keys, to_document
from contacts.adapters.sqlite_store import SCHEMA_VERSION, SqliteContactStore
from contacts.domain.model import (
    Channel,
    Contact,
    ContactDetails,
    ContactKind,
    Lifecycle,
    PostalAddress,
    QuietHours,
    Relationship,
)
from contacts.ports import Change, ContactFilter, ContactSearch
from promesa.clock import ManualClock
from promesa.ids import new_id
from promesa.pagination import Cursor
from tests.support import assert_migrated

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

# The first release's schema (layout 0), as it created the file, kept here verbatim.
FIRST_LAYOUT = """
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
FIRST_LAYOUT_COLUMNS = (
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
# A contact exactly as the first release wrote it (copied from a file it made).
FIRST_LAYOUT_CONTACT = (
    '{"id": "a5e6bc88-926d-4a0c-a58a-1d3b558c93d6", "kind": "PERSON", "display_name": "Seeded'
    ' Contact 0", "preferred_name": "", "emails": ["seed-0000000@bench.example"], "phones": [],'
    ' "postal_address": {"lines": [], "locality": "", "region": "", "postal_code": "",'
    ' "country_code": ""}, "organisation_id": "", "owner_id": "", "team": "", "tags": [],'
    ' "time_zone": "", "preferred_channel": null, "consents": [], "quiet_hours": null,'
    ' "discreet": false, "referred_by_id": "", "relationship": "EXTERNAL_CUSTOMER", "status":'
    ' "NEVER_PURCHASED", "created_at": "2025-01-01T00:00:00+00:00", "updated_at":'
    ' "2025-01-01T00:00:00+00:00", "created_by": "bench", "updated_by": "bench", "version": 1,'
    ' "last_purchase_at": null, "last_interaction_at": null, "merged_into_id": "", "erased_at":'
    " null}"
)


def a_contact(name: str = "Ana Quill", **fields: object) -> Contact:
    return replace(
        Contact(
            id=new_id(),
            details=ContactDetails(display_name=name, emails=(f"{new_id()}@example.org",)),
            status=Lifecycle.NEVER_PURCHASED,
            created_at=T0,
            updated_at=T0,
            created_by="ana",
            updated_by="ana",
        ),
        **fields,  # type: ignore[arg-type]
    )


def worn() -> Contact:
    """Every field away from its default."""
    return a_contact(
        details=ContactDetails(
            kind=ContactKind.ORGANISATION,
            display_name="Zenobia Quillfeather",
            preferred_name="Zezette",
            emails=("z@example.org", "q@example.org"),
            phones=("+34699123456",),
            postal_address=PostalAddress(("17 Calle Imaginaria",), "Villa", "R", "QX9", "ES"),
            organisation_id=new_id(),
            owner_id="bea",
            team="madrid",
            tags=("vip", "zanzibar"),
            time_zone="Europe/Madrid",
            preferred_channel=Channel.EMAIL,
            consents=((Channel.EMAIL, True), (Channel.PHONE, False)),
            quiet_hours=QuietHours(1320, 420),
            discreet=True,
            referred_by_id=new_id(),
            relationship=Relationship.INTERNAL_COLLEAGUE,
        ),
        status=Lifecycle.ACTIVE,
        updated_at=T0 + timedelta(hours=1),
        updated_by="bea",
        version=7,
        last_purchase_at=T0 - timedelta(days=3),
        last_interaction_at=T0 - timedelta(days=1),
    )


def write_first_layout(path: Path, contacts: list[Contact]) -> None:
    """A file as the first release left it: its schema, its rows and documents."""
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
        for c in contacts:
            doc = to_document(c)
            row = {
                **{name: doc[name] for name in FIRST_LAYOUT_COLUMNS},
                **query_keys(c),
                "doc": json.dumps(doc),
            }
            conn.execute(
                f"INSERT INTO contacts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            conn.executemany(
                "INSERT INTO contact_emails (email, contact_id) VALUES (?, ?)",
                [(e, c.id) for e in c.details.emails],
            )
            conn.executemany(
                "INSERT INTO contact_tags (tag, contact_id) VALUES (?, ?)",
                [(t, c.id) for t in c.details.tags],
            )
    conn.close()


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[SqliteContactStore]:
    store = SqliteContactStore(tmp_path / "contacts.db", event_codec.encode, ManualClock(T0))
    try:
        yield store
    finally:
        await store.close()


async def test_a_file_of_the_first_release_opens_migrated_with_every_contact(
    tmp_path: Path,
) -> None:
    path = tmp_path / "contacts.db"
    plain, full = a_contact(created_at=T0 - timedelta(hours=1)), worn()
    merged = a_contact("Merged Away", merged_into_id=plain.id, version=2)
    write_first_layout(path, [plain, full, merged])

    store = SqliteContactStore(path, event_codec.encode, ManualClock(T0))
    try:
        for c in (plain, full, merged):
            assert await store.get(c.id) == c
        assert await store.list(ContactFilter(), None, 10) == [plain, full]
        assert await store.list(ContactFilter(owner_id="bea", tag="vip"), None, 10) == [full]
        assert await store.list(
            ContactFilter(updated_since=T0 + timedelta(minutes=1)), None, 9
        ) == [full]
        assert await store.search(ContactSearch(name_prefix="zez"), None, 10) == [full]
        assert await store.lapsed(T0, 10) == [full]
        assert await store.holder_of_email("z@example.org") == full.id
    finally:
        await store.close()
    assert_migrated(path, SCHEMA_VERSION)


async def test_the_first_releases_document_as_written_reads_back(tmp_path: Path) -> None:
    """Pinned to bytes a first-release file holds, not to today's encoder of that format."""
    path = tmp_path / "contacts.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
        conn.execute(
            "INSERT INTO contacts VALUES ('a5e6bc88-926d-4a0c-a58a-1d3b558c93d6', 1, ?,"
            " 'NEVER_PURCHASED', 1, '', '', 'PERSON', 'EXTERNAL_CUSTOMER', 'seeded contact 0',"
            " '', '2025-01-01T00:00:00+00:00', '2025-01-01T00:00:00+00:00', NULL)",
            (FIRST_LAYOUT_CONTACT,),
        )
    conn.close()

    store = SqliteContactStore(path, event_codec.encode, ManualClock(T0))
    try:
        found = await store.get("a5e6bc88-926d-4a0c-a58a-1d3b558c93d6")
        listed = await store.list(ContactFilter(), None, 10)
    finally:
        await store.close()

    assert found is not None
    assert found.details.display_name == "Seeded Contact 0"
    assert found.details.emails == ("seed-0000000@bench.example",)
    assert found.created_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert found.created_by == found.updated_by == "bench"
    assert listed == [found]


async def test_a_file_from_a_newer_release_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "contacts.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(RuntimeError, match="newer release"):
        SqliteContactStore(path, event_codec.encode, ManualClock(T0))


async def test_every_field_reads_back_from_the_compact_row(opened: SqliteContactStore) -> None:
    full, never_updated = worn(), a_contact(updated_by="someone else")
    await opened.commit(Change(saves=[(full, 0), (never_updated, 0)]))

    assert await opened.get(full.id) == full
    assert await opened.get(never_updated.id) == never_updated


async def test_the_queries_read_through_indexes_without_scanning_the_table(
    opened: SqliteContactStore,
) -> None:
    """Sorting in a temporary b-tree is left only where it was before this layout: a tag's
    contacts, a status's, several teams' and a scoped name search are sorted as found."""
    issued: list[str] = []
    opened._conn.set_trace_callback(issued.append)
    opened._writer.conn.set_trace_callback(issued.append)
    c = worn()
    await opened.commit(Change(saves=[(c, 0)]))
    await opened.commit(Change(saves=[(replace(c, version=8), 7)]))
    await opened.get(c.id)
    cursor = Cursor(T0, c.id)
    for f in (
        ContactFilter(),
        ContactFilter(owner_id="bea"),
        ContactFilter(team="madrid"),
        ContactFilter(kind=ContactKind.PERSON),
        ContactFilter(updated_since=T0),
        ContactFilter(tag="vip"),
        ContactFilter(status=Lifecycle.ACTIVE),
        ContactFilter(teams=("madrid", "")),
    ):
        await opened.list(f, None, 10)
        await opened.list(f, cursor, 10)
    for q in (
        ContactSearch(name_prefix="zen"),
        ContactSearch(email="z@example.org"),
        ContactSearch(phone="+34699123456"),
        ContactSearch(name_prefix="zen", teams=("madrid",)),
    ):
        await opened.search(q, None, 10)
        await opened.search(q, cursor, 10)
    await opened.lapsed(T0, 10)

    scans, sorts = [], []
    for sql in dict.fromkeys(issued):
        if sql.split()[0] not in ("SELECT", "UPDATE", "DELETE") or " contact" not in sql:
            continue
        for row in opened._conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
            detail = str(row[3])
            if detail.startswith("SCAN") and "USING" not in detail:
                scans.append(sql)
            if "TEMP B-TREE" in detail:
                sorts.append(sql)
    assert scans == []
    known = ("FROM contact_tags", "c.status = '", "c.team IN (")
    assert [s for s in sorts if not any(k in s for k in known)] == [], sorts
    assert len(issued) > 30


async def test_a_contact_takes_at_most_a_kilobyte(tmp_path: Path) -> None:
    """Issue 13's budget, indexes included: a name and an email each, as the bench seeds them,
    written with the indexes maintained as rows arrive."""
    path = tmp_path / "contacts.db"
    count = 3_000
    store = SqliteContactStore(path, event_codec.encode, ManualClock(T0), synchronous="OFF")
    try:
        for start in range(0, count, 100):
            contacts = [
                (
                    a_contact(
                        f"Seeded Contact {i}",
                        created_at=T0 + timedelta(seconds=i),
                        updated_at=T0 + timedelta(seconds=i),
                    ),
                    0,
                )
                for i in range(start, start + 100)
            ]
            await store.commit(Change(saves=contacts))
        await store.scrub()  # checkpoints the WAL into the file
    finally:
        await store.close()

    per_contact = path.stat().st_size / count
    assert per_contact <= 1_000, f"{per_contact:.0f} B per contact"


async def test_a_scoped_search_by_email_or_phone_is_found_by_the_key_not_by_the_team(
    opened: SqliteContactStore,
) -> None:
    """An agent's team may hold a million contacts: a search by email or phone must go to the
    one contact by its key (it walked the team's index once: 140 ms a search on 1M)."""
    issued: list[str] = []
    opened._conn.set_trace_callback(issued.append)
    await opened.search(ContactSearch(email="z@example.org", teams=("madrid", "")), None, 10)
    await opened.search(ContactSearch(phone="+34699123456", teams=("madrid", "")), None, 10)
    opened._conn.set_trace_callback(None)
    for sql in issued:
        plan = " | ".join(str(r[3]) for r in opened._conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "contacts_by_team" not in plan, plan
        assert "PRIMARY KEY" in plan, plan
