"""Event -> effect at a low rate, on every durable consumer of every service.

Contacts, interactions and follow-up run on one NATS server, each on a fresh SQLite file, as
deployed. One step at a time, at most `rate` a second: the bench creates a contact, then
records an interaction with one promise for it; once every customer has been, every fourth
is merged into the one before, and then every fourth (others) erased. From each call's reply
it polls, every POLL seconds, for the effect of the event that call published in each
consumer:

| consumer              | event                          | effect polled for                    |
|-----------------------|--------------------------------|--------------------------------------|
| interactions-contacts | crm.contacts.created           | interactions knows the contact       |
| followup-contacts     | crm.contacts.created           | follow-up holds its profile          |
| followup-interactions | crm.interactions.recorded      | the promise exists in follow-up      |
| contacts-interactions | crm.interactions.recorded      | the contact's last touch is set      |
| interactions-contacts | crm.contacts.erased            | interactions confirmed the erasure   |
| followup-contacts     | crm.contacts.erased            | follow-up confirmed the erasure      |
| contacts-interactions | ...contact_erasure_confirmed   | contacts holds interactions' confirm |
| contacts-followup     | ...contact_erasure_confirmed   | contacts holds follow-up's confirm   |
| interactions-contacts | crm.contacts.merged            | the touch moved to the survivor      |
| followup-contacts     | crm.contacts.merged            | the promise moved to the survivor    |

The effects are read in the bench process through each service's own store (its port's read
methods, on its read connection): a committed row is what the service's next read sees, and
polling a file costs the services nothing, where polling their RPCs every 2 ms would load the
very processes being timed. The confirmations of an erasure are two hops (the erasure applied
and confirmed in the other service, then the confirmation consumed by contacts). The
RecordInteraction that follows each creation also checks the first row end to end: it is
retried while refused, and refusals after interactions' store knew the contact are counted.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc

from bench.processes import METADATA, SERVICE_METADATA, CpuMeter, Server, nats_server, service
from bench.profile import PropagationSizes
from bench.progress import say, ticking
from bench.stats import Latencies, LatencySummary
from bench.timeline import record_request
from contacts.adapters import event_codec as contacts_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from followup.adapters import event_codec as followup_codec
from followup.adapters.sqlite_store import SqlitePromiseStore
from interactions.adapters import event_codec as interactions_codec
from interactions.adapters.sqlite_store import SqliteInteractionStore
from promesa.clock import ManualClock

POLL = 0.002  # seconds between two reads of an effect
GIVE_UP_AFTER = 3  # customers in a row whose calls failed: a service is stuck, the run stops
Check = Callable[[], Awaitable[bool]]

# (consumer, event, effect): the rows of the table, in the order the report shows them.
CREATED_IN_INTERACTIONS = ("interactions-contacts", "contacts.created", "contact known")
CREATED_IN_FOLLOWUP = ("followup-contacts", "contacts.created", "profile held")
RECORDED_IN_FOLLOWUP = ("followup-interactions", "interactions.recorded", "promise made")
RECORDED_IN_CONTACTS = ("contacts-interactions", "interactions.recorded", "last touch set")
ERASED_IN_INTERACTIONS = ("interactions-contacts", "contacts.erased", "erasure confirmed")
ERASED_IN_FOLLOWUP = ("followup-contacts", "contacts.erased", "erasure confirmed")
CONFIRMED_BY_INTERACTIONS = (
    "contacts-interactions",
    "interactions.contact_erasure_confirmed",
    "confirmation held (2 hops)",
)
CONFIRMED_BY_FOLLOWUP = (
    "contacts-followup",
    "followup.contact_erasure_confirmed",
    "confirmation held (2 hops)",
)
MERGED_IN_INTERACTIONS = ("interactions-contacts", "contacts.merged", "touch moved")
MERGED_IN_FOLLOWUP = ("followup-contacts", "contacts.merged", "promise moved")
ROWS = [
    CREATED_IN_INTERACTIONS,
    CREATED_IN_FOLLOWUP,
    RECORDED_IN_FOLLOWUP,
    RECORDED_IN_CONTACTS,
    ERASED_IN_INTERACTIONS,
    ERASED_IN_FOLLOWUP,
    CONFIRMED_BY_INTERACTIONS,
    CONFIRMED_BY_FOLLOWUP,
    MERGED_IN_INTERACTIONS,
    MERGED_IN_FOLLOWUP,
]


@dataclass(frozen=True)
class EffectLatency:
    """From the reply of the call that published `event` to its effect seen in `consumer`."""

    consumer: str  # the durable consumer's name
    event: str
    effect: str
    latency: LatencySummary
    missed: int  # not seen within the deadline


@dataclass(frozen=True)
class PropagationResults:
    rate: float  # customers a second at most, one at a time
    customers: int
    seconds: float
    poll_ms: float
    deadline_seconds: float
    effects: list[EffectLatency]
    refused_after_known: int  # RecordInteraction refused once interactions' store knew the contact
    call_errors: dict[str, int]  # by "step: status code": calls that failed, ending a customer
    cpu_percent: dict[str, float]
    rss_bytes: dict[str, int]  # of each service after the run


class _Stores:
    """The three services' stores, opened in the bench process on their live files: reads
    only."""

    def __init__(self, workdir: Path) -> None:
        clock = ManualClock(datetime.now(UTC))
        self.contacts = SqliteContactStore(workdir / "contacts.db", contacts_codec.encode, clock)
        self.interactions = SqliteInteractionStore(
            workdir / "interactions.db", interactions_codec.encode, clock
        )
        self.followup = SqlitePromiseStore(workdir / "followup.db", followup_codec.encode, clock)

    async def close(self) -> None:
        await self.contacts.close()
        await self.interactions.close()
        await self.followup.close()


class _Customer:
    """One customer's run through the system: the calls, and the polls for their effects."""

    def __init__(
        self,
        n: int,
        tag: str,
        stores: _Stores,
        contacts: contacts_grpc.ContactsServiceAsyncStub,
        interactions: interactions_grpc.InteractionsServiceAsyncStub,
        sizes: PropagationSizes,
        run: _Run,
    ) -> None:
        self.n = n
        self._tag = tag
        self._s = stores
        self._contacts = contacts
        self._interactions = interactions
        self._deadline = sizes.deadline_seconds
        self._tally = run
        self.contact_id = ""
        self.interaction_id = ""
        self.promise_id = ""

    async def _until(self, row: tuple[str, str, str], since: float, check: Check) -> bool:
        """Polls `check` until it holds (its latency from `since` noted under `row`) or the
        deadline passes (a miss)."""
        while True:
            if await check():
                self._tally.seen[row].add(time.perf_counter() - since)
                return True
            if time.perf_counter() - since > self._deadline:
                self._tally.missed[row] += 1
                return False
            await asyncio.sleep(POLL)

    async def _all(self, since: float, *polls: tuple[tuple[str, str, str], Check]) -> bool:
        done = await asyncio.gather(*(self._until(row, since, check) for row, check in polls))
        return all(done)

    async def create(self) -> bool:
        s = self._s
        request = contacts_pb.CreateContactRequest(
            contact=contact_pb2.Contact(
                display_name=f"Propagated {self.n}",
                emails=[f"propagated-{self._tag}-{self.n}@bench.example"],
                kind=contact_pb2.CONTACT_KIND_PERSON,
            ),
            request_id=f"{self._tag}-create-{self.n}",
        )
        reply = await self._contacts.CreateContact(
            request, metadata=METADATA, timeout=self._deadline
        )
        since = time.perf_counter()
        cid = self.contact_id = reply.contact.id

        async def known() -> bool:
            return await s.interactions.contact(cid) is not None

        async def profiled() -> bool:
            return await s.followup.profile(cid) is not None

        return await self._all(
            since, (CREATED_IN_INTERACTIONS, known), (CREATED_IN_FOLLOWUP, profiled)
        )

    async def record(self) -> bool:
        """RecordInteraction with one promise, retried while refused (the contact not known
        to interactions yet), then the effects of the interaction it recorded."""
        s = self._s
        cid = self.contact_id
        started = time.perf_counter()
        request = record_request(cid, f"{self._tag}-record-{self.n}")
        while True:
            try:
                reply = await self._interactions.RecordInteraction(
                    request, metadata=METADATA, timeout=self._deadline
                )
                break
            except grpc.aio.AioRpcError:
                if await s.interactions.contact(cid) is not None:
                    self._tally.refused += 1
                if time.perf_counter() - started > self._deadline:
                    return False
                await asyncio.sleep(POLL)
        since = time.perf_counter()
        self.interaction_id = reply.interaction.id
        pid = self.promise_id = reply.interaction.promises[0].id

        async def promised() -> bool:
            return await s.followup.get(pid) is not None

        async def touched() -> bool:
            contact = await s.contacts.get(cid)
            return contact is not None and contact.last_interaction_at is not None

        return await self._all(
            since, (RECORDED_IN_FOLLOWUP, promised), (RECORDED_IN_CONTACTS, touched)
        )

    async def erase(self) -> None:
        s = self._s
        cid = self.contact_id
        request = contacts_pb.EraseContactRequest(id=cid, reason="bench: event -> effect")
        await self._contacts.EraseContact(
            request, metadata=SERVICE_METADATA, timeout=self._deadline
        )
        since = time.perf_counter()

        async def erased_in_interactions() -> bool:
            known = await s.interactions.contact(cid)
            return known is not None and known.erasure_confirmed_at is not None

        async def erased_in_followup() -> bool:
            fate = await s.followup.fate(cid)
            return fate is not None and fate.erasure_confirmed_at is not None

        def confirmed_by(service_name: str) -> Check:
            async def check() -> bool:
                record = await s.contacts.erasure(cid)
                return record is not None and any(
                    c.service == service_name for c in record.confirmations
                )

            return check

        await self._all(
            since,
            (ERASED_IN_INTERACTIONS, erased_in_interactions),
            (ERASED_IN_FOLLOWUP, erased_in_followup),
            (CONFIRMED_BY_INTERACTIONS, confirmed_by("interactions")),
            (CONFIRMED_BY_FOLLOWUP, confirmed_by("followup")),
        )

    async def merge_into(self, survivor: _Customer) -> None:
        s = self._s
        iid, pid, target = self.interaction_id, self.promise_id, survivor.contact_id
        request = contacts_pb.MergeContactsRequest(
            survivor_id=target,
            duplicate_id=self.contact_id,
            request_id=f"{self._tag}-merge-{self.n}",
        )
        await self._contacts.MergeContacts(request, metadata=METADATA, timeout=self._deadline)
        since = time.perf_counter()

        async def touch_moved() -> bool:
            touch = await s.interactions.get(iid)
            return touch is not None and touch.contact_id == target

        async def promise_moved() -> bool:
            promise = await s.followup.get(pid)
            return promise is not None and promise.contact_id == target

        await self._all(
            since, (MERGED_IN_INTERACTIONS, touch_moved), (MERGED_IN_FOLLOWUP, promise_moved)
        )


