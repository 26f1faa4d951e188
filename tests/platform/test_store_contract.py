"""One contract for the store bases every service builds on, run against every backend.

`promesa.sqlite_store.SqliteStore` and `promesa.mongo_store.MongoStore` own the outbox (and the
claims by which replicas' relays share it), the inbox (and its pruning), idempotency keys,
versioned saves and dead letters (kept whole, to be listed and replayed); the services' own
contract suites test only their domain methods. `PlatformStoreContract` holds the behaviour and
each backend subclasses it with a `create_store()` (eventsourcing style), so the two keep the
same behaviour. The stores under test are the smallest a service could write on those bases: one
table (collection) of notes, saved through `_save_versioned`, committed through `_write`
(`_write`). SQLite always runs, on a real file; MongoDB runs when CRM_TEST_MONGODB_URI names a
replica set (transactions need one), each test in a database of its own, dropped afterwards.
"""

from __future__ import annotations

import abc
import asyncio
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
from pymongo import AsyncMongoClient

from promesa import mongo as mdb
from promesa.clock import Clock, ManualClock
from promesa.events import IncomingEvent, OutgoingEvent
from promesa.mongo_store import MongoStore
from promesa.sqlite_store import SqliteStore
from promesa.storage import (
    AlreadyHandledError,
    DeadLetter,
    DuplicateRequestError,
    IdempotencyKey,
    InboxKey,
    VersionConflictError,
)

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
NOTES = "notes"

# The outbox and dead letters as the release before claims and whole dead letters made them.
OLD_PLATFORM_SCHEMA = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    time TEXT NOT NULL,
    ce_subject TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    error TEXT NOT NULL,
    deliveries INTEGER NOT NULL,
    recorded_at TEXT NOT NULL
);
"""


# ---------------------------------------------------------------------------------------------
# The smallest store a service could write on each base


@dataclass(frozen=True)
class Note:
    id: str
    text: str
    version: int = 1


@dataclass(frozen=True)
class NoteChange:
    """What a use case commits: saves (each with the version it was read at), the events they
    cause, the inbox row of the event being handled and the idempotency key of a create."""

    saves: Sequence[tuple[Note, int]] = ()
    events: Sequence[OutgoingEvent] = ()
    handled: InboxKey | None = None
    idempotency: IdempotencyKey | None = None
    # Raised inside the transaction after the saves: a write that fails half-way.
    fails_with: Exception | None = None


class NoteStore(Protocol):
    """The platform part of every service's store, plus the notes to observe it by."""

    async def commit(self, change: NoteChange) -> None: ...
    async def get(self, note_id: str) -> Note | None: ...
    async def find_request(self, request_id: str) -> IdempotencyKey | None: ...
    async def pending_events(self, limit: int) -> Sequence[tuple[int, OutgoingEvent]]: ...
    def hold_new_events(self, holder: str | None, lease: timedelta) -> None: ...
    async def held_events(
        self, holder: str, after: int, limit: int
    ) -> Sequence[tuple[int, OutgoingEvent]]: ...
    async def claim_events(
        self, holder: str, limit: int, lease: timedelta
    ) -> Sequence[tuple[int, OutgoingEvent]]: ...
    async def release_events(self, holder: str) -> None: ...
    async def mark_events_sent(self, seqs: Sequence[int]) -> None: ...
    async def outbox_backlog(self) -> int: ...
    async def prune_inbox(self, before: datetime, limit: int) -> int: ...
    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None: ...
    async def dead_letters(self) -> list[dict[str, object]]: ...
    async def list_dead_letters(
        self, consumer: str | None, after_id: str | None, limit: int
    ) -> Sequence[DeadLetter]: ...
    async def dead_letter(self, letter_id: str) -> DeadLetter | None: ...
    async def mark_dead_letter_replayed(self, letter_id: str, at: datetime) -> None: ...
    async def forget_dead_letters(self, contact_id: str) -> None: ...
    async def scrub(self) -> None: ...
    async def close(self) -> None: ...


NOTES_SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    version INTEGER NOT NULL
) WITHOUT ROWID;
"""


class SqliteNoteStore(SqliteStore):
    def __init__(self, path: Path, clock: Clock) -> None:
        super().__init__(path, NOTES_SCHEMA, clock)

    async def commit(self, change: NoteChange) -> None:
        def apply(conn: sqlite3.Connection) -> None:
            for note, expected in change.saves:
                row = {"id": note.id, "text": note.text, "version": note.version}
                self._save_versioned(conn, NOTES, row, expected)
            if change.fails_with is not None:
                raise change.fails_with

        await self._write(
            apply, change.events, handled=change.handled, idempotency=change.idempotency
        )

    async def get(self, note_id: str) -> Note | None:
        row = self._conn.execute(
            "SELECT id, text, version FROM notes WHERE id = ?", (note_id,)
        ).fetchone()
        return Note(row["id"], row["text"], row["version"]) if row else None


def as_is(event: OutgoingEvent) -> OutgoingEvent:
    """The notes' events are encoded already: the contract is about what the outbox keeps."""
    return event


