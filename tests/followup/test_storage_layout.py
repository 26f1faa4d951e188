"""The follow-up SQLite file's layout: what it costs on disk, that every query is served by an
index, and that a file written by an older release (the first, or layout 1) opens, migrated,
with its data intact."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from followup.adapters import documents, event_codec
from followup.adapters.documents import iso
from followup.adapters.sqlite_store import COUNT_OPEN, SCHEMA_VERSION, SqlitePromiseStore
from followup.domain import lifecycle, notices
from followup.domain.model import Channel, Evidence, Priority, Promise, PromiseKind, Status
from followup.domain.reminders import (
    DeliveryAttempt,
    NoticeReason,
    NoticeRecord,
    NoticeTemplate,
    Outcome,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    delivery,
    plan,
)
from followup.metrics import PromiseGauges
from followup.ports import Change, OpenCount, PromiseFilter
from promesa.clock import ManualClock
from promesa.ids import new_id
from promesa.pagination import Cursor
from tests.support import assert_migrated

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
POLICY = ReminderPolicy()

# The first release's schema (layout 0), as it created the file: kept here verbatim, so the
# migration is tested against what is really on disk out there.
FIRST_LAYOUT = """
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
# A promise and a reminder exactly as the first release wrote them (copied from a file it made).
FIRST_LAYOUT_PROMISE = (
    '{"id": "bda31c6f-0aeb-48b4-a648-3cdb19bd117f", "contact_id": "seed-contact-000000",'
    ' "text": "Call back with the delivery date", "kind": "CALL_BACK", "owner_id": "agent-000",'
    ' "team": "team-00", "created_by": "bench", "due_at": "2026-12-31T22:18:08.189860+00:00",'
    ' "created_at": "2026-12-01T22:18:08.189860+00:00", "channel": "PHONE", "priority":'
    ' "NORMAL", "source_interaction_id": "", "follows_promise_id": "", "status": "OPEN",'
    ' "cancel_reason": "", "kept_at": null, "kept_on_time": false, "evidence": ["", ""],'
    ' "customer_confirmed": false, "confirmed_at": null, "satisfaction": 0, "handoff_count": 0,'
    ' "renegotiation_count": 0, "paused_total": 0.0, "paused_at": null, "escalated_at": null,'
    ' "erased_at": null, "overdue_noted_for": null, "history": [["bench",'
    ' "2026-12-01T22:18:08.189860+00:00", "CREATED", "", "", "2026-12-31T22:18:08.189860Z"]],'
    ' "version": 1, "updated_at": "2026-12-01T22:18:08.189860+00:00", "updated_by": "bench"}'
)
FIRST_LAYOUT_REMINDER = (
    '{"id": "96339ce1-72d6-4f87-bad8-96725fb9a38c", "promise_id":'
    ' "bda31c6f-0aeb-48b4-a648-3cdb19bd117f", "contact_id": "seed-contact-000000", "kind":'
    ' "BEFORE_DUE_24H", "recipient_id": "agent-000", "owner_id": "agent-000", "scheduled_at":'
    ' "2026-12-30T22:18:08.189860+00:00", "next_attempt_at": "2026-12-30T22:18:08.189860+00:00",'
    ' "remaining": ["nats"], "attempts": [], "outcome": "PENDING", "rounds": 0, "announced":'
    ' false, "notice": null}'
)

