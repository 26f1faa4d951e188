"""Two replicas' outbox relays over one outbox, publishing to a real nats-server: a plain
core-NATS subscriber (a front-office app on `crm.followup.reminders.<owner>`, which JetStream's
duplicate check does not shield) sees every event exactly once, on SQLite and on MongoDB.

Each replica is a store of its own on the one database (two connections to one SQLite file,
two clients of one MongoDB database) with a relay of its own, as two processes would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg
from pymongo import AsyncMongoClient

from devtools.natsserver import NatsServer
from promesa.bus import EventBus, StreamSpec
from promesa.clock import ManualClock
from promesa.events import OutgoingEvent
from promesa.outbox import CLAIM_LEASE, OutboxRelay
from tests.platform.test_store_contract import (
    MONGODB_URI,
    START,
    MongoNoteStore,
    Note,
    NoteStore,
    SqliteNoteStore,
    as_is,
    creating,
    event,
)
from tests.support import eventually

NOTES_STREAM = StreamSpec("CRM_NOTES_TEST", ("crm.notes.>",))
EVERYTHING = "crm.notes.>"


@dataclass
class Replica:
    store: NoteStore
    relay: OutboxRelay
    bus: EventBus


@dataclass
class Subscriber:
    """A core-NATS subscriber counting what it receives, by event id."""

    seen: Counter[str]

    def total(self) -> int:
        return sum(self.seen.values())


OpenStore = Callable[[ManualClock], Awaitable[NoteStore]]


@pytest.fixture(params=["sqlite", "mongodb"])
async def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """Opens one more store on the test's one database (a replica's)."""
    database = f"promesa_claims_{uuid.uuid4().hex}"
    if request.param == "mongodb" and not MONGODB_URI:
        pytest.skip("CRM_TEST_MONGODB_URI is not set")

    async def opener(clock: ManualClock) -> NoteStore:
        if request.param == "sqlite":
            return SqliteNoteStore(tmp_path / "notes.db", clock)
        return await MongoNoteStore.open(MONGODB_URI, database, as_is, clock)

    yield opener
    if request.param == "mongodb":
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(database)
        finally:
            await client.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@contextlib.asynccontextmanager
async def started_replicas(
    open_store: OpenStore, nats_server: NatsServer, clock: ManualClock, *, relaying: bool
) -> AsyncIterator[list[Replica]]:
    """Two replicas on one database; with `relaying`, their relays run as in a service."""
    started: list[Replica] = []
    tasks: list[asyncio.Task[None]] = []
    for i in range(2):
        store = await open_store(clock)
        bus = EventBus(nats_server.url, name=f"notes-{i}")
        await bus.connect()
        if i == 0:
            await bus.declare_stream(NOTES_STREAM)
        relay = OutboxRelay(store, bus, service="notes", batch_size=7, poll_interval=0.05)
        started.append(Replica(store, relay, bus))
        if relaying:
            tasks.append(asyncio.create_task(relay.run()))
    yield started
    for replica in started:
        replica.relay.stop()
    await asyncio.gather(*tasks)
    for replica in started:
        await replica.bus.close()
        await replica.store.close()


@pytest.fixture
async def replicas(
    open_store: OpenStore, nats_server: NatsServer, clock: ManualClock
) -> AsyncIterator[list[Replica]]:
    async with started_replicas(open_store, nats_server, clock, relaying=True) as started:
        yield started


@pytest.fixture
async def quiet_replicas(
    open_store: OpenStore, nats_server: NatsServer, clock: ManualClock
) -> AsyncIterator[list[Replica]]:
    """Replicas whose relays do not run: the test plays each relay's part itself."""
    async with started_replicas(open_store, nats_server, clock, relaying=False) as started:
        yield started


@pytest.fixture
async def subscriber(nats_server: NatsServer) -> AsyncIterator[Subscriber]:
    nc = await nats.connect(nats_server.url)
    counted = Subscriber(Counter())

    async def count(msg: Msg) -> None:
        counted.seen[(msg.headers or {})["ce-id"]] += 1

    await nc.subscribe(EVERYTHING, cb=count)
    await nc.flush()
    yield counted
    await nc.close()


async def settled(replicas: list[Replica], subscriber: Subscriber, expected: int) -> None:
    """Everything sent and received: each relay has finished any batch it had started (flush
    takes its lock) and the subscriber's connection has caught up with the server."""
    await eventually(lambda: _received(subscriber, expected), timeout=15)
    for replica in replicas:
        await replica.relay.flush()
    assert await replicas[0].store.outbox_backlog() == 0


async def _received(subscriber: Subscriber, expected: int) -> bool:
    return len(subscriber.seen) >= expected


async def stream_count(replica: Replica) -> int:
    info = await replica.bus.js.stream_info(NOTES_STREAM.name)
    return int(info.state.messages)


