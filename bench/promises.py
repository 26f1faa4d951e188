"""Follow-up: the reminder scheduler over a million open promises, reminder lag, and how soon a
promise made in an interaction shows in the follow-up service.

Promises are seeded through the store's own row writer with the reminders the ledger plans for
them when they are made (24 h and 1 h before due, and at due). Two probe groups fall due at
known instants of a manual clock, so the scheduler's tick is timed in process on the real store
at `tick_at` and at the full count. Then the real services run with one NATS server: the
follow-up service on the seeded file, with its default settings, sends reminders for promises
that fall due a few seconds after they were written, and turns interactions recorded at a
steady rate into promises; the bench watches NATS for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import grpc
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.load import LoadResult, one_at_a_time, paced
from bench.processes import BENCH_TOKEN, METADATA, CpuMeter, Server, nats_server, service
from bench.profile import FollowupSizes, Profile
from bench.seed import SeedResult, checkpoint, for_seeding, write_batches
from bench.stats import Latencies, LatencySummary
from bench.timeline import CONTACT_POOL, recorder, register_contacts, seeded_contact
from crm.followup.v1 import events_pb2 as followup_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import reminder_pb2
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from followup.adapters import event_codec
from followup.adapters.sqlite_store import SCHEMA, SqlitePromiseStore
from followup.domain import lifecycle
from followup.domain.model import Channel, Promise, PromiseKind
from followup.domain.reminders import ReminderPolicy, plan
from followup.reminding import ReminderScheduler
from followup.settings import FollowupSettings
from promesa import sqlite as db
from promesa.clock import ManualClock
from promesa.ids import new_id
from promesa.settings import Env

POLICY = ReminderPolicy()  # the service's, with its default settings and no supervisors
KINDS = list(PromiseKind)
# Seeded times count from when the seed starts (system clock), because the service that later
# runs on the file reminds by the system clock: nothing seeded may fall due while it runs.
PROBE_A = timedelta(days=20)  # a group falls due when the tick is timed at `tick_at`
PROBE_B = timedelta(days=21)  # ... another at the full count
PROBE_LEAD = timedelta(minutes=30)  # probes are made this long before due: one reminder each
BACKGROUND_DUE = timedelta(days=30)  # the others fall due over the year after
YEAR_SECONDS = 365 * 86_400
# Building the indexes after the rows takes about a fifth of writing the rows (measured: 24 s
# after 126 s for 1M promises); the rows stop early enough for both to fit the time limit.
INDEX_SHARE = 0.2
WARM_UP_CALLS = 20
CONFIRM_SAMPLE = 100  # promise ids asked for with GetPromise after the pipeline


@cache
def service_defaults() -> FollowupSettings:
    """The follow-up service's settings when nothing but the tokens is set."""
    return FollowupSettings.from_env(Env({"CRM_API_TOKENS": f"{BENCH_TOKEN}=bench:agent"}))


@dataclass(frozen=True)
class TickTimes:
    """ReminderScheduler.tick in process on the seeded store (synchronous=FULL, as served)."""

    open_promises: int
    batch: int  # reminders each busy tick claimed and delivered
    busy: LatencySummary
    idle: LatencySummary  # nothing due: the claim's index probe and an empty transaction


@dataclass(frozen=True)
class LagResult:
    """Reminders of promises falling due evenly over a window, as a NATS subscriber saw them."""

    due: int
    window_seconds: float
    slack_seconds: float  # from the promises' commit to the first due time
    arrived: int
    lag: LatencySummary  # received minus due
    scheduler_interval_seconds: float
    cpu_percent: Mapping[str, float]


@dataclass(frozen=True)
class PipelineResult:
    """Interactions recorded at a steady rate, each with one promise, to PromiseMade on NATS."""

    rate: float
    record: LoadResult  # RecordInteraction as the client saw it at that rate
    promised: int  # interactions recorded, one promise each
    arrived: int  # PromiseMade seen within straggler_seconds of the last call's return
    latency: LatencySummary  # RecordInteraction sent -> PromiseMade received
    confirmed: int  # of `sampled` promises seen on NATS, how many GetPromise found
    sampled: int