# Layout 1's schema (compact rows; a promise's priority in its doc, absent when NORMAL), as it
# created the file: kept verbatim, so its upgrade is tested against what is on disk out there.
LAYOUT_1 = """
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
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS promises_by_due ON promises (due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_owner ON promises (owner_id, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_team ON promises (team, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_contact ON promises (contact_id, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_status ON promises (status, due_us, id);
CREATE INDEX IF NOT EXISTS promises_by_created ON promises (created_us);
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
# An URGENT promise's row exactly as layout 1 wrote it (made by that release's row codec).
LAYOUT_1_URGENT_ROW = (
    "INSERT INTO promises VALUES (X'0f5e3c1a6b2d4e8f9a7c1d2e3f4a5b6c', 1,"
    " X'5a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d', 'ana', 'madrid', 'OPEN', 'SEND_INFORMATION',"
    " 1772460000000000, NULL, 1772442000000000, ?)"
)
LAYOUT_1_URGENT_DOC = (
    '{"text":"Send the signed quote","created_by":"ana","channel":"EMAIL","priority":"URGENT",'
    '"history":[["ana",1772442000000000,"CREATED","","","2026-03-02T14:00:00Z"]]}'
)


def a_promise(
    promise_id: str | None = None, due_in: timedelta = 5 * HOUR, **fields: object
) -> Promise:
    made = lifecycle.created(
        Promise(
            id=promise_id or new_id(),
            contact_id=new_id(),
            text="Call back with the delivery date",
            kind=PromiseKind.CALL_BACK,
            owner_id="ana",
            team="madrid",
            created_by="ana",
            due_at=T0 + due_in,
            created_at=T0,
            channel=Channel.PHONE,
        )
    )
    return replace(made, **fields)  # type: ignore[arg-type]


def planned(p: Promise) -> list[ReminderDelivery]:
    return plan(p, p.created_at, POLICY, "", new_id)


def write_first_layout(
    path: Path,
    promises: list[Promise],
    reminders: list[tuple[ReminderDelivery, str | None, datetime | None]],
) -> None:
    """A file as the first release left it: its schema, its rows and documents; a reminder
    with a token is claimed, its row's next attempt the lease's end."""
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
        for p in promises:
            conn.execute(
                "INSERT INTO promises (id, version, doc, contact_id, owner_id, team, status, kind,"
                " due_at, paused_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    p.id,
                    p.version,
                    json.dumps(documents.promise_doc(p)),
                    p.contact_id,
                    p.owner_id,
                    p.team,
                    p.status.value,
                    p.kind.value,
                    iso(p.due_at),
                    iso(p.paused_at) if p.paused_at else None,
                    iso(p.created_at),
                ),
            )
        for r, token, lease_end in reminders:
            next_at = lease_end or r.next_attempt_at
            conn.execute(
                "INSERT INTO reminders (id, promise_id, owner_id, outcome, scheduled_at,"
                " next_attempt_at, lease_token, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.id,
                    r.promise_id,
                    r.owner_id,
                    r.outcome.value,
                    iso(r.scheduled_at),
                    iso(next_at) if next_at else None,
                    token,
                    json.dumps(documents.delivery_doc(r)),
                ),
            )
    conn.close()


def write_layout_1(path: Path, promises: list[Promise]) -> None:
    """A file as layout 1 left it: its schema, and each promise's row with its priority in
    the doc (unless NORMAL) instead of a column of its own."""
    with sqlite3.connect(path) as conn:
        conn.executescript(LAYOUT_1)
        conn.execute("PRAGMA user_version = 1")
        for p in promises:
            row = documents.promise_row(p)
            priority = row.pop("priority")
            if priority != Priority.NORMAL.value:
                doc = {**json.loads(row["doc"]), "priority": priority}
                row["doc"] = json.dumps(doc, separators=(",", ":"))
            names = ", ".join(row)
            conn.execute(
                f"INSERT INTO promises ({names}) VALUES ({', '.join(':' + n for n in row)})", row
            )
        conn.execute(LAYOUT_1_URGENT_ROW, (LAYOUT_1_URGENT_DOC,))
    conn.close()


def layout_1_urgent_promise() -> Promise:
    """The promise of `LAYOUT_1_URGENT_ROW`, as it was made."""
    return lifecycle.created(
        Promise(
            id="0f5e3c1a-6b2d-4e8f-9a7c-1d2e3f4a5b6c",
            contact_id="5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
            text="Send the signed quote",
            kind=PromiseKind.SEND_INFORMATION,
            owner_id="ana",
            team="madrid",
            created_by="ana",
            due_at=T0 + 5 * HOUR,
            created_at=T0,
            channel=Channel.EMAIL,
            priority=Priority.URGENT,
        )
    )


def query_plan(path: Path, sql: str, **args: object) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
    finally:
        conn.close()


def table_columns(path: Path, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return [tuple(row) for row in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


@pytest.fixture
async def opened(tmp_path: Path) -> AsyncIterator[SqlitePromiseStore]:
    store = SqlitePromiseStore(tmp_path / "followup.db", event_codec.encode, ManualClock(T0))
    try:
        yield store
    finally:
        await store.close()


# --- migration -----------------------------------------------------------------------------------


async def test_a_file_of_the_first_release_opens_migrated_with_every_promise_and_reminder(
    tmp_path: Path,
) -> None:
    # Given a file the first release wrote: open, kept and paused promises, pending, delivered
    # and claimed reminders, a customer notice, and a promise id that is not a UUID
    path = tmp_path / "followup.db"
    p1 = a_promise(due_in=2 * HOUR)
    p2 = lifecycle.keep(a_promise(due_in=3 * HOUR), Evidence(note="called"), "ana", T0)[0]
    p3 = a_promise(
        "legacy-7",
        4 * HOUR,
        paused_at=T0,
        status=Status.WAITING_ON_CUSTOMER,
        version=3,
        priority=Priority.URGENT,
    )
    pending = planned(p1)
    delivered = replace(
        delivery(p2, ReminderKind.AT_DUE, T0, "ana", POLICY, new_id()),
        next_attempt_at=None,
        remaining=(),
        outcome=Outcome.DELIVERED,
        rounds=1,
        announced=True,
        attempts=(DeliveryAttempt("nats", T0, True),),
    )
    claimed = delivery(p3, ReminderKind.ESCALATION, T0, "sofia", POLICY, new_id())
    notice = notices.schedule(p1, NoticeReason.PROMISE_MADE, T0, new_id())
    lease_end = T0 + timedelta(minutes=2)
    write_first_layout(
        path,
        [p1, p2, p3],
        [
            *((r, None, None) for r in pending),
            (delivered, None, None),
            (claimed, "token-1", lease_end),
            (notice, None, None),
        ],
    )

    # When the new release opens it
    store = SqlitePromiseStore(path, event_codec.encode, ManualClock(T0))
    try:
        # Then the rewrite has left the WAL (it would keep the file's size while it runs)
        assert path.with_name(path.name + "-wal").stat().st_size == 0
        # and every promise and delivery reads back equal, through every query
        for p in (p1, p2, p3):
            assert await store.get(p.id) == p
        assert await store.list(PromiseFilter(), None, 10) == [p1, p2, p3]
        assert await store.list(PromiseFilter(status=Status.KEPT), None, 10) == [p2]
        assert await store.of_contact(p1.contact_id) == [p1]
        assert await store.made_between(T0, T0 + HOUR) == [p1, p2, p3]
        assert set(await store.deliveries(p1.id, "", None, 10)) == {*pending, notice}
        assert await store.deliveries(p2.id, "", None, 10) == [delivered]
        assert await store.deliveries(p3.id, "ana", None, 10) == [claimed]
        # and the claim holds: not due again before its lease ends, then taken over
        assert await store.next_due() == T0
        assert [c.delivery for c in await store.claim_due(T0, T0 + HOUR, 10)] == [notice]
        assert await store.next_due() == lease_end
        [taken] = await store.claim_due(lease_end, lease_end + HOUR, 10)
        assert taken.delivery == claimed
        assert await store.renew_claims([taken], lease_end + HOUR) == {claimed.id}
    finally:
        await store.close()
    assert_migrated(path, SCHEMA_VERSION)


async def test_the_first_releases_documents_as_written_read_back(tmp_path: Path) -> None:
    """Pinned to bytes a first-release file holds, not to today's encoder of that format."""
    path = tmp_path / "followup.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(FIRST_LAYOUT)
        conn.execute(
            "INSERT INTO promises VALUES ('bda31c6f-0aeb-48b4-a648-3cdb19bd117f', 1, ?,"
            " 'seed-contact-000000', 'agent-000', 'team-00', 'OPEN', 'CALL_BACK',"
            " '2026-12-31T22:18:08.189860+00:00', NULL, '2026-12-01T22:18:08.189860+00:00')",
            (FIRST_LAYOUT_PROMISE,),
        )
        conn.execute(
            "INSERT INTO reminders VALUES ('96339ce1-72d6-4f87-bad8-96725fb9a38c',"
            " 'bda31c6f-0aeb-48b4-a648-3cdb19bd117f', 'agent-000', 'PENDING',"
            " '2026-12-30T22:18:08.189860+00:00', '2026-12-30T22:18:08.189860+00:00', NULL, ?)",
            (FIRST_LAYOUT_REMINDER,),
        )
    conn.close()

    store = SqlitePromiseStore(path, event_codec.encode, ManualClock(T0))
    try:
        p = await store.get("bda31c6f-0aeb-48b4-a648-3cdb19bd117f")
        [r] = await store.deliveries("", "agent-000", None, 10)
    finally:
        await store.close()

    assert p == documents.promise_from(json.loads(FIRST_LAYOUT_PROMISE))
    assert r == documents.delivery_from(json.loads(FIRST_LAYOUT_REMINDER))


