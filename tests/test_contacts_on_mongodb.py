"""The contacts service on MongoDB over the wire, where concurrency meets the database: a
duplicate email is ALREADY_EXISTS naming its holder, whichever of two racing creates loses;
two updates from one version end with one winner and one stale etag; a burst of creates
lands whole, numbered in the outbox in the order the creates committed.

On the session's server (CRM_TEST_MONGODB_URI), each test in a database of its own.
`start_contacts` runs the service in-process on any MongoDB URI (tests/test_mongo_outage.py
uses it on a server of its own).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from pymongo import AsyncMongoClient

from contacts.adapters import event_codec
from contacts.adapters.mongo_store import MongoContactStore
from contacts.bootstrap import build
from contacts.ports import EmailTakenError
from contacts.settings import ContactsSettings
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from devtools.natsserver import NatsServer
from promesa.bus import EventBus
from promesa.clock import ManualClock
from promesa.settings import Env
from promesa.storage import VersionConflictError
from tests.contacts.conftest import RunningContacts, contacts_env
from tests.contacts.test_contacts_api import a_person, create
from tests.contacts.test_store_contract import creating, edited, person, updating
from tests.support import bearer

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

pytestmark = pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")


def a_database() -> str:
    return f"promesa_contacts_{uuid.uuid4().hex}"


async def start_contacts(
    nats: NatsServer, tmp_path: Path, uri: str, database: str, **extra: str
) -> RunningContacts:
    """The contacts service, in-process, on MongoDB at `uri` (the rest as tests/contacts runs
    it: real gRPC, real NATS, a manual clock)."""
    env = contacts_env(
        nats, tmp_path, CRM_STORE="mongodb", CRM_MONGODB_URI=uri, CRM_MONGODB_DATABASE=database
    )
    settings = ContactsSettings.from_env(Env({**env, **extra}))
    clock = ManualClock()
    app = await build(settings, clock)
    port = await app.runtime.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    bus = EventBus(nats.url, name="contacts-test")
    await bus.connect()
    return RunningContacts(app, clock, channel, contacts_grpc.ContactsServiceStub(channel), bus)


async def stop_contacts(svc: RunningContacts, uri: str, database: str) -> None:
    await svc.channel.close(None)
    await svc.bus.close()
    await svc.runtime.stop()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(uri)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


@pytest.fixture
async def contacts_on_mongodb(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningContacts]:
    database = a_database()
    svc = await start_contacts(nats_server, tmp_path, MONGODB_URI, database)
    yield svc
    await stop_contacts(svc, MONGODB_URI, database)


@pytest.fixture
async def store() -> AsyncIterator[MongoContactStore]:
    database = a_database()
    store = await MongoContactStore.open(MONGODB_URI, database, event_codec.encode, ManualClock(AT))
    yield store
    await store.close()
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


def holder_named(error: grpc.aio.AioRpcError) -> str:
    """The id in the ResourceInfo of an ALREADY_EXISTS status: the contact holding the email."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status details"
    for detail in status.details:
        info = error_details_pb2.ResourceInfo()
        if detail.Unpack(info):
            return str(info.resource_name)
    raise AssertionError("no ResourceInfo")


async def create_outcome(
    svc: RunningContacts, contact: contact_pb2.Contact
) -> contact_pb2.Contact | grpc.aio.AioRpcError:
    try:
        return await create(svc, contact)
    except grpc.aio.AioRpcError as exc:
        return exc


# --- a duplicate key is ALREADY_EXISTS ---------------------------------------------------------


async def test_a_second_contact_with_a_taken_email_is_already_exists_naming_the_holder(
    contacts_on_mongodb: RunningContacts,
) -> None:
    first = await create(contacts_on_mongodb, a_person(emails=["pepa@example.com"]))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create(contacts_on_mongodb, a_person(emails=["Pepa@Example.com"]))

    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert first.id in (caught.value.details() or "")
    assert holder_named(caught.value) == first.id


