"""One contract for the follow-up storage port, run against every adapter.

`PromiseStoreContract` holds the behaviour; an adapter subclasses it and says how to create (and
dispose of) a store. SQLite always runs; MongoDB runs when CRM_TEST_MONGODB_URI names a replica
set (transactions need one), each test in a database of its own that is dropped afterwards.
"""

from __future__ import annotations

import abc
import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from followup.adapters import event_codec
from followup.adapters.mongo_store import MongoPromiseStore, due_query
from followup.adapters.sqlite_store import SCHEMA, SqlitePromiseStore
from followup.domain import lifecycle, notices
from followup.domain.contacts import ContactPreferences
from followup.domain.events import PromiseMade
from followup.domain.model import Promise, PromiseKind
from followup.domain.reminders import (
    NoticeReason,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
    delivery,
)
from followup.ports import Change, LeaseLostError, PromiseFilter, PromiseStore
from promesa.clock import ManualClock
from promesa.storage import (
    AlreadyHandledError,
    DuplicateRequestError,
    IdempotencyKey,
    VersionConflictError,
)
from tests.support import plan_stages

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = ReminderPolicy()


def a_promise(promise_id: str = "p1", due_in: timedelta = timedelta(hours=5)) -> Promise:
    return lifecycle.created(
        Promise(
            id=promise_id,
            contact_id="c1",
            text="Call back",
            kind=PromiseKind.CALL_BACK,
            owner_id="ana",
            team="madrid",
            created_by="ana",
            due_at=T0 + due_in,
            created_at=T0,
        )
    )


def a_reminder(p: Promise, reminder_id: str, at: datetime) -> ReminderDelivery:
    return delivery(p, ReminderKind.AT_DUE, at, p.owner_id, POLICY, reminder_id)


