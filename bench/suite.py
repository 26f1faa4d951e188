"""The benchmark run, step by step: RPCs under load against the null servicer of the same run,
event -> effect at a low rate, email lookup at scale, timeline pages at scale, follow-up
(scheduler, reminder lag, interaction -> promise).

Issue 13's figures are medians of 3 runs: the steps that take seconds (RPCs, event -> effect,
the follow-up's reminder lag and pipeline) run `runs` times, each with its own servers, and
the report shows the median and the range. What takes minutes at full size, seeding a million
rows, is done once: the follow-up's runs reuse the seeded file.
"""

from __future__ import annotations

import asyncio
import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc

from bench import timeline
from bench.footprint import Footprint, measure
from bench.load import Call, LoadResult, loaded, median_load, one_at_a_time
from bench.processes import METADATA, Server, null_server, standalone_service
from bench.profile import Profile
from bench.progress import say
from bench.promises import FollowupResults, followup_bench
from bench.propagation import PropagationResults, event_to_effect
from bench.seed import SeedResult, seed_contacts, seeded_email, time_email_lookups
from bench.stats import LatencySummary, Spread, spread
from bench.timeline import TimelineResults
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc

# The steps, in the order they run; `--only` picks some.
STEPS = ("rpcs", "propagation", "lookup", "timeline", "followup")
# Those run once per run of the bench (of followup: the reminder lag and the pipeline).
REPEATED = ("rpcs", "propagation", "followup")


@dataclass(frozen=True)
class RpcRow:
    rpc: str
    server: str
    load: LoadResult
    vs_null: float | None  # RPC/s over the null servicer's for the same RPC


@dataclass(frozen=True)
class LookupResults:
    seed: SeedResult
    store_holder_of_email: LatencySummary
    null_search_one_in_flight: LatencySummary
    search_one_in_flight: LatencySummary
    search_one_in_flight_errors: Mapping[str, int]
    search_loaded: LoadResult
    contacts_rss_bytes: int
    footprint: Footprint  # of the seeded file, per contact


@dataclass(frozen=True)
class RpcRun:
    """One run of the RPC loads: the null servicer first, then each service on a fresh file,
    so every ratio is taken against a floor measured minutes before it."""

    rows: list[RpcRow]
    rss_bytes: dict[str, int]  # of each server after its loads
    created_contacts: Footprint  # the file CreateContact filled, per contact
    seconds: float


@dataclass(frozen=True)
class RpcFigure:
    """A row of the RPC table over the runs."""

    rpc: str
    server: str
    load: LoadResult  # the runs' median (bench.load.median_load)
    vs_null: Spread | None  # each run's RPC/s over that run's null servicer's


@dataclass(frozen=True)
class BenchResults:
    profile: Profile
    started_at: str
    machine: Mapping[str, str | int]
    runs: int  # of each repeated step
    steps: list[str]  # those run, in STEPS order
    rpcs: list[RpcRun]  # one per run; empty when the step was not run
    propagation: list[PropagationResults]  # one per run
    lookup: LookupResults | None  # None: the step was not run
    timeline: TimelineResults | None
    followup: FollowupResults | None
    step_seconds: dict[str, float]  # wall time of each step, all its runs included
    run_seconds: dict[str, list[float]]  # of a repeated step, each run's (its seed excluded)
    elapsed_seconds: float


def rpc_figures(runs: Sequence[RpcRun]) -> list[RpcFigure]:
    """The rows of the runs by (RPC, server), in the order the first run measured them."""
    by_row: dict[tuple[str, str], list[RpcRow]] = {}
    for rpc_run in runs:
        for row in rpc_run.rows:
            by_row.setdefault((row.rpc, row.server), []).append(row)
    return [
        RpcFigure(
            rpc,
            server,
            median_load([row.load for row in rows]),
            spread([row.vs_null for row in rows]),
        )
        for (rpc, server), rows in by_row.items()
    ]


def machine() -> dict[str, str | int]:
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "platform": platform.platform(),
    }


def _create_request(run: str, n: int) -> contacts_pb.CreateContactRequest:
    """A typical new customer: a name and a unique email, with a request id as clients send."""
    return contacts_pb.CreateContactRequest(
        contact=contact_pb2.Contact(
            display_name=f"Load Contact {n}",
            emails=[f"load-{run}-{n}@bench.example"],
            kind=contact_pb2.CONTACT_KIND_PERSON,
        ),
        request_id=f"{run}-{n}",
    )


