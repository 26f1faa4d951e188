"""The benchmark run, step by step: null baseline, contacts under load, email lookup at scale,
interactions (recording, timeline pages at scale), follow-up (scheduler, reminders, pipeline)."""

from __future__ import annotations

import os
import platform
import random
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc

from bench import timeline
from bench.load import Call, LoadResult, loaded, one_at_a_time
from bench.processes import METADATA, Server, null_server, standalone_service
from bench.profile import Profile
from bench.promises import FollowupResults, followup_bench
from bench.seed import SeedResult, seed_contacts, seeded_email, time_email_lookups
from bench.stats import LatencySummary
from bench.timeline import TimelineResults
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc


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


@dataclass(frozen=True)
class BenchResults:
    profile: Profile
    started_at: str
    machine: Mapping[str, str | int]
    rpcs: list[RpcRow]
    rss_bytes: Mapping[str, int]
    lookup: LookupResults
    timeline: TimelineResults
    followup: FollowupResults
    elapsed_seconds: float


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
            display_name=f"Load Contact {n}", emails=[f"load-{run}-{n}@bench.example"]
        ),
        request_id=f"{run}-{n}",
    )


async def _create_and_get(
    server: Server, profile: Profile, rng: random.Random
) -> dict[str, LoadResult]:
    """CreateContact with unique emails, then GetContact of the contacts it created."""
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

        results = {"CreateContact": await loaded(create, server, profile)}
        if created:
            results["GetContact"] = await loaded(get, server, profile)
        return results


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
        latency, _ = await one_at_a_time(search, profile.lookups)
    return latency


async def _lookups(
    workdir: Path, profile: Profile, rng: random.Random, null_floor: LatencySummary
) -> LookupResults:
    """Seeds a store file, times the store's lookup in process, then SearchContacts(email)
    end to end against a contacts service started on that file."""
    path = workdir / "seeded" / "contacts.db"
    seed = await seed_contacts(path, profile.seed_count, time_limit=profile.seed_time_limit_seconds)
    store_latency = await time_email_lookups(path, seed.count, profile.lookups, rng)
    async with (
        standalone_service("contacts", workdir / "seeded-service", path) as server,
        grpc.aio.insecure_channel(server.address) as channel,
    ):
        search = _search_by_email(
            contacts_grpc.ContactsServiceStub(channel), seed.count, rng, found=True
        )
        one, one_errors = await one_at_a_time(search, profile.lookups)
        under_load = await loaded(search, server, profile)
        rss = server.rss_bytes()
    return LookupResults(seed, store_latency, null_floor, one, one_errors, under_load, rss)


def _row(rpc: str, server: str, load: LoadResult, null: LoadResult | None) -> RpcRow:
    """A row of the RPC table, with its RPC/s over the null servicer's for the same RPC."""
    return RpcRow(rpc, server, load, load.rps / null.rps if null is not None and null.rps else None)


async def run(profile: Profile) -> BenchResults:
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    rng = random.Random(20260105)
    rows: list[RpcRow] = []
    rss: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="promesa-bench-") as tmp:
        workdir = Path(tmp)

        async with null_server(workdir) as server:
            baseline = await _create_and_get(server, profile, rng)
            rss[server.name] = server.rss_bytes()
            null_floor = await _null_search(server, profile, rng)
            null_record = await timeline.record_load(server, profile, rng)
            null_page = await timeline.null_first_page(server, profile.timeline)
        rows += [_row(rpc, server.name, load, load) for rpc, load in baseline.items()]

        async with standalone_service(
            "contacts", workdir / "fresh", workdir / "fresh" / "contacts.db"
        ) as server:
            measured = await _create_and_get(server, profile, rng)
            rss[server.name] = server.rss_bytes()
        rows += [_row(rpc, server.name, load, baseline.get(rpc)) for rpc, load in measured.items()]

        lookup = await _lookups(workdir, profile, rng, null_floor)

        recorded, rss["interactions"] = await timeline.fresh_record_load(
            workdir / "interactions-fresh", profile, rng
        )
        rows += [
            _row("RecordInteraction", "null servicer", null_record, null_record),
            _row("RecordInteraction", "interactions", recorded, null_record),
        ]
        timeline_results = await timeline.seeded_timeline(
            workdir / "interactions-seeded", profile, null_page
        )
        followup = await followup_bench(workdir / "followup-bench", profile, rng)
    return BenchResults(
        profile=profile,
        started_at=started_at,
        machine=machine(),
        rpcs=rows,
        rss_bytes=rss,
        lookup=lookup,
        timeline=timeline_results,
        followup=followup,
        elapsed_seconds=round(time.perf_counter() - started, 1),
    )