class PromiseStoreContract(abc.ABC):
    """What every PromiseStore adapter does; subclasses only create and dispose of stores."""

    @abc.abstractmethod
    async def create_store(self, tmp_path: Path) -> PromiseStore: ...

    @abc.abstractmethod
    async def open_peer(self, tmp_path: Path) -> PromiseStore:
        """Another store on the data of the one `create_store` made: a second replica."""

    async def dispose_store(self, store: PromiseStore) -> None:
        await store.close()

    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[PromiseStore]:
        store = await self.create_store(tmp_path)
        try:
            yield store
        finally:
            await self.dispose_store(store)

    async def test_a_saved_promise_reads_back_equal_and_its_event_is_in_the_outbox(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], events=[PromiseMade(p, "ana", T0)]))
        assert await store.get(p.id) == p
        [(_, event)] = await store.pending_events(10)
        assert event.subject == "crm.followup.promise_made" and event.ce_subject == p.id

    async def test_a_stale_version_writes_nothing(self, store: PromiseStore) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)]))
        moved = replace(p, owner_id="bea", version=2)
        with pytest.raises(VersionConflictError):
            await store.commit(Change(saves=[(moved, 5)], events=[PromiseMade(moved, "ana", T0)]))
        with pytest.raises(VersionConflictError):
            await store.commit(Change(saves=[(p, 0)]))  # the id exists already
        assert await store.get(p.id) == p
        assert await store.outbox_backlog() == 0

    async def test_a_change_that_fails_halfway_writes_nothing(self, store: PromiseStore) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)]))
        fresh = a_promise("p2")
        with pytest.raises(VersionConflictError):
            await store.commit(
                Change(
                    saves=[(fresh, 0), (p, 0)],
                    events=[PromiseMade(fresh, "ana", T0)],
                    profiles=[ContactPreferences("c1")],
                    replans={fresh.id: [a_reminder(fresh, "r1", T0)]},
                )
            )
        assert await store.get_many(["p2"]) == []
        assert await store.profile("c1") is None
        assert await store.deliveries("p2", "", None, 10) == []
        assert await store.outbox_backlog() == 0

    async def test_a_request_id_and_an_event_id_are_taken_once(self, store: PromiseStore) -> None:
        key = IdempotencyKey("req-1", "create", "digest", "p1")
        await store.commit(Change(saves=[(a_promise(), 0)], idempotency=key))
        with pytest.raises(DuplicateRequestError):
            await store.commit(Change(saves=[(a_promise("p2"), 0)], idempotency=key))
        assert await store.find_request("req-1") == key
        await store.commit(Change(handled=("consumer", "event-1")))
        with pytest.raises(AlreadyHandledError):
            await store.commit(
                Change(saves=[(a_promise("p3"), 0)], handled=("consumer", "event-1"))
            )
        assert await store.get_many(["p2", "p3"]) == []

    async def test_listing_filters_and_pages_by_due_time(self, store: PromiseStore) -> None:
        for i, hours in enumerate((3, 1, 2)):
            await store.commit(Change(saves=[(a_promise(f"p{i}", timedelta(hours=hours)), 0)]))
        first = await store.list(PromiseFilter(owner_id="ana"), None, 2)
        assert [p.id for p in first] == ["p1", "p2"]
        rest = await store.list(PromiseFilter(), (first[-1].due_at, first[-1].id), 10)
        assert [p.id for p in rest] == ["p0"]
        overdue = await store.list(
            PromiseFilter(overdue_at=T0 + timedelta(hours=2, minutes=1)), None, 9
        )
        assert [p.id for p in overdue] == ["p1", "p2"]
        assert await store.list(PromiseFilter(team="lisbon"), None, 10) == []
        assert len(await store.made_between(T0, None)) == 3
        assert await store.made_between(None, T0) == []

    async def test_a_replan_replaces_only_reminders_not_yet_attempted(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        due = [a_reminder(p, "r1", T0), a_reminder(p, "r2", T0 + timedelta(hours=1))]
        await store.commit(Change(saves=[(p, 0)], replans={p.id: due}))
        [claim] = await store.claim_due(T0, T0 + timedelta(minutes=1), 10)
        done = claim.delivery.after_attempts([], T0, POLICY)
        await store.commit(
            Change(
                completed=[replace(claim, delivery=replace(done, outcome=done.outcome.DELIVERED))]
            )
        )
        await store.commit(Change(replans={p.id: [a_reminder(p, "r3", T0 + timedelta(hours=2))]}))
        listed = await store.deliveries(p.id, "", None, 10)
        assert [r.id for r in listed] == ["r3", "r1"]  # latest scheduled first; r2 replaced

    async def test_a_replan_leaves_queued_customer_notices_and_they_read_back_equal(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        notice = notices.schedule(p, NoticeReason.DUE_DATE_RENEGOTIATED, T0, "n1")
        await store.commit(
            Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}, added=[notice])
        )
        await store.commit(Change(replans={p.id: []}))  # e.g. the promise was paused
        assert await store.deliveries(p.id, "", None, 10) == [notice]

        [claim] = await store.claim_due(T0, T0 + timedelta(minutes=1), 10)
        until = T0 + timedelta(hours=9)
        held = notices.held(claim.delivery, until)
        await store.commit(Change(completed=[replace(claim, delivery=held)]))
        assert await store.claim_due(until - timedelta(seconds=1), until, 10) == []
        [again] = await store.claim_due(until, until + timedelta(minutes=1), 10)
        assert again.delivery == held

    async def test_a_claim_is_exclusive_until_its_lease_ends_and_only_its_holder_completes(
        self, store: PromiseStore
    ) -> None:
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        lease_end = T0 + timedelta(minutes=1)
        [first] = await store.claim_due(T0, lease_end, 10)
        assert await store.claim_due(T0 + timedelta(seconds=59), lease_end, 10) == []
        [second] = await store.claim_due(lease_end, lease_end + timedelta(minutes=1), 10)
        assert second.delivery.id == first.delivery.id and second.token != first.token
        with pytest.raises(LeaseLostError):
            await store.commit(Change(completed=[first], events=[PromiseMade(p, "x", T0)]))
        assert await store.outbox_backlog() == 0
        finished = replace(second.delivery, next_attempt_at=None)
        await store.commit(Change(completed=[replace(second, delivery=finished)]))
        assert await store.claim_due(T0 + timedelta(days=1), T0 + timedelta(days=2), 10) == []

    async def test_replicas_claiming_at_once_never_lease_the_same_reminder(
        self, store: PromiseStore, tmp_path: Path
    ) -> None:
        p = a_promise()
        due = [a_reminder(p, f"r{n:02}", T0 - timedelta(seconds=n)) for n in range(30)]
        await store.commit(Change(saves=[(p, 0)], replans={p.id: due}))
        peers = [await self.open_peer(tmp_path) for _ in range(2)]
        try:
            replicas = [store, *peers]
            lease_end = T0 + timedelta(minutes=1)
            claimed: list[str] = []
            while batches := [
                b
                for b in await asyncio.gather(*(r.claim_due(T0, lease_end, 4) for r in replicas))
                if b
            ]:
                claimed.extend(c.delivery.id for batch in batches for c in batch)
        finally:
            for peer in peers:
                await peer.close()

        assert sorted(claimed) == sorted(r.id for r in due)  # each one once, none left

    async def test_contact_profiles_are_replaced_and_forgotten(self, store: PromiseStore) -> None:
        await store.commit(Change(profiles=[ContactPreferences("c1", discreet=True)]))
        await store.commit(Change(profiles=[ContactPreferences("c1", time_zone="Europe/Madrid")]))
        assert await store.profile("c1") == ContactPreferences("c1", time_zone="Europe/Madrid")
        await store.commit(Change(forgotten_profiles=["c1"]))
        assert await store.profile("c1") is None