async def _create_and_get(
    server: Server, profile: Profile, rng: random.Random
) -> tuple[dict[str, LoadResult], int]:
    """CreateContact with unique emails, then GetContact of the contacts it created; and how
    many it created (warm-up included)."""
    run = uuid.uuid4().hex[:8]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = contacts_grpc.ContactsServiceStub(channel)
        created: list[str] = []

        async def create(n: int) -> None:
            reply = await stub.CreateContact(_create_request(run, n), metadata=METADATA)
            created.append(reply.contact.id)

        async def get(n: int) -> None:
            request = contacts_pb.GetContactRequest(id=rng.choice(created))
            await stub.GetContact(request, metadata=METADATA)

        results = {"CreateContact": await loaded(create, "CreateContact", server, profile)}
        if created:
            results["GetContact"] = await loaded(get, "GetContact", server, profile)
        return results, len(created)


def _search_by_email(
    stub: contacts_grpc.ContactsServiceAsyncStub, emails: int, rng: random.Random, *, found: bool
) -> Call:
    """SearchContacts for one of the first `emails` seeded emails, chosen at random; with
    `found`, a reply without exactly that one contact is a failure of the bench."""

    async def search(n: int) -> None:
        request = contacts_pb.SearchContactsRequest(email=seeded_email(rng.randrange(emails)))
        reply = await stub.SearchContacts(request, metadata=METADATA)
        if found and len(reply.contacts) != 1:
            raise AssertionError(f"{request.email}: {len(reply.contacts)} contacts found")

    return search


async def _null_search(server: Server, profile: Profile, rng: random.Random) -> LatencySummary:
    """The floor under SearchContacts: the same calls, one at a time, to the null servicer."""
    async with grpc.aio.insecure_channel(server.address) as channel:
        search = _search_by_email(
            contacts_grpc.ContactsServiceStub(channel), profile.seed_count, rng, found=False
        )
        latency, _ = await one_at_a_time(
            search, profile.lookups, "SearchContacts(email) on the null servicer"
        )
    return latency