async def test_two_relays_publish_every_event_exactly_once_to_a_core_subscriber(
    replicas: list[Replica], subscriber: Subscriber
) -> None:
    # When both replicas commit 300 events between them, each commit waking both relays
    # (both are busy: neither waits for its poll)
    for i in range(300):
        replica = replicas[i % 2]
        await replica.store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i:03}")))
        for r in replicas:
            r.relay.notify()
        if i % 25 == 0:
            await asyncio.sleep(0)  # let the relays run between commits, as in a service

    # Then the plain subscriber saw each event once, and the stream holds each once
    await settled(replicas, subscriber, 300)
    twice = {event_id: n for event_id, n in subscriber.seen.items() if n > 1}
    assert twice == {}
    assert subscriber.total() == 300
    assert await stream_count(replicas[0]) == 300


async def test_a_flush_waits_for_a_dead_relays_rows_and_takes_them_over_when_its_claim_runs_out(
    quiet_replicas: list[Replica], subscriber: Subscriber, clock: ManualClock
) -> None:
    first, second = quiet_replicas
    for i in range(5):
        await first.store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i}")))
    # Given a relay that claimed the rows and died before publishing them
    assert len(await first.store.claim_events("notes-dead", 10, CLAIM_LEASE)) == 5
    watched = Watched(second.store)
    relay = OutboxRelay(watched, second.bus, service="notes")

    # When a live replica flushes (as an erasure does before it purges the stream)
    flushing = asyncio.create_task(relay.flush())

    # Then it publishes nothing while the claim may still be in use, and waits
    await eventually(lambda: watched.looked(3))
    assert not flushing.done()
    assert subscriber.total() == 0

    # And once the claim runs out, the rows are taken over and go out once
    clock.advance(CLAIM_LEASE)
    await asyncio.wait_for(flushing, 5)
    await settled(quiet_replicas, subscriber, 5)
    assert sorted(subscriber.seen) == [f"e-{i}" for i in range(5)]
    assert subscriber.total() == 5


async def test_a_flush_waits_for_the_rows_another_live_relay_is_publishing(
    quiet_replicas: list[Replica], subscriber: Subscriber
) -> None:
    first, second = quiet_replicas
    await first.store.commit(creating(Note("n-1", "x"), event("e-1")))
    # Given another replica's relay that has claimed the row and is publishing it
    claimed = await first.store.claim_events("notes-busy", 10, CLAIM_LEASE)
    watched = Watched(second.store)
    relay = OutboxRelay(watched, second.bus, service="notes")

    # When this replica flushes
    flushing = asyncio.create_task(relay.flush())
    await eventually(lambda: watched.looked(3))

    # Then the flush waits for the row, and returns once it is out, having published nothing
    assert not flushing.done()
    await first.bus.publish_batch([e for _, e in claimed])
    await first.store.mark_events_sent([seq for seq, _ in claimed])
    assert await asyncio.wait_for(flushing, 5) == 0
    await settled(quiet_replicas, subscriber, 1)
    assert subscriber.total() == 1


