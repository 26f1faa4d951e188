"""Follow-up: the reminder scheduler over a million open promises, reminder lag, and how soon a
promise made in an interaction shows in the follow-up service.

Promises are seeded through the store's own row writer with the reminders the ledger plans for
them when they are made (24 h and 1 h before due, and at due). Two probe groups fall due at
known instants of a manual clock, so the scheduler's tick is timed in process on the real store
at `tick_at` and at the full count. Then the real services run with one NATS server: the
follow-up service on the seeded file, with its default settings, sends reminders for promises
made with CreatePromise that fall due a few seconds later, and turns interactions recorded at
a steady rate into promises; the bench watches NATS for both. That part runs once per run of
the bench, on the same seeded file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import grpc
import nats
from google.protobuf.timestamp_pb2 import Timestamp
from nats.aio.client import Client
from nats.aio.msg import Msg

from bench.footprint import Footprint, measure
from bench.load import LoadResult, one_at_a_time, paced
from bench.processes import (
    API_TOKENS,
    BENCH_SUBJECT,
    METADATA,
    CpuMeter,
    Server,
    nats_server,
    service,
)
from bench.profile import FollowupSizes, Profile
from bench.progress import Progress, say, ticking
from bench.seed import SeedResult, checkpoint, for_seeding, write_batches, writer
from bench.stats import Latencies, LatencySummary
from bench.timeline import CONTACT_POOL, recorder, register_contacts, seeded_contact
from crm.followup.v1 import events_pb2 as followup_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import promise_pb2, reminder_pb2
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from followup.adapters import event_codec
from followup.adapters.sqlite_store import SCHEMA, SqlitePromiseStore
from followup.domain import lifecycle
from followup.domain.model import Channel, Promise, PromiseKind
from followup.domain.reminders import ReminderPolicy, plan
from followup.ports import Change
from followup.reminding import ReminderScheduler
from followup.settings import FollowupSettings
from promesa.clock import ManualClock
from promesa.event_catalog import FOLLOWUP, INTERACTIONS
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
CALIBRATION_CALLS = 200  # CreatePromise calls timed (after as many more) before the lag run
CREATE_MARGIN = 1.5  # the creates are given this many times the time the calibration predicts


@cache
def service_defaults() -> FollowupSettings:
    """The follow-up service's settings when nothing but the tokens is set."""
    return FollowupSettings.from_env(Env({"CRM_API_TOKENS": API_TOKENS}))


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
    create_errors: int  # CreatePromise calls that failed (their promises are left out)


@dataclass(frozen=True)
class PipelineResult:
    """Interactions recorded at a steady rate, each with one promise, to PromiseMade on NATS."""

    rate: float
    record: LoadResult  # RecordInteraction as the client saw it at that rate
    promised: int  # interactions recorded, one promise each
    arrived: int  # PromiseMade seen within straggler_seconds of the last call's return
    latency: LatencySummary  # RecordInteraction sent -> PromiseMade received
    # The two hops of it: sent -> InteractionRecorded on NATS (interactions' commit and outbox
    # relay), then InteractionRecorded -> PromiseMade (follow-up's consumer, commit and relay).
    recorded_on_nats: LatencySummary
    recorded_to_promise: LatencySummary
    confirmed: int  # of `sampled` promises seen on NATS, how many GetPromise found
    sampled: int


@dataclass(frozen=True)
class FollowupRun:
    """One run of the services on the seeded file (started afresh each run, on one NATS of
    their own): the reminder lag, then the pipeline."""

    lag: LagResult
    pipeline: PipelineResult
    followup_rss_bytes: int
    interactions_rss_bytes: int
    open_promises: int  # before the run: the seeded ones and those the runs before it made
    seconds: float


@dataclass(frozen=True)
class FollowupResults:
    seed: SeedResult
    reminders_per_promise: int  # of the seeded promises, before the probes fell due
    ticks_small: TickTimes
    ticks_large: TickTimes
    footprint: Footprint  # of the seeded file, per open promise
    runs: list[FollowupRun]  # on the same file, one after the other


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


async def _write(store: SqlitePromiseStore, promises: Iterable[Promise]) -> None:
    """Each promise with the reminders the ledger plans for it when it is made, in one
    transaction, through the store's own commit."""
    change = Change()
    for p in promises:
        change.saves.append((p, 0))
        # Added, not replanned: a new promise has no reminders to replace, and a replan's
        # delete would scan the whole table while the seed runs without its indexes.
        change.added.extend(plan(p, p.created_at, POLICY, "", new_id))
    await store.commit(change)


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
            await _write(store, (_promise(j, due_at, due_at - PROBE_LEAD) for j in range(probes)))

        async def background(start: int, end: int) -> None:
            await _write(store, (_background(i, anchor) for i in range(start, end)))

        small_count = await write_batches(
            background, 2 * probes, sizes.tick_at, deadline=float("inf"), what="open promises"
        )
        checkpoint(store, path)
        seeding = time.perf_counter() - started
        small = await time_ticks(path, anchor + PROBE_A, small_count, sizes)

        resumed = time.perf_counter()
        conn = writer(store)
        for name in _secondary_indexes():
            conn.execute(f"DROP INDEX {name}")
        conn.execute("PRAGMA journal_mode=OFF").fetchall()
        deadline = resumed + time_limit / (1 + INDEX_SHARE) - seeding
        count = await write_batches(
            background, small_count, sizes.promises, deadline=deadline, what="open promises"
        )
        rows_done = time.perf_counter()
        conn.execute("PRAGMA journal_mode=WAL").fetchall()
        building = f"building the promise indexes over {count:,} promises"
        say(f"{building}...")
        async with ticking(lambda: f"{building}: {time.perf_counter() - rows_done:.0f} s"):
            # On a thread, so the progress line keeps coming; nothing else uses the connection.
            await asyncio.to_thread(conn.executescript, SCHEMA)
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

    say(f"ReminderScheduler.tick in process with {open_promises:,} open promises...")
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