class _Run:
    """The tallies of one run: latencies and misses by row, failed calls, refusals."""

    def __init__(self) -> None:
        self.seen = {row: Latencies() for row in ROWS}
        self.missed = dict.fromkeys(ROWS, 0)
        self.errors: Counter[str] = Counter()
        self.refused = 0

    async def paced(
        self,
        what: str,
        steps: Sequence[tuple[str, Callable[[], Awaitable[object]]]],
        sizes: PropagationSizes,
    ) -> int:
        """Runs each (name, step) one after the other, no sooner than 1/rate apart, until the
        time limit; a step whose call fails is counted and skipped, and GIVE_UP_AFTER in a row
        (a service stuck) end the phase. Returns how many steps were run."""
        started = time.perf_counter()
        done = failing = 0

        def status() -> str:
            rate = done / (time.perf_counter() - started)
            line = f"event -> effect, {what}: {done} of {len(steps)} ({rate:.1f}/s)"
            p99s = [(lat.summary().p99_ms or 0.0, row) for row, lat in self.seen.items()]
            worst, row = max(p99s)
            if worst:
                line += f"; worst p99 so far {worst:.1f} ms ({row[1]} -> {row[0]})"
            return line

        async with ticking(status):
            for n, (name, step) in enumerate(steps):
                if time.perf_counter() - started > sizes.time_limit_seconds:
                    say(f"event -> effect, {what}: time limit reached after {done}")
                    break
                delay = started + n / sizes.rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    await step()
                    failing = 0
                except grpc.aio.AioRpcError as exc:
                    self.errors[f"{name}: {exc.code().name}"] += 1
                    say(f"event -> effect, {what} {n}: {name} failed: {exc.code().name}")
                    failing += 1
                done += 1
                if failing == GIVE_UP_AFTER:
                    say(f"event -> effect, {what}: {failing} in a row failed; stopped")
                    break
        return done