class MongoNoteStore(MongoStore[OutgoingEvent]):
    APP_NAME = "promesa-platform-contract"
    INDEXES: ClassVar[dict[str, list[Any]]] = {NOTES: []}

    def _collections(self, database: mdb.Database) -> None:
        self._notes = database[NOTES]

    async def commit(self, change: NoteChange) -> None:
        events = [self._encode(e) for e in change.events]

        async def write(session: mdb.Session) -> None:
            for note, expected in change.saves:
                doc = {"text": note.text, "version": note.version}
                await self._save_versioned(self._notes, session, note.id, doc, expected)
            if change.fails_with is not None:
                raise change.fails_with

        await self._write(events, write, handled=change.handled, idempotency=change.idempotency)

    async def get(self, note_id: str) -> Note | None:
        doc = await self._notes.find_one({"_id": note_id})
        return Note(str(doc["_id"]), doc["text"], doc["version"]) if doc else None


# ---------------------------------------------------------------------------------------------
# Building blocks of the tests

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(event_id: str, *, about: str = "n-1", data: bytes = b"\x08\x01") -> OutgoingEvent:
    return OutgoingEvent(
        event_id=event_id,
        subject=f"crm.notes.written.{about}",
        type="crm.notes.v1.NoteWritten",
        source="promesa/notes",
        time=START,
        ce_subject=about,
        data=data,
    )


def creating(
    note: Note,
    *events: OutgoingEvent,
    handled: InboxKey | None = None,
    idempotency: IdempotencyKey | None = None,
) -> NoteChange:
    return NoteChange([(note, 0)], events, handled, idempotency)


def updating(
    note: Note, expected: int, *events: OutgoingEvent, handled: InboxKey | None = None
) -> NoteChange:
    return NoteChange([(note, expected)], events, handled)


def request(request_id: str, resource_id: str, fingerprint: str = "digest-1") -> IdempotencyKey:
    return IdempotencyKey(request_id, "create", fingerprint, resource_id)


def incoming(event_id: str, delivery: int, *, consumer_subject: str = "recorded") -> IncomingEvent:
    return IncomingEvent(
        event_id=event_id,
        type="crm.interactions.v1.InteractionRecorded",
        subject=f"crm.interactions.{consumer_subject}.c-1",
        source="promesa/interactions",
        ce_subject="i-1",
        time="2026-03-02T09:00:00Z",
        data=b"\x00\xffnot a proto",
        delivery=delivery,
    )


async def pending_ids(store: NoteStore, limit: int = 100) -> list[str]:
    return [e.event_id for _, e in await store.pending_events(limit)]


async def claimed_ids(store: NoteStore, holder: str, limit: int = 100) -> list[str]:
    return [e.event_id for _, e in await store.claim_events(holder, limit, LEASE)]


LEASE = timedelta(seconds=30)


async def outcomes(*attempts: Any) -> list[object]:
    """Runs the attempts at once; each outcome is None (committed) or the error raised."""
    return list(await asyncio.gather(*attempts, return_exceptions=True))


# ---------------------------------------------------------------------------------------------
# The contract