def _create_request(index: int, due_at: datetime, run: str) -> followup_pb.CreatePromiseRequest:
    """A promise the bench's agent makes for itself (unassigned, so an agent may), due at
    `due_at`: the service plans its reminder at due."""
    due = Timestamp()
    due.FromDatetime(due_at)
    return followup_pb.CreatePromiseRequest(
        promise=promise_pb2.Promise(
            contact_id=seeded_contact(index % CONTACT_POOL),
            text="Call back with the delivery date",
            kind=promise_pb2.PROMISE_KIND_CALL_BACK,
            channel=promise_pb2.CHANNEL_PHONE,
            owner_id=BENCH_SUBJECT,
            due_at=due,
        ),
        request_id=f"{run}-{index}",
    )


async def _create_promises(
    stub: followup_grpc.FollowupServiceAsyncStub,
    requests: list[followup_pb.CreatePromiseRequest],
    in_flight: int,
    what: str,
) -> tuple[list[str], int]:
    """CreatePromise for each request, `in_flight` at a time; the ids made (in request order,
    "" for a call that failed) and how many failed."""
    ids = [""] * len(requests)
    failed = 0
    pending = iter(range(len(requests)))
    counter = Progress(what, len(requests))

    async def worker() -> None:
        nonlocal failed
        for i in pending:
            try:
                reply = await stub.CreatePromise(requests[i], metadata=METADATA)
                ids[i] = reply.promise.id
            except grpc.aio.AioRpcError:
                failed += 1
            counter.advance()

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    counter.finish()
    return ids, failed