class TestSqlitePromiseStore(PromiseStoreContract):
    async def create_store(self, tmp_path: Path) -> PromiseStore:
        return SqlitePromiseStore(tmp_path / "followup.db", event_codec.encode, ManualClock(T0))

    async def open_peer(self, tmp_path: Path) -> PromiseStore:
        return await self.create_store(tmp_path)


@pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")
class TestMongoPromiseStore(PromiseStoreContract):
    database: str

    async def create_store(self, tmp_path: Path) -> PromiseStore:
        self.database = f"promesa_contract_{uuid.uuid4().hex}"
        return await self.open_peer(tmp_path)

    async def open_peer(self, tmp_path: Path) -> PromiseStore:
        return await MongoPromiseStore.open(
            MONGODB_URI, self.database, event_codec.encode, ManualClock(T0)
        )

    async def dispose_store(self, store: PromiseStore) -> None:
        await store.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(self.database)
        finally:
            await client.close()

    async def test_the_scheduler_finds_due_reminders_through_its_index(
        self, store: PromiseStore
    ) -> None:
        """Cost grows with what is due, not with how many promises are open."""
        assert isinstance(store, MongoPromiseStore)
        p = a_promise()
        await store.commit(Change(saves=[(p, 0)], replans={p.id: [a_reminder(p, "r1", T0)]}))
        cursor = store._reminders.find(due_query(T0)).sort("next_attempt_at", 1).limit(10)

        stages = plan_stages((await cursor.explain())["queryPlanner"]["winningPlan"])

        assert ("IXSCAN", "reminders_due") in stages
        assert "SORT" not in [stage for stage, _ in stages]


def test_the_scheduler_finds_due_reminders_through_its_index(tmp_path: Path) -> None:
    """Cost grows with what is due, not with how many promises are open."""
    import sqlite3

    conn = sqlite3.connect(tmp_path / "plan.db")
    conn.executescript(SCHEMA)
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT id, doc FROM reminders WHERE next_attempt_at <= ?"
        " ORDER BY next_attempt_at LIMIT ?",
        ("2026", 10),
    ).fetchall()
    assert "USING INDEX reminders_due" in plan[0][3]