class PlatformStoreContract(abc.ABC):
    """What every store base does; subclasses only create and dispose of stores."""

    @abc.abstractmethod
    async def create_store(self, tmp_path: Path, clock: ManualClock) -> NoteStore: ...

    async def dispose_store(self, store: NoteStore) -> None:
        await store.close()

    @abc.abstractmethod
    async def open_twin(self, store: NoteStore, tmp_path: Path, clock: ManualClock) -> NoteStore:
        """A second store on the same database, as another replica of the service opens it."""

    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock(START)

    @pytest.fixture
    async def store(self, tmp_path: Path, clock: ManualClock) -> AsyncIterator[NoteStore]:
        store = await self.create_store(tmp_path, clock)
        try:
            yield store
        finally:
            await self.dispose_store(store)

    # --- the transactional outbox ------------------------------------------------------------

    async def test_a_state_change_and_its_events_are_committed_together(
        self, store: NoteStore
    ) -> None:
        note = Note("n-1", "call back on Monday")

        await store.commit(creating(note, event("e-1"), event("e-2")))

        assert await store.get("n-1") == note
        assert await pending_ids(store) == ["e-1", "e-2"]
        assert await store.outbox_backlog() == 2

    async def test_the_outbox_keeps_the_order_of_the_commits(self, store: NoteStore) -> None:
        await store.commit(creating(Note("n-1", "a"), event("e-1")))
        await store.commit(creating(Note("n-2", "b"), event("e-2"), event("e-3")))
        await store.commit(updating(Note("n-1", "a2", 2), 1, event("e-4")))

        pending = await store.pending_events(10)

        assert [e.event_id for _, e in pending] == ["e-1", "e-2", "e-3", "e-4"]
        seqs = [seq for seq, _ in pending]
        assert all(isinstance(seq, int) for seq in seqs)
        assert seqs == sorted(set(seqs)), "sequence numbers increase in commit order"

    async def test_a_change_without_events_leaves_the_outbox_alone(self, store: NoteStore) -> None:
        await store.commit(creating(Note("n-1", "quiet")))

        assert await store.get("n-1") == Note("n-1", "quiet")
        assert await store.outbox_backlog() == 0
        assert await store.pending_events(10) == []

    async def test_pending_events_reads_at_most_the_limit_oldest_first(
        self, store: NoteStore
    ) -> None:
        for i in range(1, 6):
            await store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i}")))

        assert await pending_ids(store, 2) == ["e-1", "e-2"]
        assert await pending_ids(store, 0) == []
        assert await store.outbox_backlog() == 5, "reading does not consume"

    async def test_events_marked_sent_leave_the_outbox_and_the_rest_keep_their_order(
        self, store: NoteStore
    ) -> None:
        for i in range(1, 6):
            await store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i}")))
        first_two = [seq for seq, _ in await store.pending_events(2)]

        await store.mark_events_sent(first_two)

        assert await store.outbox_backlog() == 3
        assert await pending_ids(store) == ["e-3", "e-4", "e-5"]

    async def test_marking_events_sent_again_or_none_at_all_changes_nothing(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), event("e-1"), event("e-2")))
        (first, _), _ = await store.pending_events(2)
        await store.mark_events_sent([first])

        # A relay that restarted may mark the same batch again
        await store.mark_events_sent([first])
        await store.mark_events_sent([])

        assert await pending_ids(store) == ["e-2"]

    async def test_an_event_id_already_waiting_is_not_written_twice(self, store: NoteStore) -> None:
        first = event("e-1", data=b"first")
        await store.commit(creating(Note("n-1", "x"), first))

        # When a retried change carries the same event again, with a new one
        await store.commit(creating(Note("n-2", "y"), event("e-1", data=b"again"), event("e-2")))

        # Then the waiting row is kept as it was and the new event follows it
        assert await store.outbox_backlog() == 2
        (_, kept), (_, new) = await store.pending_events(10)
        assert kept == first
        assert new.event_id == "e-2"
        assert await store.get("n-2") == Note("n-2", "y"), "the state change itself is applied"

    async def test_the_same_event_twice_in_one_change_is_written_once(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), event("e-1"), event("e-1")))

        assert await pending_ids(store) == ["e-1"]

    async def test_concurrent_commits_each_land_once_in_the_outbox(self, store: NoteStore) -> None:
        changes = [creating(Note(f"n-{i}", "x"), event(f"e-{i}")) for i in range(8)]

        assert await outcomes(*(store.commit(c) for c in changes)) == [None] * 8

        pending = await store.pending_events(100)
        assert sorted(e.event_id for _, e in pending) == sorted(f"e-{i}" for i in range(8))
        seqs = [seq for seq, _ in pending]
        assert seqs == sorted(set(seqs))

    @pytest.mark.parametrize(
        "original",
        [
            pytest.param(
                OutgoingEvent(
                    event_id="evt-bytes",
                    subject="crm.notes.written.n-1",
                    type="crm.notes.v1.NoteWritten",
                    source="promesa/notes",
                    time=datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC),
                    ce_subject="n-1",
                    data=bytes(range(256)),
                ),
                id="every-byte-and-microseconds",
            ),
            pytest.param(
                OutgoingEvent(
                    event_id="evt-offset",
                    subject="crm.notes.written.n-1",
                    type="crm.notes.v1.NoteWritten",
                    source="promesa/notes",
                    time=datetime(2026, 3, 2, 14, 30, 0, 1, tzinfo=timezone(timedelta(hours=5.5))),
                    ce_subject="n-1",
                    data=b"",
                ),
                id="offset-and-empty-payload",
            ),
            pytest.param(
                OutgoingEvent(
                    event_id="evt-edges",
                    subject="crm.notes.written.ñ-1",
                    type="crm.notes.v1.NoteWritten",
                    source="promesa/notes",
                    time=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                    ce_subject="ñ-1",
                    data=b"\x00" * 64,
                ),
                id="calendar-end-and-non-ascii",
            ),
            pytest.param(
                OutgoingEvent(
                    event_id="evt-start",
                    subject="crm.notes.written.n-1",
                    type="crm.notes.v1.NoteWritten",
                    source="promesa/notes",
                    time=datetime(1, 1, 1, tzinfo=UTC),
                    ce_subject="n-1",
                    data=b"\xff",
                ),
                id="calendar-start",
            ),
        ],
    )
    async def test_an_outgoing_event_reads_back_from_the_outbox_unchanged(
        self, store: NoteStore, original: OutgoingEvent
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), original))

        ((_, read),) = await store.pending_events(1)

        assert read == original
        assert type(read.data) is bytes
        assert read.time.utcoffset() == original.time.utcoffset()
        assert read.headers() == original.headers()

    # --- claims: one relay publishes a row ---------------------------------------------------

    async def test_a_claim_takes_the_oldest_events_in_commit_order_up_to_the_limit(
        self, store: NoteStore
    ) -> None:
        for i in range(1, 6):
            await store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i}")))

        claimed = await store.claim_events("relay-a", 3, LEASE)

        assert [e.event_id for _, e in claimed] == ["e-1", "e-2", "e-3"]
        assert [seq for seq, _ in claimed] == [seq for seq, _ in await store.pending_events(3)]
        assert await store.claim_events("relay-a", 0, LEASE) == []

    async def test_a_claimed_event_stays_pending_until_it_is_marked_sent(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), event("e-1"), event("e-2")))

        ((seq, _),) = await store.claim_events("relay-a", 1, LEASE)

        assert await pending_ids(store) == ["e-1", "e-2"], "pending lists claimed rows too"
        assert await store.outbox_backlog() == 2
        await store.mark_events_sent([seq])
        assert await pending_ids(store) == ["e-2"]

    async def test_another_holder_gets_only_the_events_no_one_holds(self, store: NoteStore) -> None:
        for i in range(1, 5):
            await store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i}")))

        assert await claimed_ids(store, "relay-a", 2) == ["e-1", "e-2"]
        assert await claimed_ids(store, "relay-b") == ["e-3", "e-4"]
        assert await claimed_ids(store, "relay-c") == []

    async def test_a_holder_gets_its_own_claims_again_to_retry_a_failed_publish(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), event("e-1")))
        await claimed_ids(store, "relay-a")
        await store.commit(creating(Note("n-2", "x"), event("e-2")))

        assert await claimed_ids(store, "relay-a") == ["e-1", "e-2"]
        assert await claimed_ids(store, "relay-b") == []

    async def test_a_claim_that_ran_out_is_taken_over_and_one_that_did_not_is_not(
        self, store: NoteStore, clock: ManualClock
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), event("e-1")))
        await claimed_ids(store, "relay-dead")

        clock.advance(LEASE - timedelta(microseconds=1))
        assert await claimed_ids(store, "relay-b") == [], "the holder may still be publishing"

        clock.advance(timedelta(microseconds=1))
        assert await claimed_ids(store, "relay-b") == ["e-1"], "its holder died: taken over"
        assert await claimed_ids(store, "relay-c") == [], "the new claim holds"

    async def test_released_claims_are_taken_over_at_once(self, store: NoteStore) -> None:
        await store.commit(creating(Note("n-1", "x"), event("e-1"), event("e-2")))
        await claimed_ids(store, "relay-a", 1)
        await claimed_ids(store, "relay-b", 1)

        await store.release_events("relay-a")
        await store.release_events("relay-nobody")

        assert await claimed_ids(store, "relay-c") == ["e-1"]
        assert await claimed_ids(store, "relay-c") == ["e-1"], "relay-b still holds e-2"

    async def test_two_stores_on_one_database_never_claim_the_same_event(
        self, store: NoteStore, tmp_path: Path, clock: ManualClock
    ) -> None:
        twin = await self.open_twin(store, tmp_path, clock)
        try:
            for i in range(60):
                await store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i:02}")))
            got: dict[str, list[str]] = {"relay-a": [], "relay-b": []}

            async def drain(replica: NoteStore, holder: str) -> None:
                while rows := await replica.claim_events(holder, 7, LEASE):
                    got[holder] += [e.event_id for _, e in rows]
                    await replica.mark_events_sent([seq for seq, _ in rows])

            await asyncio.gather(drain(store, "relay-a"), drain(twin, "relay-b"))

            assert sorted(got["relay-a"] + got["relay-b"]) == [f"e-{i:02}" for i in range(60)]
            assert not set(got["relay-a"]) & set(got["relay-b"])
            assert got["relay-a"] == sorted(got["relay-a"])
            assert got["relay-b"] == sorted(got["relay-b"])
            assert await store.outbox_backlog() == 0
        finally:
            await twin.close()

    async def test_concurrent_claims_by_many_holders_share_the_events_out(
        self, store: NoteStore
    ) -> None:
        for i in range(20):
            await store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i:02}")))

        claims = await asyncio.gather(*(claimed_ids(store, f"relay-{h}", 3) for h in range(10)))

        everything = [event_id for claim in claims for event_id in claim]
        assert len(everything) == len(set(everything)), "no event claimed twice"
        assert everything, "a holder that lost every race gets nothing; one of them won"

    # --- the inbox ---------------------------------------------------------------------------

    async def test_an_event_handled_twice_is_refused_the_second_time_and_writes_nothing(
        self, store: NoteStore
    ) -> None:
        inbox = InboxKey("followup-contacts", "evt-1")
        await store.commit(creating(Note("n-1", "first"), event("e-1"), handled=inbox))

        # When the same event is delivered again, with an effect of its own
        again = updating(Note("n-1", "second", 2), 1, event("e-2"), handled=inbox)
        with pytest.raises(AlreadyHandledError):
            await store.commit(again)

        # Then neither the state nor the outbox changed
        assert await store.get("n-1") == Note("n-1", "first")
        assert await pending_ids(store) == ["e-1"]

    async def test_the_inbox_of_one_consumer_does_not_hide_an_event_from_another(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "x"), handled=InboxKey("contacts-touches", "e")))

        await store.commit(creating(Note("n-2", "x"), handled=InboxKey("followup-contacts", "e")))
        await store.commit(creating(Note("n-3", "x"), handled=InboxKey("contacts-touches", "f")))

        assert await store.get("n-2") is not None
        assert await store.get("n-3") is not None

    async def test_concurrent_redeliveries_of_one_event_apply_it_once(
        self, store: NoteStore
    ) -> None:
        inbox = InboxKey("followup-contacts", "evt-1")
        changes = [creating(Note(f"n-{i}", "x"), event(f"e-{i}"), handled=inbox) for i in range(5)]

        results = await outcomes(*(store.commit(c) for c in changes))

        assert results.count(None) == 1
        assert all(isinstance(r, AlreadyHandledError) for r in results if r is not None)
        applied = results.index(None)
        assert [await store.get(f"n-{i}") is not None for i in range(5)] == [
            i == applied for i in range(5)
        ]
        assert await pending_ids(store) == [f"e-{applied}"]

    async def test_pruning_forgets_inbox_rows_handled_before_the_cutoff_a_batch_at_a_time(
        self, store: NoteStore, clock: ManualClock
    ) -> None:
        for i, hours in enumerate((0, 1, 2, 3)):
            clock.set(START + timedelta(hours=hours))
            handled = InboxKey("followup-contacts", f"evt-{i}")
            await store.commit(creating(Note(f"n-{i}", "x"), handled=handled))
        cutoff = START + timedelta(hours=2)

        assert await store.prune_inbox(cutoff, 1) == 1
        assert await store.prune_inbox(cutoff, 10) == 1
        assert await store.prune_inbox(cutoff, 10) == 0, "a row handled at the cutoff stays"
        assert await store.prune_inbox(cutoff, 0) == 0

        # The pruned events are forgotten; the kept ones are still refused
        await store.commit(
            creating(Note("n-again", "x"), handled=InboxKey("followup-contacts", "evt-0"))
        )
        with pytest.raises(AlreadyHandledError):
            await store.commit(
                creating(Note("n-no", "x"), handled=InboxKey("followup-contacts", "evt-2"))
            )

    async def test_pruning_an_empty_inbox_deletes_nothing(self, store: NoteStore) -> None:
        assert await store.prune_inbox(START + timedelta(days=1), 100) == 0

    # --- idempotency keys --------------------------------------------------------------------

    async def test_a_committed_request_id_is_found_with_what_it_produced(
        self, store: NoteStore
    ) -> None:
        key = request("req-1", "n-1")

        await store.commit(creating(Note("n-1", "x"), idempotency=key))

        assert await store.find_request("req-1") == key
        assert await store.find_request("req-unknown") is None

    async def test_a_second_commit_with_the_same_request_id_is_refused_and_writes_nothing(
        self, store: NoteStore
    ) -> None:
        first = request("req-1", "n-1")
        await store.commit(creating(Note("n-1", "x"), event("e-1"), idempotency=first))

        twin = creating(Note("n-2", "y"), event("e-2"), idempotency=request("req-1", "n-2", "d2"))
        with pytest.raises(DuplicateRequestError):
            await store.commit(twin)

        assert await store.get("n-2") is None
        assert await pending_ids(store) == ["e-1"]
        assert await store.find_request("req-1") == first

    async def test_concurrent_twins_of_a_create_commit_once(self, store: NoteStore) -> None:
        changes = [
            creating(Note(f"n-{i}", "x"), event(f"e-{i}"), idempotency=request("req-1", f"n-{i}"))
            for i in range(5)
        ]

        results = await outcomes(*(store.commit(c) for c in changes))

        assert results.count(None) == 1
        assert all(isinstance(r, DuplicateRequestError) for r in results if r is not None)
        winner = await store.find_request("req-1")
        assert winner is not None
        assert winner.resource_id == f"n-{results.index(None)}"
        created = [i for i in range(5) if await store.get(f"n-{i}") is not None]
        assert [f"n-{i}" for i in created] == [winner.resource_id]
        assert await store.outbox_backlog() == 1

    # --- one transaction ---------------------------------------------------------------------

    async def test_a_failing_write_rolls_back_state_outbox_inbox_and_request_id_together(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "kept"), event("e-1")))
        inbox = InboxKey("followup-contacts", "evt-9")
        key = request("req-9", "n-2")
        failure = RuntimeError("the disk is full")
        change = NoteChange(
            saves=[(Note("n-1", "changed", 2), 1), (Note("n-2", "new"), 0)],
            events=[event("e-2"), event("e-3")],
            handled=inbox,
            idempotency=key,
            fails_with=failure,
        )

        with pytest.raises(RuntimeError) as raised:
            await store.commit(change)

        assert raised.value is failure, "the write's own error reaches the caller"
        assert await store.get("n-1") == Note("n-1", "kept")
        assert await store.get("n-2") is None
        assert await pending_ids(store) == ["e-1"]
        assert await store.find_request("req-9") is None
        # The inbox row and the request id were rolled back too: the retry goes through
        await store.commit(NoteChange(change.saves, change.events, inbox, key))
        assert await store.get("n-2") == Note("n-2", "new")
        assert await pending_ids(store) == ["e-1", "e-2", "e-3"]

    async def test_a_conflict_in_a_later_save_rolls_back_the_earlier_ones(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "kept"), event("e-1")))
        inbox = InboxKey("followup-contacts", "evt-9")
        key = request("req-9", "n-2")
        change = NoteChange(
            saves=[(Note("n-2", "new"), 0), (Note("n-1", "stale", 6), 5)],
            events=[event("e-2")],
            handled=inbox,
            idempotency=key,
        )

        with pytest.raises(VersionConflictError) as raised:
            await store.commit(change)

        assert raised.value.resource_id == "n-1"
        assert await store.get("n-2") is None
        assert await store.get("n-1") == Note("n-1", "kept")
        assert await pending_ids(store) == ["e-1"]
        assert await store.find_request("req-9") is None
        await store.commit(creating(Note("n-3", "retried"), handled=inbox, idempotency=key))

    # --- versioned saves ---------------------------------------------------------------------

    async def test_a_new_note_is_inserted_at_expected_version_zero(self, store: NoteStore) -> None:
        await store.commit(creating(Note("n-1", "hello")))

        assert await store.get("n-1") == Note("n-1", "hello", 1)
        assert await store.get("n-unknown") is None

    async def test_an_update_at_the_version_it_read_replaces_the_note(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "v1")))

        await store.commit(updating(Note("n-1", "v2", 2), 1))
        await store.commit(updating(Note("n-1", "v3", 3), 2))

        assert await store.get("n-1") == Note("n-1", "v3", 3)

    async def test_an_update_from_a_stale_version_conflicts_and_writes_nothing(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "v1")))
        await store.commit(updating(Note("n-1", "v2", 2), 1))

        with pytest.raises(VersionConflictError) as raised:
            await store.commit(updating(Note("n-1", "late", 2), 1, event("e-late")))

        assert raised.value.resource_id == "n-1"
        assert await store.get("n-1") == Note("n-1", "v2", 2)
        assert await store.outbox_backlog() == 0

    async def test_a_create_over_an_existing_id_conflicts_and_keeps_the_first(
        self, store: NoteStore
    ) -> None:
        await store.commit(creating(Note("n-1", "first")))

        with pytest.raises(VersionConflictError) as raised:
            await store.commit(creating(Note("n-1", "second"), event("e-2")))

        assert raised.value.resource_id == "n-1"
        assert await store.get("n-1") == Note("n-1", "first")
        assert await store.outbox_backlog() == 0

    async def test_an_update_of_a_note_that_does_not_exist_conflicts(
        self, store: NoteStore
    ) -> None:
        with pytest.raises(VersionConflictError) as raised:
            await store.commit(updating(Note("n-ghost", "boo", 2), 1))

        assert raised.value.resource_id == "n-ghost"
        assert await store.get("n-ghost") is None

    # --- dead letters ------------------------------------------------------------------------

    async def test_no_dead_letters_read_as_an_empty_list(self, store: NoteStore) -> None:
        assert await store.dead_letters() == []

    async def test_dead_letters_read_oldest_first_with_the_same_keys_on_every_backend(
        self, store: NoteStore, clock: ManualClock
    ) -> None:
        first_at = clock.now()
        await store.record_dead_letter("touches", incoming("evt-1", 3), "undecodable payload")
        second_at = clock.advance(timedelta(seconds=5, microseconds=7))
        await store.record_dead_letter(
            "followup-contacts", incoming("evt-2", 5, consumer_subject="rated"), "kept changing"
        )

        letters = await store.dead_letters()

        assert letters == [
            {
                "consumer": "touches",
                "event_id": "evt-1",
                "subject": "crm.interactions.recorded.c-1",
                "type": "crm.interactions.v1.InteractionRecorded",
                "error": "undecodable payload",
                "deliveries": 3,
                "recorded_at": first_at.isoformat(),
            },
            {
                "consumer": "followup-contacts",
                "event_id": "evt-2",
                "subject": "crm.interactions.rated.c-1",
                "type": "crm.interactions.v1.InteractionRecorded",
                "error": "kept changing",
                "deliveries": 5,
                "recorded_at": second_at.isoformat(),
            },
        ]

    async def test_dead_letters_recorded_at_one_instant_keep_the_order_they_came_in(
        self, store: NoteStore
    ) -> None:
        for i in range(5):
            await store.record_dead_letter("touches", incoming(f"evt-{i}", 1), "bad")

        assert [d["event_id"] for d in await store.dead_letters()] == [f"evt-{i}" for i in range(5)]

    async def test_an_erased_contacts_dead_letters_are_forgotten_and_no_one_elses(
        self, store: NoteStore
    ) -> None:
        def about(contact_id: str, event_id: str) -> IncomingEvent:
            return replace(incoming(event_id, 5), subject=f"crm.interactions.recorded.{contact_id}")

        await store.record_dead_letter("touches", about("c-1", "evt-1"), "kept failing")
        await store.record_dead_letter("touches", about("c-11", "evt-2"), "kept failing")
        await store.record_dead_letter(
            "reminders",
            replace(about("c-1", "evt-3"), subject="crm.followup.reminders.agent-ana.c-1"),
            "kept failing",
        )

        await store.forget_dead_letters("c-1")
        await store.forget_dead_letters("c-1")  # an erasure redelivered

        assert [d["event_id"] for d in await store.dead_letters()] == ["evt-2"]

    async def test_a_dead_letter_keeps_the_whole_event_to_replay_it(
        self, store: NoteStore, clock: ManualClock
    ) -> None:
        delivered = incoming("evt-1", 5)
        recorded_at = clock.advance(timedelta(seconds=1, microseconds=3))

        await store.record_dead_letter("touches", delivered, "undecodable payload")

        (letter,) = await store.list_dead_letters(None, None, 10)
        assert letter == DeadLetter(
            id=letter.id,
            consumer="touches",
            event=delivered,
            error="undecodable payload",
            recorded_at=recorded_at,
            replayed_at=None,
        )
        assert type(letter.event.data) is bytes
        assert await store.dead_letter(letter.id) == letter

    async def test_dead_letters_are_listed_oldest_first_by_consumer_a_page_at_a_time(
        self, store: NoteStore
    ) -> None:
        for i in range(5):
            await store.record_dead_letter("touches", incoming(f"evt-{i}", 1), "bad")
            await store.record_dead_letter("reminders", incoming(f"rem-{i}", 1), "bad")

        first = await store.list_dead_letters("touches", None, 2)
        rest = await store.list_dead_letters("touches", first[-1].id, 10)
        everyone = await store.list_dead_letters(None, None, 100)

        assert [d.event.event_id for d in first] == ["evt-0", "evt-1"]
        assert [d.event.event_id for d in rest] == ["evt-2", "evt-3", "evt-4"]
        assert {d.consumer for d in [*first, *rest]} == {"touches"}
        assert [d.event.event_id for d in everyone][:4] == ["evt-0", "rem-0", "evt-1", "rem-1"]
        assert len({d.id for d in everyone}) == 10
        assert await store.list_dead_letters("touches", rest[-1].id, 10) == []
        assert await store.list_dead_letters("nobody", None, 10) == []
        assert await store.list_dead_letters(None, "not an id", 10) == [], "no letter has it"
        assert await store.list_dead_letters(None, None, 0) == []

    @pytest.mark.parametrize(
        "letter_id",
        ["", "x", "-1", "0", "1e3", "65a1b2c3d4e5f60718293a4", "ZZ" * 12, "٣", "9" * 40],
    )
    async def test_an_unknown_or_malformed_dead_letter_id_finds_nothing(
        self, store: NoteStore, letter_id: str
    ) -> None:
        await store.record_dead_letter("touches", incoming("evt-1", 1), "bad")

        assert await store.dead_letter(letter_id) is None
        await store.mark_dead_letter_replayed(letter_id, START)  # a no-op, not an error
        (letter,) = await store.list_dead_letters(None, None, 10)
        assert letter.replayed_at is None

    async def test_marking_a_dead_letter_replayed_is_idempotent_and_keeps_the_first_time(
        self, store: NoteStore
    ) -> None:
        await store.record_dead_letter("touches", incoming("evt-1", 1), "bad")
        await store.record_dead_letter("touches", incoming("evt-2", 1), "bad")
        first, second = await store.list_dead_letters(None, None, 10)
        replayed_at = START + timedelta(minutes=5, microseconds=9)

        await store.mark_dead_letter_replayed(first.id, replayed_at)
        await store.mark_dead_letter_replayed(first.id, replayed_at + timedelta(minutes=1))

        assert await store.dead_letter(first.id) == replace(first, replayed_at=replayed_at)
        assert await store.dead_letter(second.id) == second
        assert [d.event.event_id for d in await store.list_dead_letters(None, None, 10)] == [
            "evt-1",
            "evt-2",
        ], "a replayed letter is still listed"

    async def test_an_erased_contacts_dead_letters_are_gone_from_every_read(
        self, store: NoteStore
    ) -> None:
        await store.record_dead_letter("touches", incoming("evt-1", 1), "bad")
        (letter,) = await store.list_dead_letters(None, None, 10)

        await store.forget_dead_letters("c-1")

        assert await store.list_dead_letters(None, None, 10) == []
        assert await store.dead_letter(letter.id) is None

    async def test_a_dead_letter_touches_neither_the_outbox_nor_the_inbox(
        self, store: NoteStore
    ) -> None:
        await store.record_dead_letter("touches", incoming("evt-1", 3), "undecodable payload")

        assert await store.outbox_backlog() == 0
        # The event was not handled: a fixed consumer may still apply it when it is replayed
        await store.commit(creating(Note("n-1", "x"), handled=InboxKey("touches", "evt-1")))
        assert await store.get("n-1") is not None