class Watched:
    """A replica's store that counts how often a relay looked at what is pending."""

    def __init__(self, store: NoteStore) -> None:
        self._store = store
        self._looks = 0
        self.claims = 0  # claim_events calls: writes of the relay's own

    async def looked(self, times: int) -> bool:
        return self._looks >= times

    async def pending_events(self, limit: int) -> Sequence[tuple[int, OutgoingEvent]]:
        self._looks += 1
        return await self._store.pending_events(limit)

    def hold_new_events(self, holder: str | None, lease: timedelta) -> None:
        self._store.hold_new_events(holder, lease)

    async def held_events(
        self, holder: str, after: int, limit: int
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        return await self._store.held_events(holder, after, limit)

    async def claim_events(
        self, holder: str, limit: int, lease: timedelta
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        self.claims += 1
        return await self._store.claim_events(holder, limit, lease)

    async def mark_events_sent(self, seqs: Sequence[int]) -> None:
        await self._store.mark_events_sent(seqs)

    async def release_events(self, holder: str) -> None:
        await self._store.release_events(holder)

    async def outbox_backlog(self) -> int:
        return await self._store.outbox_backlog()


async def test_a_relay_that_cannot_publish_hands_its_claims_over_at_once(
    quiet_replicas: list[Replica], subscriber: Subscriber, nats_server: NatsServer
) -> None:
    # Quiet: a running relay of the first replica could publish the row before the cut-off
    # one claims it (seen on MongoDB under load); each relay's part is played here.
    first, second = quiet_replicas
    # Given a replica whose NATS connection is gone
    lost = EventBus(nats_server.url, name="notes-lost")
    await lost.connect()
    await lost.close()
    cut_off = OutboxRelay(first.store, lost, service="notes")
    await first.store.commit(creating(Note("n-1", "x"), event("e-1")))

    # When its relay claims the row and fails to publish it
    with pytest.raises(nats.errors.ConnectionClosedError):
        await cut_off.flush()

    # Then the row is not held for a whole lease: the other replica publishes it now
    await second.relay.flush()
    await settled(quiet_replicas, subscriber, 1)
    assert subscriber.seen == Counter({"e-1": 1})


async def test_a_running_relay_sends_its_replicas_events_without_claiming_each_commit(
    quiet_replicas: list[Replica], subscriber: Subscriber
) -> None:
    first, _ = quiet_replicas
    watched = Watched(first.store)
    # Given a running relay that only polls for rows nobody holds once an hour,
    relay = OutboxRelay(watched, first.bus, service="notes", poll_interval=3600)
    running = asyncio.create_task(relay.run())
    await eventually(lambda: _async(watched.claims >= 1))  # at start: what was left before
    claims_at_start = watched.claims
    try:
        # when its replica commits 20 events, each waking it as a service's writes do,
        for i in range(20):
            await first.store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i:02}")))
            relay.notify()
        # then each goes out once, held for it since its commit: no claim of its own.
        await eventually(lambda: _received(subscriber, 20), timeout=15)
        assert watched.claims == claims_at_start
    finally:
        relay.stop()
        await running
    await settled(quiet_replicas, subscriber, 20)
    assert subscriber.total() == 20


async def test_events_held_at_their_commit_for_a_relay_that_died_go_out_when_its_claim_runs_out(
    quiet_replicas: list[Replica], subscriber: Subscriber, clock: ManualClock
) -> None:
    first, second = quiet_replicas
    # Given a replica whose writes held their events for its relay, which died unsent
    first.store.hold_new_events("notes-dead", CLAIM_LEASE)
    for i in range(3):
        await first.store.commit(creating(Note(f"n-{i}", "x"), event(f"e-{i}")))
    first.store.hold_new_events(None, CLAIM_LEASE)
    watched = Watched(second.store)
    relay = OutboxRelay(watched, second.bus, service="notes")

    # When another replica flushes, it waits while the claim may still be in use
    flushing = asyncio.create_task(relay.flush())
    await eventually(lambda: watched.looked(3))
    assert not flushing.done()
    assert subscriber.total() == 0

    # And once the claim runs out, the events go out once
    clock.advance(CLAIM_LEASE)
    await asyncio.wait_for(flushing, 5)
    await settled(quiet_replicas, subscriber, 3)
    assert subscriber.total() == 3


async def test_a_stopped_relay_leaves_later_events_to_the_other_replicas_at_once(
    quiet_replicas: list[Replica], subscriber: Subscriber
) -> None:
    first, second = quiet_replicas
    # Given a replica whose relay ran and stopped (its service is shutting down)
    running = asyncio.create_task(first.relay.run())
    await first.store.commit(creating(Note("n-0", "x"), event("e-0")))
    first.relay.notify()
    await eventually(lambda: _received(subscriber, 1), timeout=15)
    first.relay.stop()
    await running

    # When that replica still commits an event (a last write finishing)
    await first.store.commit(creating(Note("n-1", "x"), event("e-1")))

    # Then nobody holds it: the other replica's relay sends it now, not after a lease
    await asyncio.wait_for(second.relay.flush(), 5)
    await settled(quiet_replicas, subscriber, 2)
    assert subscriber.seen == Counter({"e-0": 1, "e-1": 1})


async def _async(value: bool) -> bool:
    return value


async def test_a_relay_that_fell_behind_its_claims_still_sends_in_commit_order(
    quiet_replicas: list[Replica], nats_server: NatsServer, clock: ManualClock
) -> None:
    first, _ = quiet_replicas
    order: list[str] = []
    nc = await nats.connect(nats_server.url)

    async def received(msg: Msg) -> None:
        order.append((msg.headers or {})["ce-id"])

    await nc.subscribe(EVERYTHING, cb=received)
    await nc.flush()
    watched = Watched(first.store)
    relay = OutboxRelay(watched, first.bus, service="notes", poll_interval=3600)
    running = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: _async(watched.claims >= 1))  # started: its writes held for it
        # Given an event held for the relay since a commit longer ago than its claim,
        await first.store.commit(creating(Note("n-1", "x"), event("e-1")))
        clock.advance(CLAIM_LEASE * 2)
        # when a later commit wakes the relay,
        await first.store.commit(creating(Note("n-2", "x"), event("e-2")))
        relay.notify()
        # then the two go out in the order they were committed.
        await eventually(lambda: _async(len(order) == 2), timeout=15)
        assert order == ["e-1", "e-2"]
    finally:
        relay.stop()
        await running
        await nc.close()