@dataclass(frozen=True)
class FollowupResults:
    seed: SeedResult
    reminders_per_promise: int  # of the seeded promises, before the probes fell due
    ticks_small: TickTimes
    ticks_large: TickTimes
    lag: LagResult
    pipeline: PipelineResult
    followup_rss_bytes: int
    interactions_rss_bytes: int


# --- seeding ---------------------------------------------------------------------------------


def _promise(i: int, due_at: datetime, created_at: datetime) -> Promise:
    return lifecycle.created(
        Promise(
            id=new_id(),
            contact_id=seeded_contact(i % CONTACT_POOL),
            text="Call back with the delivery date",
            kind=KINDS[i % len(KINDS)],
            owner_id=f"agent-{i % 500:03d}",
            team=f"team-{i % 20:02d}",
            created_by="bench",
            due_at=due_at,
            created_at=created_at,
            channel=Channel.PHONE,
        )
    )


def _background(i: int, anchor: datetime) -> Promise:
    """Made in the days before `anchor`, due some time in the year from BACKGROUND_DUE after
    it: three reminders each, none due while the bench runs."""
    due_at = anchor + BACKGROUND_DUE + timedelta(seconds=i * 7919 % YEAR_SECONDS)
    return _promise(i, due_at, anchor - timedelta(seconds=i))


def _write(store: SqlitePromiseStore, promises: Iterable[Promise]) -> None:
    """Each promise with the reminders the ledger plans for it when it is made, in one
    transaction, through the store's own row writers."""
    with db.transaction(store._writer.conn) as conn:
        for p in promises:
            store._save(conn, p, 0)
            store._insert(conn, plan(p, p.created_at, POLICY, "", new_id))


def _secondary_indexes() -> list[str]:
    return re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", SCHEMA)


async def seed_promises(
    path: Path, sizes: FollowupSizes, *, time_limit: float
) -> tuple[SeedResult, TickTimes, TickTimes]:
    """Seeds two probe groups and background promises up to `tick_at`, times the tick, then
    seeds on to `promises` (fewer if `time_limit` runs out) and times it again.

    The bulk goes in without the secondary indexes and without a rollback journal, and the
    adapter's own schema builds the indexes afterwards: the same file, written about 1.4 times
    as fast (measured at 200,000), and more so as the indexes outgrow the cache. The seed's
    time excludes the first timing.
    """
    probes = sizes.busy_ticks * service_defaults().reminder_batch
    anchor = datetime.now(UTC)
    store = SqlitePromiseStore(path, event_codec.encode, ManualClock(anchor))
    for_seeding(store)
    started = time.perf_counter()
    try:
        for due_at in (anchor + PROBE_A, anchor + PROBE_B):
            _write(store, (_promise(j, due_at, due_at - PROBE_LEAD) for j in range(probes)))

        def background(start: int, end: int) -> None:
            _write(store, (_background(i, anchor) for i in range(start, end)))

        small_count = await write_batches(
            background, 2 * probes, sizes.tick_at, deadline=float("inf")
        )
        checkpoint(store, path)
        seeding = time.perf_counter() - started
        small = await time_ticks(path, anchor + PROBE_A, small_count, sizes)

        resumed = time.perf_counter()
        conn = store._writer.conn
        for name in _secondary_indexes():
            conn.execute(f"DROP INDEX {name}")
        conn.execute("PRAGMA journal_mode=OFF")
        deadline = resumed + time_limit / (1 + INDEX_SHARE) - seeding
        count = await write_batches(background, small_count, sizes.promises, deadline=deadline)
        rows_done = time.perf_counter()
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)
        file_bytes = checkpoint(store, path)
        index_seconds = time.perf_counter() - rows_done
        seeding += time.perf_counter() - resumed
    finally:
        await store.close()
    large = await time_ticks(path, anchor + PROBE_B, count, sizes)
    seed = SeedResult(
        requested=sizes.promises,
        count=count,
        seconds=round(seeding, 2),
        file_bytes=file_bytes,
        time_limit_seconds=time_limit,
        index_seconds=round(index_seconds, 2),
    )
    return seed, small, large