# ---------------------------------------------------------------------------------------------
# The backends


class TestSqliteStore(PlatformStoreContract):
    async def create_store(self, tmp_path: Path, clock: ManualClock) -> NoteStore:
        return SqliteNoteStore(tmp_path / "notes.db", clock)

    async def open_twin(self, store: NoteStore, tmp_path: Path, clock: ManualClock) -> NoteStore:
        return SqliteNoteStore(tmp_path / "notes.db", clock)

    async def test_a_database_from_before_claims_and_whole_dead_letters_keeps_working(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        # Given a file written by the release before claims and whole dead letters
        path = tmp_path / "old.db"
        old = sqlite3.connect(path)
        old.executescript(OLD_PLATFORM_SCHEMA)
        old.execute(
            "INSERT INTO outbox (event_id, subject, type, source, time, ce_subject, data)"
            " VALUES (:event_id, :subject, :type, :source, :time, :ce_subject, :data)",
            event("e-old").row(),
        )
        old.execute(
            "INSERT INTO dead_letters (consumer, event_id, subject, type, data, error,"
            " deliveries, recorded_at) VALUES ('touches', 'evt-old', 'crm.x.y.c-1', 't', x'00',"
            " 'bad', 3, ?)",
            (START.isoformat(),),
        )
        old.commit()
        old.close()

        # When two replicas of the new release open it at once
        stores = [SqliteNoteStore(path, clock), SqliteNoteStore(path, clock)]
        try:
            store = stores[0]
            # Then its waiting event is claimed and published like any other
            assert await claimed_ids(store, "relay-a") == ["e-old"]
            assert await claimed_ids(stores[1], "relay-b") == []
            # And its old dead letters read with what they kept
            (letter,) = await store.list_dead_letters(None, None, 10)
            assert letter.event.event_id == "evt-old"
            assert (letter.event.source, letter.event.ce_subject, letter.event.time) == ("", "", "")
            assert letter.event.delivery == 3
            await store.mark_dead_letter_replayed(letter.id, START)
            assert (await store.list_dead_letters(None, None, 1))[0].replayed_at == START
            await store.record_dead_letter("touches", incoming("evt-new", 1), "bad")
            assert (await store.list_dead_letters(None, letter.id, 1))[0].event == incoming(
                "evt-new", 1
            )
        finally:
            for s in stores:
                await s.close()

    async def test_what_was_committed_survives_reopening_the_file(
        self, tmp_path: Path, clock: ManualClock
    ) -> None:
        store = SqliteNoteStore(tmp_path / "durable.db", clock)
        key = request("req-1", "n-1")
        await store.commit(creating(Note("n-1", "x"), event("e-1"), idempotency=key))
        await store.close()

        reopened = SqliteNoteStore(tmp_path / "durable.db", clock)
        try:
            assert await reopened.get("n-1") == Note("n-1", "x")
            assert await pending_ids(reopened) == ["e-1"]
            assert await reopened.find_request("req-1") == key
        finally:
            await reopened.close()


@pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")
class TestMongoStore(PlatformStoreContract):
    database: str

    async def create_store(self, tmp_path: Path, clock: ManualClock) -> NoteStore:
        self.database = f"promesa_platform_{uuid.uuid4().hex}"
        return await MongoNoteStore.open(MONGODB_URI, self.database, as_is, clock)

    async def open_twin(self, store: NoteStore, tmp_path: Path, clock: ManualClock) -> NoteStore:
        return await MongoNoteStore.open(MONGODB_URI, self.database, as_is, clock)

    async def test_documents_from_before_claims_and_whole_dead_letters_keep_working(
        self, store: NoteStore
    ) -> None:
        # Given an outbox row and a dead letter as the release before wrote them
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URI)
        try:
            database = client[self.database]
            await database[mdb.OUTBOX].insert_one({"_id": 1, **event("e-old").row()})
            await database[mdb.DEAD_LETTERS].insert_one(
                {
                    "consumer": "touches",
                    "event_id": "evt-old",
                    "subject": "crm.x.y.c-1",
                    "type": "t",
                    "data": b"\x00",
                    "error": "bad",
                    "deliveries": 3,
                    "recorded_at": START.isoformat(),
                }
            )
        finally:
            await client.close()

        # Then the event is claimed like any other, and the letter reads with what it kept
        assert await claimed_ids(store, "relay-a") == ["e-old"]
        (letter,) = await store.list_dead_letters(None, None, 10)
        assert (letter.event.event_id, letter.event.source, letter.event.delivery) == (
            "evt-old",
            "",
            3,
        )
        await store.mark_dead_letter_replayed(letter.id, START)
        assert (await store.list_dead_letters(None, None, 1))[0].replayed_at == START

    async def dispose_store(self, store: NoteStore) -> None:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()