async def test_opening_a_migrated_file_again_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "followup.db"
    p = a_promise()
    write_first_layout(path, [p], [(r, None, None) for r in planned(p)])
    for _ in range(2):
        store = SqlitePromiseStore(path, event_codec.encode, ManualClock(T0))
        try:
            assert await store.get(p.id) == p
            assert len(await store.deliveries(p.id, "", None, 10)) == len(planned(p))
        finally:
            await store.close()


async def test_a_layout_1_file_opens_with_each_priority_in_its_column_and_counted_by_index(
    tmp_path: Path,
) -> None:
    # Given a file of layout 1 with promises of every priority in two teams, open, waiting
    # (paused after their due time or before) and kept, and reminders
    path = tmp_path / "followup.db"
    a = a_promise
    promises = [
        a(team="bilbao", priority=Priority.LOW, text="Llamar a Begoña: 20 € de descuento"),
        a(team="bilbao", priority=Priority.NORMAL, due_in=HOUR),
        a(team="bilbao", priority=Priority.HIGH, due_in=HOUR),
        a(team="bilbao", priority=Priority.HIGH),
        a(team="porto", priority=Priority.URGENT, due_in=HOUR),
        a(
            team="porto",
            priority=Priority.URGENT,
            due_in=HOUR,
            status=Status.WAITING_ON_CUSTOMER,
            paused_at=T0 + 2 * HOUR,
        ),
        a(
            team="porto",
            priority=Priority.NORMAL,
            due_in=HOUR,
            status=Status.WAITING_ON_CUSTOMER,
            paused_at=T0,
        ),
        a(team="porto", priority=Priority.HIGH, status=Status.KEPT, kept_at=T0),
    ]
    write_layout_1(path, promises)
    urgent = layout_1_urgent_promise()
    reminders = planned(promises[0])
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO reminders (id, promise_id, contact_id, owner_id, kind, outcome,"
            " scheduled_us, next_attempt_us, remaining, doc) VALUES (:id, :promise_id,"
            " :contact_id, :owner_id, :kind, :outcome, :scheduled_us, :next_attempt_us,"
            " :remaining, :doc)",
            [documents.delivery_row(r) for r in reminders],
        )
    conn.close()

    # When the new release opens it
    clock = ManualClock(T0)
    store = SqlitePromiseStore(path, event_codec.encode, clock)
    try:
        # Then it is of this layout, with the table a new file has, and the WAL emptied
        assert_migrated(path, SCHEMA_VERSION)
        fresh = await fresh_file(tmp_path)
        assert table_columns(path, "promises") == table_columns(fresh, "promises")
        assert path.with_name(path.name + "-wal").stat().st_size == 0
        # and every promise reads back as it was, its priority in the column and not the doc
        for p in (*promises, urgent):
            assert await store.get(p.id) == p
        conn = sqlite3.connect(path)
        try:
            stored = conn.execute(
                "SELECT priority, count(*) FROM promises"
                " WHERE json_extract(doc, '$.priority') IS NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
        finally:
            conn.close()
        assert stored == [("HIGH", 3), ("LOW", 1), ("NORMAL", 2), ("URGENT", 3)]
        assert set(await store.deliveries(promises[0].id, "", None, 10)) == set(reminders)
        # and the open ones are counted by team and priority, from the new index alone
        counts = await store.count_open(T0 + 2 * HOUR)
        assert sorted(counts, key=lambda c: (c.team, c.priority)) == [
            OpenCount("bilbao", Priority.HIGH, 2, 1),
            OpenCount("bilbao", Priority.LOW, 1, 0),
            OpenCount("bilbao", Priority.NORMAL, 1, 1),
            OpenCount("madrid", Priority.URGENT, 1, 0),
            OpenCount("porto", Priority.NORMAL, 1, 0),
            OpenCount("porto", Priority.URGENT, 2, 2),
        ]
        assert query_plan(path, COUNT_OPEN, now=0) == [
            "SCAN promises USING COVERING INDEX promises_open_counts"
        ]
        clock.advance(2 * HOUR)
        await PromiseGauges(store, clock)()
        labels = {"team": "porto", "priority": "urgent"}
        assert REGISTRY.get_sample_value("promesa_followup_promises_open", labels) == 2
        assert REGISTRY.get_sample_value("promesa_followup_promises_overdue", labels) == 2
    finally:
        await store.close()

    # and opening it again changes nothing
    store = SqlitePromiseStore(path, event_codec.encode, clock)
    try:
        assert await store.get(urgent.id) == urgent
        assert len(await store.count_open(T0)) == 6
    finally:
        await store.close()


async def fresh_file(tmp_path: Path) -> Path:
    """A file this release laid out from nothing."""
    path = tmp_path / "fresh.db"
    await SqlitePromiseStore(path, event_codec.encode, ManualClock(T0)).close()
    return path


async def test_a_file_from_a_newer_release_is_refused_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "followup.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(RuntimeError, match="newer release"):
        SqlitePromiseStore(path, event_codec.encode, ManualClock(T0))


# --- the compact rows ----------------------------------------------------------------------------


async def test_uuid_and_other_ids_read_back_as_they_were_given(
    opened: SqlitePromiseStore,
) -> None:
    """UUIDs are stored as 16 bytes, other ids as text; both are found, listed and paged."""
    upper = "BDA31C6F-0AEB-48B4-A648-3CDB19BD117F"  # not canonical: kept as text
    promises = [
        a_promise(new_id(), HOUR, owner_id=new_id()),
        a_promise("p-text", HOUR),
        a_promise(upper, HOUR),
        a_promise(new_id(), HOUR),
    ]
    await opened.commit(
        Change(saves=[(p, 0) for p in promises], replans={p.id: planned(p) for p in promises})
    )

    for p in promises:
        assert await opened.get(p.id) == p
        assert await opened.list(
            PromiseFilter(owner_id=p.owner_id, contact_id=p.contact_id), None, 5
        ) == [p]
        assert {r.promise_id for r in await opened.deliveries(p.id, "", None, 10)} == {p.id}
    walked: list[str] = []
    after: Cursor | None = None
    while page := await opened.list(PromiseFilter(), after, 1):
        walked.append(page[0].id)
        after = Cursor(page[0].due_at, page[0].id)
    assert sorted(walked) == sorted(p.id for p in promises)


async def test_a_claimed_reminder_keeps_its_own_next_attempt_beside_the_lease(
    opened: SqlitePromiseStore,
) -> None:
    p = a_promise()
    [first, *_] = reminders = planned(p)
    await opened.commit(Change(saves=[(p, 0)], replans={p.id: reminders}))

    [claim] = await opened.claim_due(first.scheduled_at, first.scheduled_at + HOUR, 1)

    assert claim.delivery == first
    assert first in await opened.deliveries(p.id, "", None, 10)
    assert await opened.next_due() == min(first.scheduled_at + HOUR, reminders[1].scheduled_at)


async def test_every_field_of_a_worn_promise_and_delivery_reads_back(
    opened: SqlitePromiseStore,
) -> None:
    p = a_promise(
        version=4,
        priority=Priority.HIGH,
        source_interaction_id=new_id(),
        follows_promise_id=new_id(),
        status=Status.CANCELLED,
        cancel_reason="customer withdrew",
        kept_at=T0,
        kept_on_time=True,
        evidence=Evidence(new_id(), "a note"),
        customer_confirmed=True,
        confirmed_at=T0 + HOUR,
        satisfaction=4,
        handoff_count=2,
        renegotiation_count=1,
        paused_total=timedelta(minutes=7, microseconds=3),
        paused_at=T0,
        escalated_at=T0,
        erased_at=T0,
        overdue_noted_for=T0,
        updated_at=None,
        updated_by="bea",
    )
    r = replace(
        notices.schedule(p, NoticeReason.DUE_DATE_RENEGOTIATED, T0, new_id()),
        recipient_id="someone-else",
        attempts=(DeliveryAttempt("smtp", T0, False, "refused"),),
        rounds=2,
        announced=True,
        notice=NoticeRecord(
            NoticeReason.PROMISE_MADE,
            renegotiation=1,
            channel=Channel.EMAIL,
            template=NoticeTemplate.NEW_DUE_DATE,
            due_at=T0,
            quiet_hours_end_at=T0 + HOUR,
            dropped_reason="quiet",
        ),
    )
    await opened.commit(Change(saves=[(p, 0)], added=[r]))

    assert await opened.get(p.id) == p
    assert await opened.deliveries(p.id, "", None, 5) == [r]


# --- every query through an index ----------------------------------------------------------------


def full_scans_and_sorts(conn: sqlite3.Connection, statements: list[str]) -> list[str]:
    """The statements on the follow-up's own tables whose plan reads a whole table (not an
    index in order) or sorts in a temporary b-tree."""
    found = []
    for sql in dict.fromkeys(statements):
        words = sql.split()
        if words[0] not in ("SELECT", "UPDATE", "DELETE"):
            continue
        if not {"promises", "reminders", "contact_profiles", "contact_fates"} & set(words):
            continue
        for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}"):
            detail = str(row[3])
            if "TEMP B-TREE" in detail or (detail.startswith("SCAN") and "USING" not in detail):
                found.append(f"{detail}: {sql}")
    return found