async def reminder_lag(
    followup: Server, nats_url: str, sizes: FollowupSizes, in_flight: int
) -> LagResult:
    """Makes `due` promises with CreatePromise, due evenly over the window, and times each
    reminder's arrival on NATS against its due time.

    Through the service, not into its file: a scheduler that sleeps until the next reminder it
    knows of hears of these only from the writes that plan them. How long the creates take is
    measured first (a few promises due in a month), so the first one falls due `due_lead`
    seconds after the last is made, with a margin."""
    seen = Arrivals()
    subject = f"{event_codec.REMINDERS_PREFIX}.>"
    nc = await _subscribe(
        nats_url, subject, seen, lambda data: reminder_pb2.Reminder.FromString(data).promise_id
    )
    run = uuid.uuid4().hex[:8]
    try:
        async with grpc.aio.insecure_channel(followup.address) as channel:
            stub = followup_grpc.FollowupServiceStub(channel)
            later = datetime.now(UTC) + BACKGROUND_DUE
            trial = [
                _create_request(i, later, f"{run}-trial") for i in range(2 * CALIBRATION_CALLS)
            ]
            await _create_promises(
                stub, trial[:CALIBRATION_CALLS], in_flight, "CreatePromise, warming up"
            )
            t0 = time.perf_counter()
            await _create_promises(
                stub, trial[CALIBRATION_CALLS:], in_flight, "CreatePromise, timing the creates"
            )
            rate = CALIBRATION_CALLS / (time.perf_counter() - t0)
            budget = CREATE_MARGIN * sizes.due / rate + sizes.due_lead_seconds
            first = datetime.now(UTC) + timedelta(seconds=budget)
            step = timedelta(seconds=sizes.due_window_seconds / sizes.due)
            due_at = [first + i * step for i in range(sizes.due)]
            requests = [_create_request(i, at, run) for i, at in enumerate(due_at)]
            ids, failed = await _create_promises(
                stub, requests, in_flight, f"CreatePromise, due from {budget:.1f} s on"
            )
        slack = (first - datetime.now(UTC)).total_seconds()
        say(
            f"reminder lag: waiting for {sizes.due:,} reminders due over the next"
            f" {slack + sizes.due_window_seconds:.1f} s..."
        )
        meter = CpuMeter({"bench client": os.getpid(), **followup.watched()})
        meter.start()
        made = [(promise_id, at) for promise_id, at in zip(ids, due_at, strict=True) if promise_id]
        async with ticking(lambda: f"reminder lag: {len(seen.at):,} of {len(made):,} arrived"):
            await seen.wait((p for p, _ in made), due_at[-1].timestamp() + sizes.straggler_seconds)
        cpu = meter.stop()
    finally:
        await nc.close()
    lags = Latencies()
    for promise_id, at in made:
        if promise_id in seen.at:
            lags.add(seen.at[promise_id] - at.timestamp())
    return LagResult(
        due=len(made),
        window_seconds=sizes.due_window_seconds,
        slack_seconds=round(slack, 2),
        arrived=len(lags),
        lag=lags.summary(),
        scheduler_interval_seconds=service_defaults().scheduler_interval_seconds,
        cpu_percent=cpu,
        create_errors=failed,
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
    interaction_of: dict[str, str] = {}  # promise id -> the interaction that made it
    seen = Arrivals()
    published = Arrivals()  # InteractionRecorded, by interaction id: the first hop's end
    nc = await _subscribe(
        nats_url,
        FOLLOWUP.subjects("promise_made")[0],
        seen,
        lambda data: followup_events.PromiseMade.FromString(data).promise_id,
    )
    recorded_nc = await _subscribe(
        nats_url,
        INTERACTIONS.subjects("recorded")[0],
        published,
        lambda data: interactions_events.InteractionRecorded.FromString(data).interaction_id,
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
                interaction_of[reply.interaction.promises[0].id] = reply.interaction.id

            load = await paced(
                timed,
                label="RecordInteraction (1 promise each)",
                rate=sizes.pipeline_rate,
                duration=sizes.pipeline_seconds,
                watch={**interactions.watched(), **followup.watched()},
            )
        async with ticking(lambda: f"PromiseMade seen for {len(seen.at):,} of {len(sent):,}"):
            await seen.wait(sent, time.time() + sizes.straggler_seconds)
    finally:
        await nc.close()
        await recorded_nc.close()
    latencies, first_hop, second_hop = Latencies(), Latencies(), Latencies()
    for promise_id, t0 in sent.items():
        if promise_id in seen.at:
            latencies.add(seen.at[promise_id] - t0)
        on_nats = published.at.get(interaction_of[promise_id])
        if on_nats is not None:
            first_hop.add(on_nats - t0)
            if promise_id in seen.at:
                second_hop.add(seen.at[promise_id] - on_nats)
    arrived = [p for p in sent if p in seen.at]
    sample = rng.sample(arrived, min(CONFIRM_SAMPLE, len(arrived)))
    return PipelineResult(
        rate=sizes.pipeline_rate,
        record=load,
        promised=len(sent),
        arrived=len(arrived),
        latency=latencies.summary(),
        recorded_on_nats=first_hop.summary(),
        recorded_to_promise=second_hop.summary(),
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


async def _services_run(
    workdir: Path,
    path: Path,
    interactions_db: Path,
    open_promises: int,
    profile: Profile,
    rng: random.Random,
) -> FollowupRun:
    """Interactions and follow-up (on the seeded file) on a NATS server of their own in
    `workdir`: the reminder lag, then the pipeline."""
    started = time.perf_counter()
    async with (
        nats_server(workdir) as nats_srv,
        service("interactions", workdir, interactions_db, nats_srv) as interactions,
        service("followup", workdir, path, nats_srv) as followup,
    ):
        lag = await reminder_lag(followup, nats_srv.url, profile.followup, profile.in_flight)
        flow = await pipeline(interactions, followup, nats_srv.url, profile, rng)
        followup_rss, interactions_rss = followup.rss_bytes(), interactions.rss_bytes()
    return FollowupRun(
        lag=lag,
        pipeline=flow,
        followup_rss_bytes=followup_rss,
        interactions_rss_bytes=interactions_rss,
        open_promises=open_promises,
        seconds=round(time.perf_counter() - started, 1),
    )


async def followup_bench(
    workdir: Path, profile: Profile, rng: random.Random, runs: int
) -> FollowupResults:
    """Seeds and times the scheduler once, then runs interactions and follow-up on that file
    `runs` times: a run adds about `due` + `pipeline_rate` x `pipeline_seconds` promises (1.5%
    of a million), so the runs after the first measure nearly the same store, and the seed,
    which takes minutes, is not repeated."""
    sizes = profile.followup
    path = workdir / "followup" / "followup.db"
    seed, small, large = await seed_promises(
        path, sizes, time_limit=profile.seed_time_limit_seconds
    )
    footprint = await measure(
        path,
        "open promise",
        seed.count,
        f"seeded with the reminders planned when made ({len(POLICY.before_due) + 1} each)",
    )
    interactions_db = workdir / "pipeline" / "interactions.db"
    await register_contacts(interactions_db, profile.timeline.known_contacts)
    done: list[FollowupRun] = []
    open_promises = seed.count
    for n in range(1, runs + 1):
        say(f"follow-up, run {n} of {runs}: reminder lag and interaction -> promise")
        run = await _services_run(
            workdir / f"run-{n}", path, interactions_db, open_promises, profile, rng
        )
        done.append(run)
        open_promises += 2 * CALIBRATION_CALLS + run.lag.due + run.pipeline.promised
    return FollowupResults(
        seed=seed,
        reminders_per_promise=len(POLICY.before_due) + 1,
        ticks_small=small,
        ticks_large=large,
        footprint=footprint,
        runs=done,
    )