async def test_racing_creates_with_one_email_make_one_contact_and_the_rest_learn_who_holds_it(
    contacts_on_mongodb: RunningContacts,
) -> None:
    # Given eight callers who each pass the "is this email free?" check at the same moment,
    racers = [
        a_person(display_name=f"Racer {i}", emails=["race@example.com"], phones=[])
        for i in range(8)
    ]

    # when they all create,
    results = await asyncio.gather(*(create_outcome(contacts_on_mongodb, c) for c in racers))

    # then the database lets exactly one have it and every other one is told who did.
    won = [r for r in results if isinstance(r, contact_pb2.Contact)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1, [r.code() for r in lost]
    assert [e.code() for e in lost] == [grpc.StatusCode.ALREADY_EXISTS] * 7
    assert {holder_named(e) for e in lost} == {won[0].id}
    holder = await contacts_on_mongodb.store.holder_of_email("race@example.com")
    assert holder == won[0].id


async def test_two_commits_claiming_one_email_leave_one_holder_and_name_it_to_the_other(
    store: MongoContactStore,
) -> None:
    # Straight to the store, past the use case's look-up: the unique key alone decides.
    for round_ in range(5):
        email = f"both-{round_}@example.com"
        a = person(f"a-{round_}", AT, emails=(email,))
        b = person(f"b-{round_}", AT, emails=(email,))

        results = await asyncio.gather(
            store.commit(creating(a)), store.commit(creating(b)), return_exceptions=True
        )

        taken = [r for r in results if isinstance(r, EmailTakenError)]
        assert len(taken) == 1 and results.count(None) == 1, results
        holder = await store.holder_of_email(email)
        assert holder in (a.id, b.id)
        assert taken[0].holder_id == holder
        loser = b.id if holder == a.id else a.id
        assert await store.get(loser) is None


# --- write conflicts are retried --------------------------------------------------------------


async def test_two_updates_from_one_version_end_with_one_winner_and_one_stale_etag(
    contacts_on_mongodb: RunningContacts,
) -> None:
    created = await create(contacts_on_mongodb, a_person(emails=["twice@example.com"]))

    async def rename(name: str) -> contact_pb2.Contact | grpc.aio.AioRpcError:
        change = contact_pb2.Contact(id=created.id, etag=created.etag, preferred_name=name)
        try:
            reply = await contacts_on_mongodb.stub.UpdateContact(
                contacts_pb.UpdateContactRequest(
                    contact=change, update_mask=field_mask_pb2.FieldMask(paths=["preferred_name"])
                ),
                metadata=bearer(),
            )
        except grpc.aio.AioRpcError as exc:
            return exc
        return reply.contact

    results = await asyncio.gather(rename("Pepita"), rename("Pepi"))

    won = [r for r in results if isinstance(r, contact_pb2.Contact)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert lost[0].code() == grpc.StatusCode.ABORTED
    assert "stale etag" in (lost[0].details() or "")
    assert won[0].etag == "2"


async def test_concurrent_saves_of_one_version_through_the_store_let_exactly_one_land(
    store: MongoContactStore,
) -> None:
    contact = person("c-1", AT, name="Ada")
    await store.commit(creating(contact))
    version = 1
    for round_ in range(10):
        later = AT + timedelta(minutes=round_ + 1)
        current = await store.get("c-1")
        assert current is not None and current.version == version
        left = edited(current, later, display_name=f"Left {round_}")
        right = edited(current, later, display_name=f"Right {round_}")

        results = await asyncio.gather(
            store.commit(updating(current, left)),
            store.commit(updating(current, right)),
            return_exceptions=True,
        )

        assert results.count(None) == 1, results
        assert sum(isinstance(r, VersionConflictError) for r in results) == 1, results
        version += 1
        stored = await store.get("c-1")
        assert stored is not None and stored.version == version
        winner = left if results[0] is None else right
        assert stored.details.display_name == winner.details.display_name


async def test_a_burst_of_creates_lands_whole_numbered_in_commit_order(
    store: MongoContactStore,
) -> None:
    contacts = [person(f"burst-{i:02}", AT, emails=(f"burst-{i}@example.com",)) for i in range(30)]
    burst = asyncio.gather(*(store.commit(creating(c)) for c in contacts))
    snapshots: list[list[int]] = []

    # While the creates race, every look at the outbox sees a gapless run of sequence
    # numbers from 1: a number is only taken by a transaction that commits after the one
    # holding the number before it, so the relay never passes over one still to come.
    while not burst.done():
        snapshots.append([seq for seq, _ in await store.pending_events(100)])
        await asyncio.sleep(0)
    await burst

    final = await store.pending_events(100)
    snapshots.append([seq for seq, _ in final])
    for seqs in snapshots:
        assert seqs == list(range(1, len(seqs) + 1)), seqs
    assert len(snapshots) > 2
    assert sorted(e.ce_subject for _, e in final) == sorted(c.id for c in contacts)
    for c in contacts:
        assert await store.get(c.id) is not None
