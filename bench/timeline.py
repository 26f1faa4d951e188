"""Interactions: RecordInteraction under load, ListInteractions deep in a big timeline.

The timeline is seeded through the store's own row writer: `interactions` touches over a
year, one contact (HOT_CONTACT) holding `hot_contact` of them spread evenly among the others.
Pages are timed in process (the store's query) and through gRPC on a service started on the
seeded file, first pages and deep ones reached by following page tokens.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration

from bench.footprint import Footprint, measure
from bench.load import LoadResult, loaded, one_at_a_time
from bench.processes import METADATA, SERVICE_METADATA, Server, standalone_service
from bench.profile import Profile, TimelineSizes
from bench.progress import Progress
from bench.seed import SEED_EPOCH, SeedResult, checkpoint, for_seeding, write_batches
from bench.stats import Latencies, LatencySummary
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from interactions.adapters import event_codec
from interactions.adapters.sqlite_store import SqliteInteractionStore
from interactions.domain.model import (
    Channel,
    Direction,
    Interaction,
    InteractionDetails,
    InteractionType,
    KnownContact,
    PromiseInInteraction,
    PromiseKind,
)
from interactions.ports import Change, TimelineFilter
from promesa.clock import ManualClock
from promesa.ids import derived_id, new_id
from promesa.pagination import Cursor

HOT_CONTACT = "seed-contact-hot"
CONTACT_POOL = 100_000  # the other seeded touches are spread over this many contacts
SEED_SPACING = timedelta(seconds=30)  # between consecutive seeded touches: 1M span a year
PROMISE_DUE_WITHIN = timedelta(days=2)  # far enough that no reminder falls due during a run
TYPES = list(InteractionType)
CHANNELS = list(Channel)
T = TypeVar("T")


def seeded_contact(index: int) -> str:
    return f"seed-contact-{index:06d}"


def _hot_every(sizes: TimelineSizes) -> int:
    """Every this many seeded touches, one is HOT_CONTACT's."""
    return max(1, sizes.interactions // sizes.hot_contact)


@dataclass(frozen=True)
class PageTimes:
    first: LatencySummary  # page 1, no token
    deep: LatencySummary  # the second half of every walk, reached by page tokens
    pages: int  # pages in one walk of the hot contact's timeline


@dataclass(frozen=True)
class TimelineResults:
    seed: SeedResult
    hot_contact: int
    page_size: int
    store: PageTimes  # SqliteInteractionStore.timeline, in process
    null_first_page: LatencySummary  # ListInteractions of 50 canned touches, null servicer
    grpc: PageTimes  # ListInteractions, interactions service on the seeded file
    interactions_rss_bytes: int
    footprint: Footprint  # of the seeded file, per interaction


# --- seeding ---------------------------------------------------------------------------------


def _seeded(i: int, contact_id: str) -> Interaction:
    """The i-th seeded touch; every third one made a promise, as the timeline of a CRM does."""
    at = SEED_EPOCH + i * SEED_SPACING
    interaction_id = new_id()
    promises: tuple[PromiseInInteraction, ...] = ()
    if i % 3 == 0:
        promise = PromiseInInteraction(
            id=derived_id(interaction_id, "0"),
            text="Call back with the delivery date",
            due_at=at + PROMISE_DUE_WITHIN,
            owner_id=f"agent-{i % 500:03d}",
            kind=PromiseKind.CALL_BACK,
        )
        promises = (promise,)
    details = InteractionDetails(
        type=TYPES[i % len(TYPES)],
        channel=CHANNELS[i % len(CHANNELS)],
        occurred_at=at,
        agent_id=f"agent-{i % 500:03d}",
        direction=Direction.INBOUND,
        team=f"team-{i % 20:02d}",
        summary=f"Asked when order {i} will be delivered",
        notes="The carrier is late; explained the delay and what happens next.",
        outcome="Customer satisfied with the explanation",
    )
    return Interaction(
        id=interaction_id,
        contact_id=contact_id,
        details=details,
        created_at=at,
        updated_at=at,
        created_by="bench",
        updated_by="bench",
        promises=promises,
    )


async def seed_timeline(path: Path, sizes: TimelineSizes, *, time_limit: float) -> SeedResult:
    """Writes `sizes.interactions` touches through the store's own commit (BATCH per
    transaction, no outbox rows); every (interactions / hot_contact)-th belongs to HOT_CONTACT.
    Stops at a whole batch once `time_limit` seconds have passed."""
    store = SqliteInteractionStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    for_seeding(store)
    every = _hot_every(sizes)

    async def write(start: int, end: int) -> None:
        saves = []
        for i in range(start, end):
            hot = i % every == 0 and i // every < sizes.hot_contact
            contact_id = HOT_CONTACT if hot else seeded_contact(i % CONTACT_POOL)
            saves.append((_seeded(i, contact_id), 0))
        await store.commit(Change(saves=saves))

    started = time.perf_counter()
    try:
        written = await write_batches(
            write, 0, sizes.interactions, deadline=started + time_limit, what="interactions"
        )
        file_bytes = checkpoint(store, path)
    finally:
        await store.close()
    return SeedResult(
        requested=sizes.interactions,
        count=written,
        seconds=round(time.perf_counter() - started, 2),
        file_bytes=file_bytes,
        time_limit_seconds=time_limit,
    )


async def register_contacts(path: Path, count: int) -> None:
    """The read model of contacts, as `crm.contacts.created` events would have left it:
    without it, RecordInteraction refuses every contact as not (yet) known."""
    store = SqliteInteractionStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    try:
        contacts = [KnownContact(seeded_contact(i)) for i in range(count)]
        await store.commit(Change(contacts=contacts))
    finally:
        await store.close()


# --- calls -----------------------------------------------------------------------------------


def record_request(contact_id: str, request_id: str) -> interactions_pb.RecordInteractionRequest:
    """A typical touch: an inquiry by phone with one call-back promise due in two days; the
    agent and the time are the caller's and now, as a front-office app leaves them."""
    return interactions_pb.RecordInteractionRequest(
        interaction=interaction_pb2.Interaction(
            contact_id=contact_id,
            type=interaction_pb2.INTERACTION_TYPE_INQUIRY,
            channel=interaction_pb2.CHANNEL_PHONE,
            direction=interaction_pb2.DIRECTION_INBOUND,
            summary="Asked when the order will be delivered",
            notes="The carrier is late; promised to call back with a date.",
            promises=[
                interaction_pb2.PromiseMade(
                    text="Call back with the delivery date",
                    due_within=Duration(seconds=int(PROMISE_DUE_WITHIN.total_seconds())),
                    kind=interaction_pb2.PROMISE_KIND_CALL_BACK,
                )
            ],
        ),
        request_id=request_id,
    )


def recorder(
    stub: interactions_grpc.InteractionsServiceAsyncStub, contacts: int, rng: random.Random
) -> Callable[[int], Awaitable[interactions_pb.RecordInteractionResponse]]:
    """`record(n)`: the n-th touch of this run, with a random known contact."""
    run = uuid.uuid4().hex[:8]

    async def record(n: int) -> interactions_pb.RecordInteractionResponse:
        request = record_request(seeded_contact(rng.randrange(contacts)), f"{run}-{n}")
        reply: interactions_pb.RecordInteractionResponse = await stub.RecordInteraction(
            request, metadata=METADATA
        )
        return reply

    return record


async def record_load(server: Server, profile: Profile, rng: random.Random) -> LoadResult:
    """RecordInteraction in a closed loop (the null servicer ignores who the contact is)."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = interactions_grpc.InteractionsServiceStub(channel)
        record = recorder(stub, profile.timeline.known_contacts, rng)
        return await loaded(record, "RecordInteraction", server, profile)


async def fresh_record_load(
    workdir: Path, profile: Profile, rng: random.Random
) -> tuple[LoadResult, int]:
    """RecordInteraction on a fresh interactions service whose read model knows the contacts
    it is called with; returns the load and the service's RSS after it."""
    path = workdir / "interactions.db"
    await register_contacts(path, profile.timeline.known_contacts)
    async with standalone_service("interactions", workdir, path) as server:
        load = await record_load(server, profile, rng)
        return load, server.rss_bytes()


# --- pages -----------------------------------------------------------------------------------


async def time_pages(
    fetch: Callable[[T | None], Awaitable[T | None]], sizes: TimelineSizes, what: str
) -> PageTimes:
    """`fetch(cursor)` gets one page after `cursor` (None: the first) and returns the cursor of
    the next (None after the last). Times `first_pages` first pages, then `walks` walks of the
    whole timeline, counting the pages of the second half of each walk as deep."""
    first = Latencies()
    expected = -(-sizes.hot_contact // sizes.page_size)
    progress = Progress(what, sizes.first_pages + sizes.walks * expected, unit=" pages")
    for _ in range(sizes.first_pages):
        progress.advance()
        t0 = time.perf_counter()
        await fetch(None)
        first.add(time.perf_counter() - t0)
    deep = Latencies()
    pages = 0
    for _ in range(sizes.walks):
        cursor: T | None = None
        pages = 0
        while True:
            t0 = time.perf_counter()
            cursor = await fetch(cursor)
            elapsed = time.perf_counter() - t0
            progress.advance()
            pages += 1
            if pages > expected // 2:
                deep.add(elapsed)
            if cursor is None:
                break
        if pages != expected:
            raise AssertionError(f"a walk of {HOT_CONTACT} took {pages} pages, not {expected}")
    progress.finish()
    return PageTimes(first.summary(), deep.summary(), pages)


async def _store_pages(path: Path, sizes: TimelineSizes) -> PageTimes:
    """The store's timeline query in process, with the cursor the use case puts in its token."""
    store = SqliteInteractionStore(path, event_codec.encode, ManualClock(SEED_EPOCH))
    timeline = TimelineFilter(HOT_CONTACT)
    size = sizes.page_size

    async def fetch(after: tuple[datetime, str] | None) -> tuple[datetime, str] | None:
        cursor = Cursor(*after) if after else None
        rows = await store.timeline(timeline, cursor, size + 1)
        if len(rows) <= size:
            return None
        last = rows[size - 1]
        return last.details.occurred_at, last.id

    try:
        return await time_pages(fetch, sizes, "store.timeline in process")
    finally:
        await store.close()


def _lister(
    stub: interactions_grpc.InteractionsServiceAsyncStub, page_size: int
) -> Callable[[str | None], Awaitable[str | None]]:
    """Pages of the hot contact's timeline as a service reads them: an agent's view is narrowed
    to their team's touches and their own, and the seeded touches are many agents' in many
    teams; a service sees them all, as the in-process query does."""

    async def fetch(token: str | None) -> str | None:
        request = interactions_pb.ListInteractionsRequest(
            contact_id=HOT_CONTACT, page_size=page_size, page_token=token or ""
        )
        reply = await stub.ListInteractions(request, metadata=SERVICE_METADATA)
        if not reply.interactions:
            raise AssertionError(f"ListInteractions of {HOT_CONTACT} returned an empty page")
        return reply.next_page_token or None

    return fetch


async def null_first_page(server: Server, sizes: TimelineSizes) -> LatencySummary:
    """The floor under ListInteractions: a canned page of 50 from the null servicer."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        fetch = _lister(interactions_grpc.InteractionsServiceStub(channel), sizes.page_size)
        latency, _ = await one_at_a_time(
            lambda n: fetch(None), sizes.first_pages, "ListInteractions on the null servicer"
        )
    return latency


async def seeded_timeline(
    workdir: Path, profile: Profile, null_floor: LatencySummary
) -> TimelineResults:
    """Seeds a timeline, times its pages in process, then through a service started on it."""
    sizes = profile.timeline
    path = workdir / "seeded" / "interactions.db"
    seed = await seed_timeline(path, sizes, time_limit=profile.seed_time_limit_seconds)
    footprint = await measure(
        path, "interaction", seed.count, "seeded; every third with one promise, as a timeline has"
    )
    if seed.count < seed.requested:
        # The hot contact's touches are spread over the whole seed: a cut seed has fewer.
        hot = min(sizes.hot_contact, -(-seed.count // _hot_every(sizes)))
        sizes = replace(sizes, interactions=seed.count, hot_contact=hot)
    in_process = await _store_pages(path, sizes)
    async with (
        standalone_service("interactions", workdir / "seeded-service", path) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        stub = interactions_grpc.InteractionsServiceStub(channel)
        through_grpc = await time_pages(
            _lister(stub, sizes.page_size), sizes, "ListInteractions, 1 in flight"
        )
        rss = server.rss_bytes()
    return TimelineResults(
        seed,
        sizes.hot_contact,
        sizes.page_size,
        in_process,
        null_floor,
        through_grpc,
        rss,
        footprint,
    )