async def time_ticks(
    path: Path, due_at: datetime, open_promises: int, sizes: FollowupSizes
) -> TickTimes:
    """Idle ticks an hour before a probe group is due, then busy ticks once it is."""
    defaults = service_defaults()
    clock = ManualClock(due_at - timedelta(hours=1))
    store = SqlitePromiseStore(path, event_codec.encode, clock)
    scheduler = ReminderScheduler(
        store, clock, policy=POLICY, lease=defaults.reminder_lease, batch=defaults.reminder_batch
    )

    async def timed(ticks: int, expected: int) -> LatencySummary:
        latencies = Latencies()
        for _ in range(ticks):
            t0 = time.perf_counter()
            delivered = await scheduler.tick()
            latencies.add(time.perf_counter() - t0)
            if delivered != expected:
                raise AssertionError(f"a tick delivered {delivered} reminders, not {expected}")
        return latencies.summary()

    try:
        idle = await timed(sizes.idle_ticks, 0)
        clock.set(due_at)
        busy = await timed(sizes.busy_ticks, defaults.reminder_batch)
        # What the ticks wrote to the outbox is marked sent, as the relay would have done.
        while rows := await store.pending_events(1_000):
            await store.mark_events_sent([seq for seq, _ in rows])
    finally:
        await store.close()
    return TickTimes(open_promises, defaults.reminder_batch, busy, idle)


# --- the running services --------------------------------------------------------------------


class Arrivals:
    """When each promise id first showed on a NATS subject (time.time()), and a wait for some."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._wanted: set[str] = set()
        self._missing = 0
        self._all = asyncio.Event()

    def arrived(self, promise_id: str) -> None:
        if promise_id in self.at:
            return
        self.at[promise_id] = time.time()
        if promise_id in self._wanted:
            self._missing -= 1
            if not self._missing:
                self._all.set()

    async def wait(self, wanted: Iterable[str], deadline: float) -> None:
        """Until every wanted id has shown, or time.time() passes `deadline`."""
        self._wanted = set(wanted)
        self._missing = len(self._wanted - self.at.keys())
        if self._missing:
            self._all.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all.wait(), max(0.0, deadline - time.time()))


async def _subscribe(
    url: str, subject: str, arrivals: Arrivals, promise_of: Callable[[bytes], str]
) -> Client:
    """Notes each message on `subject` by the promise id its payload names."""

    async def on_message(msg: Msg) -> None:
        arrivals.arrived(promise_of(msg.data))

    nc = await nats.connect(url)
    await nc.subscribe(subject, cb=on_message)
    await nc.flush()
    return nc


async def reminder_lag(
    path: Path, nats_url: str, sizes: FollowupSizes, watch: Mapping[str, int]
) -> LagResult:
    """Writes `due` promises into the running service's store, due evenly over the window from
    a few seconds on (system clock), and times each reminder's arrival against its due time."""
    seen = Arrivals()
    subject = f"{event_codec.REMINDERS_PREFIX}.>"
    nc = await _subscribe(
        nats_url, subject, seen, lambda data: reminder_pb2.Reminder.FromString(data).promise_id
    )
    try:
        now = datetime.now(UTC)
        first = now + timedelta(seconds=sizes.due_lead_seconds)
        step = timedelta(seconds=sizes.due_window_seconds / sizes.due)
        promises = [_promise(i, first + i * step, now) for i in range(sizes.due)]
        store = SqlitePromiseStore(path, event_codec.encode, ManualClock(now))
        try:
            _write(store, promises)
        finally:
            await store.close()
        slack = (first - datetime.now(UTC)).total_seconds()
        meter = CpuMeter({"bench client": os.getpid(), **watch})
        meter.start()
        last = promises[-1].due_at.timestamp()
        await seen.wait((p.id for p in promises), last + sizes.straggler_seconds)
        cpu = meter.stop()
    finally:
        await nc.close()
    lags = Latencies()
    for p in promises:
        if p.id in seen.at:
            lags.add(seen.at[p.id] - p.due_at.timestamp())
    return LagResult(
        due=sizes.due,
        window_seconds=sizes.due_window_seconds,
        slack_seconds=round(slack, 2),
        arrived=len(lags),
        lag=lags.summary(),
        scheduler_interval_seconds=service_defaults().scheduler_interval_seconds,
        cpu_percent=cpu,
    )