async def _lookups(workdir: Path, profile: Profile, rng: random.Random) -> LookupResults:
    """Seeds a store file, times the store's lookup in process, then SearchContacts(email)
    end to end: the null servicer's, then a contacts service's started on that file."""
    path = workdir / "seeded" / "contacts.db"
    seed = await seed_contacts(path, profile.seed_count, time_limit=profile.seed_time_limit_seconds)
    footprint = await measure(path, "contact", seed.count, "seeded; a name and one email each")
    store_latency = await time_email_lookups(path, seed.count, profile.lookups, rng)
    async with null_server(workdir) as null:
        null_floor = await _null_search(null, profile, rng)
    async with (
        standalone_service("contacts", workdir / "seeded-service", path) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        search = _search_by_email(
            contacts_grpc.ContactsServiceStub(channel), seed.count, rng, found=True
        )
        one, one_errors = await one_at_a_time(search, profile.lookups, "SearchContacts(email)")
        under_load = await loaded(search, "SearchContacts(email)", server, profile)
        rss = server.rss_bytes()
    return LookupResults(
        seed, store_latency, null_floor, one, one_errors, under_load, rss, footprint
    )


def _row(rpc: str, server: str, load: LoadResult, null: LoadResult | None) -> RpcRow:
    """A row of the RPC table, with its RPC/s over the null servicer's for the same RPC."""
    return RpcRow(rpc, server, load, load.rps / null.rps if null is not None and null.rps else None)


async def _rpcs(workdir: Path, profile: Profile, rng: random.Random, step: str) -> RpcRun:
    """CreateContact, GetContact and RecordInteraction on the null servicer, then on contacts
    and interactions, each on a fresh file."""
    started = time.perf_counter()
    await asyncio.to_thread(workdir.mkdir, parents=True)
    rss: dict[str, int] = {}
    say(f"{step}: the null servicer, the floor this run's ratios are taken against")
    async with null_server(workdir) as null:
        baseline, _ = await _create_and_get(null, profile, rng)
        baseline["RecordInteraction"] = await timeline.record_load(null, profile, rng)
        rss[null.name] = null.rss_bytes()
    rows = [_row(rpc, null.name, load, load) for rpc, load in baseline.items()]

    say(f"{step}: contacts on a fresh file")
    fresh = workdir / "contacts" / "contacts.db"
    async with standalone_service("contacts", workdir / "contacts", fresh) as server:
        measured, created = await _create_and_get(server, profile, rng)
        rss[server.name] = server.rss_bytes()
    rows += [_row(rpc, server.name, load, baseline.get(rpc)) for rpc, load in measured.items()]
    created_contacts = await measure(
        fresh, "contact", created, "made by CreateContact, idempotency keys included"
    )

    say(f"{step}: interactions on a fresh file")
    recorded, rss["interactions"] = await timeline.fresh_record_load(
        workdir / "interactions", profile, rng
    )
    rows.append(_row("RecordInteraction", "interactions", recorded, baseline["RecordInteraction"]))
    return RpcRun(rows, rss, created_contacts, round(time.perf_counter() - started, 1))


async def _null_page(workdir: Path, profile: Profile) -> LatencySummary:
    """The floor under ListInteractions, from the null servicer."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    async with null_server(workdir) as null:
        return await timeline.null_first_page(null, profile.timeline)


async def run(profile: Profile, runs: int = 1, steps: Sequence[str] = STEPS) -> BenchResults:
    """Runs `steps` (all by default), the repeated ones `runs` times each, in a temporary
    directory that is removed on the way out, whatever the way."""
    if runs < 1 or not set(steps) <= set(STEPS):
        raise ValueError(f"runs must be >= 1 and steps among {STEPS}: {runs}, {steps}")
    chosen = [s for s in STEPS if s in steps]
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    rng = random.Random(20260105)
    rpcs: list[RpcRun] = []
    propagation: list[PropagationResults] = []
    lookup: LookupResults | None = None
    timeline_results: TimelineResults | None = None
    followup: FollowupResults | None = None
    step_seconds: dict[str, float] = {}
    run_seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="promesa-bench-") as tmp:
        workdir = Path(tmp)
        repeated = [s for s in chosen if s in REPEATED]
        say(
            f"Promesa bench ({profile.name}; steps {', '.join(chosen)}; {runs} run(s) of"
            f" {', '.join(repeated) or 'none'}) in {workdir}: progress on stderr, the table on"
            " stdout"
        )
        for number, name in enumerate(chosen, 1):
            step_started = time.perf_counter()
            head = f"{number}/{len(chosen)} {name}"
            if name == "rpcs":
                say(f"{head}: {profile.in_flight} calls in flight, null servicer and services")
                for n in range(1, runs + 1):
                    step = f"{head} run {n} of {runs}"
                    rpcs.append(await _rpcs(workdir / f"rpcs-{n}", profile, rng, step))
                run_seconds[name] = [r.seconds for r in rpcs]
            elif name == "propagation":
                for n in range(1, runs + 1):
                    say(f"{head} run {n} of {runs}: event -> effect at a low rate, every consumer")
                    run_started = time.perf_counter()
                    propagation.append(
                        await event_to_effect(workdir / f"propagation-{n}", profile.propagation)
                    )
                    elapsed = round(time.perf_counter() - run_started, 1)
                    run_seconds.setdefault(name, []).append(elapsed)
            elif name == "lookup":
                say(f"{head}: lookup by email among {profile.seed_count:,} seeded contacts")
                lookup = await _lookups(workdir / "lookup", profile, rng)
            elif name == "timeline":
                interactions = profile.timeline.interactions
                say(f"{head}: timeline pages among {interactions:,} seeded interactions")
                null_page = await _null_page(workdir / "timeline", profile)
                timeline_results = await timeline.seeded_timeline(
                    workdir / "timeline", profile, null_page
                )
            else:
                promises = profile.followup.promises
                say(f"{head}: follow-up with {promises:,} seeded open promises, {runs} run(s)")
                followup = await followup_bench(workdir / "followup", profile, rng, runs)
                run_seconds[name] = [r.seconds for r in followup.runs]
            step_seconds[name] = round(time.perf_counter() - step_started, 1)
            say(f"{head}: done in {step_seconds[name]:,.0f} s")
    return BenchResults(
        profile=profile,
        started_at=started_at,
        machine=machine(),
        runs=runs,
        steps=chosen,
        rpcs=rpcs,
        propagation=propagation,
        lookup=lookup,
        timeline=timeline_results,
        followup=followup,
        step_seconds=step_seconds,
        run_seconds=run_seconds,
        elapsed_seconds=round(time.perf_counter() - started, 1),
    )