async def _customers(
    contacts: Server, interactions: Server, stores: _Stores, sizes: PropagationSizes
) -> tuple[int, _Run]:
    """Three phases, each one step at a time at most `rate` a second: every customer created
    and touched; every fourth merged into the one before; every fourth (others) erased.
    Merges and erasures come last, so that one that breaks a service spoils no other row."""
    run = _Run()
    tag = uuid.uuid4().hex[:8]
    async with (
        grpc.aio.insecure_channel(contacts.address) as contacts_channel,
        grpc.aio.insecure_channel(interactions.address) as interactions_channel,
    ):
        contacts_stub = contacts_grpc.ContactsServiceStub(contacts_channel)
        interactions_stub = interactions_grpc.InteractionsServiceStub(interactions_channel)
        customers = [
            _Customer(n, tag, stores, contacts_stub, interactions_stub, sizes, run)
            for n in range(sizes.customers)
        ]

        def touched(c: _Customer) -> Callable[[], Awaitable[object]]:
            async def step() -> None:
                if await c.create():
                    await c.record()

            return step

        done = await run.paced(
            "create, touch", [("create, touch", touched(c)) for c in customers], sizes
        )
        ready = [c for c in customers[:done] if c.promise_id]
        merges = [
            ("MergeContacts", functools.partial(c.merge_into, survivor))
            for survivor, c in itertools.pairwise(ready)
            if c.n % 4 == 3 and survivor.n == c.n - 1
        ]
        await run.paced("merge", merges, sizes)
        erasures = [("EraseContact", c.erase) for c in ready if c.n % 4 == 1]
        await run.paced("erase", erasures, sizes)
    return done, run