async def test_every_query_of_the_store_is_served_by_an_index(
    opened: SqlitePromiseStore,
) -> None:
    issued: list[str] = []
    opened._conn.set_trace_callback(issued.append)
    opened._writer.conn.set_trace_callback(issued.append)
    p = a_promise(owner_id=new_id())
    reminders = planned(p)
    await opened.commit(Change(saves=[(p, 0)], replans={p.id: reminders}))
    other = a_promise()
    await opened.commit(Change(saves=[(other, 0)], replans={other.id: planned(other)}))
    waiting = replace(other, version=2, status=Status.WAITING_ON_CUSTOMER, paused_at=T0)
    await opened.commit(Change(saves=[(waiting, 1)], replans={other.id: planned(waiting)}))
    await opened.get(p.id)
    await opened.get_many([p.id, new_id()])
    cursor = Cursor(T0, p.id)
    for f in (
        PromiseFilter(),
        PromiseFilter(owner_id=p.owner_id),
        PromiseFilter(team=p.team),
        PromiseFilter(contact_id=p.contact_id),
        PromiseFilter(status=Status.OPEN),
        PromiseFilter(due_after=T0, due_before=T0 + HOUR),
        PromiseFilter(overdue_at=T0),
        PromiseFilter(owner_id=p.owner_id, status=Status.OPEN, overdue_at=T0),
    ):
        await opened.list(f, None, 10)
        await opened.list(f, cursor, 10)
    await opened.of_contact(p.contact_id)
    await opened.open_of_kind(p.contact_id, p.kind)
    await opened.made_between(T0, T0 + HOUR)
    await opened.made_between(T0, None)  # (None, None) reads every promise: a table scan
    await opened.profile(p.contact_id)
    await opened.fate(p.contact_id)
    await opened.duplicates_of(p.contact_id)
    for promise_id, owner_id in ((p.id, ""), ("", p.owner_id), ("", ""), (p.id, p.owner_id)):
        await opened.deliveries(promise_id, owner_id, None, 10)
        await opened.deliveries(promise_id, owner_id, cursor, 10)
    await opened.next_due()
    claims = await opened.claim_due(T0 + 10 * HOUR, T0 + 11 * HOUR, 10)
    await opened.renew_claims(claims, T0 + 12 * HOUR)
    [first, *rest] = claims
    await opened.commit(Change(progressed=[first], completed=rest))

    assert len(issued) > 30
    # Known, and older than this layout: overdue promises of every owner are gathered from
    # two ranges of `promises_by_status` and sorted by due time.
    assert [
        plan
        for plan in full_scans_and_sorts(opened._conn, issued)
        if "(status = 'OPEN' AND due_us < " not in plan
    ] == []