async def pipeline(
    interactions: Server,
    followup: Server,
    nats_url: str,
    profile: Profile,
    rng: random.Random,
) -> PipelineResult:
    """RecordInteraction at `pipeline_rate` for `pipeline_seconds`, each with one promise, and
    when PromiseMade for that promise (its id is in the reply) appears on NATS."""
    sizes = profile.followup
    contacts = profile.timeline.known_contacts
    sent: dict[str, float] = {}
    seen = Arrivals()
    nc = await _subscribe(
        nats_url,
        "crm.followup.promise_made",
        seen,
        lambda data: followup_events.PromiseMade.FromString(data).promise_id,
    )
    try:
        async with grpc.aio.insecure_channel(interactions.address) as channel:
            stub = interactions_grpc.InteractionsServiceStub(channel)
            await one_at_a_time(recorder(stub, contacts, rng), WARM_UP_CALLS)
            record = recorder(stub, contacts, rng)

            async def timed(n: int) -> None:
                t0 = time.time()
                reply = await record(n)
                sent[reply.interaction.promises[0].id] = t0

            load = await paced(
                timed,
                rate=sizes.pipeline_rate,
                duration=sizes.pipeline_seconds,
                watch={**interactions.watched(), **followup.watched()},
            )
        await seen.wait(sent, time.time() + sizes.straggler_seconds)
    finally:
        await nc.close()
    latencies = Latencies()
    for promise_id, t0 in sent.items():
        if promise_id in seen.at:
            latencies.add(seen.at[promise_id] - t0)
    arrived = [p for p in sent if p in seen.at]
    sample = rng.sample(arrived, min(CONFIRM_SAMPLE, len(arrived)))
    return PipelineResult(
        rate=sizes.pipeline_rate,
        record=load,
        promised=len(sent),
        arrived=len(arrived),
        latency=latencies.summary(),
        confirmed=await _found(followup, sample),
        sampled=len(sample),
    )


async def _found(server: Server, promise_ids: list[str]) -> int:
    """How many of the promises GetPromise finds."""
    found = 0
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = followup_grpc.FollowupServiceStub(channel)
        for promise_id in promise_ids:
            with contextlib.suppress(grpc.aio.AioRpcError):
                await stub.GetPromise(
                    followup_pb.GetPromiseRequest(id=promise_id), metadata=METADATA
                )
                found += 1
    return found


async def followup_bench(workdir: Path, profile: Profile, rng: random.Random) -> FollowupResults:
    """Seeds and times the scheduler, then runs interactions and follow-up on one NATS."""
    sizes = profile.followup
    path = workdir / "followup" / "followup.db"
    seed, small, large = await seed_promises(
        path, sizes, time_limit=profile.seed_time_limit_seconds
    )
    pipeline_dir = workdir / "pipeline"
    interactions_db = pipeline_dir / "interactions.db"
    await register_contacts(interactions_db, profile.timeline.known_contacts)
    async with (
        nats_server(pipeline_dir) as nats_srv,
        service("interactions", pipeline_dir, interactions_db, nats_srv) as interactions,
        service("followup", pipeline_dir, path, nats_srv) as followup,
    ):
        lag = await reminder_lag(path, nats_srv.url, sizes, followup.watched())
        flow = await pipeline(interactions, followup, nats_srv.url, profile, rng)
        followup_rss, interactions_rss = followup.rss_bytes(), interactions.rss_bytes()
    return FollowupResults(
        seed=seed,
        reminders_per_promise=len(POLICY.before_due) + 1,
        ticks_small=small,
        ticks_large=large,
        lag=lag,
        pipeline=flow,
        followup_rss_bytes=followup_rss,
        interactions_rss_bytes=interactions_rss,
    )