async def event_to_effect(workdir: Path, sizes: PropagationSizes) -> PropagationResults:
    """Starts the three services on one NATS server and times every consumer's effect."""
    say(f"event -> effect: starting contacts, interactions and follow-up in {workdir.name}...")
    async with (
        nats_server(workdir) as nats,
        service("contacts", workdir, workdir / "contacts.db", nats) as contacts,
        service("interactions", workdir, workdir / "interactions.db", nats) as interactions,
        service("followup", workdir, workdir / "followup.db", nats) as followup,
    ):
        stores = _Stores(workdir)
        watched = {
            "bench client": os.getpid(),
            **contacts.watched(),
            **interactions.watched(),
            **followup.watched(),
        }
        meter = CpuMeter(watched)
        try:
            meter.start()
            started = time.perf_counter()
            done, run = await _customers(contacts, interactions, stores, sizes)
            seconds = time.perf_counter() - started
            cpu = meter.stop()
            rss = {s.name: s.rss_bytes() for s in (contacts, interactions, followup)}
        finally:
            await stores.close()
    effects = [
        EffectLatency(consumer, event, effect, run.seen[row].summary(), run.missed[row])
        for row in ROWS
        for consumer, event, effect in [row]
    ]
    worst = max((e.latency.p99_ms or 0.0 for e in effects), default=0.0)
    say(f"event -> effect: {done} customers in {seconds:.1f} s; worst p99 {worst:.1f} ms")
    return PropagationResults(
        rate=sizes.rate,
        customers=done,
        seconds=round(seconds, 2),
        poll_ms=POLL * 1000,
        deadline_seconds=sizes.deadline_seconds,
        effects=effects,
        refused_after_known=run.refused,
        call_errors=dict(run.errors),
        cpu_percent=cpu,
        rss_bytes=rss,
    )