async def test_the_gauges_count_from_an_index_alone_in_its_order(
    opened: SqlitePromiseStore,
) -> None:
    """No table row, no JSON and no sort, however many promises are open: at a million, the
    count read every row and doc (2.3 s) before `promises_open_counts`."""
    p = a_promise(priority=Priority.HIGH)
    await opened.commit(Change(saves=[(p, 0)]))

    plan = query_plan(opened._path, COUNT_OPEN, now=0)

    assert plan == ["SCAN promises USING COVERING INDEX promises_open_counts"]
    assert await opened.count_open(T0) == [OpenCount("madrid", Priority.HIGH, 1, 0)]


# --- bytes on disk -------------------------------------------------------------------------------


async def test_an_open_promise_with_its_reminders_takes_at_most_one_and_a_half_kilobytes(
    tmp_path: Path,
) -> None:
    """Issue 13's budget, indexes included, written as the service writes: a commit per
    promise with the reminders the policy plans, indexes maintained as rows arrive."""
    path = tmp_path / "followup.db"
    count = 3_000
    store = SqlitePromiseStore(path, event_codec.encode, ManualClock(T0), synchronous="OFF")
    try:
        for start in range(0, count, 100):
            change = Change()
            for i in range(start, start + 100):
                p = a_promise(
                    due_in=timedelta(days=30, seconds=i * 7919 % 31_536_000),
                    owner_id=f"agent-{i % 500:03d}",
                    team=f"team-{i % 20:02d}",
                )
                change.saves.append((p, 0))
                change.replans[p.id] = planned(p)  # 24 h and 1 h before, and at due
                assert len(change.replans[p.id]) == 3
            await store.commit(change)
        await store.scrub()  # checkpoints the WAL into the file
    finally:
        await store.close()

    per_promise = path.stat().st_size / count
    assert per_promise <= 1_500, f"{per_promise:.0f} B per open promise"
