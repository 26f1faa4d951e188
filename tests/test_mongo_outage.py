"""The contacts service when MongoDB goes away and comes back, and when it is a server that
cannot run transactions at all.

The outage runs on a SecantusDB server of the test's own, on a fixed port with its data on
disk, so that it can crash and start again where the service expects it. The service's URI
sets a short server selection timeout, as an operator would to fail fast.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from nats.aio.msg import Msg
from prometheus_client import REGISTRY

from contacts.adapters import event_codec as contacts_codec
from contacts.adapters.mongo_store import MongoContactStore
from contacts.entrypoints.interactions_consumer import CONSUMER
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from devtools.listening import free_port
from devtools.mongoserver import MongoServer
from devtools.natsserver import NatsServer
from followup.adapters import event_codec as followup_codec
from followup.adapters.mongo_store import MongoPromiseStore
from interactions.adapters import event_codec as interactions_codec
from interactions.adapters.mongo_store import MongoInteractionStore
from promesa import mongo as mdb
from promesa.bus import CONTACTS_STREAM, INTERACTIONS_STREAM
from promesa.clock import ManualClock
from tests.contacts.conftest import RunningContacts, contacts_env
from tests.contacts.test_contacts_api import a_person, create
from tests.contacts.test_events import INQUIRY, get, publish_interaction
from tests.platform.test_mongo_failures import ANSWERED_WITHIN, crash, with_selection_timeout
from tests.processes import ServiceProcess
from tests.support import bearer, events_about, eventually
from tests.test_contacts_on_mongodb import start_contacts, stop_contacts

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")

pytestmark = pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path / "mongo-log", data_dir=tmp_path / "mongo", port=free_port())
    server.start()
    yield server
    if server._proc is not None:
        crash(server)


async def unavailable_within(call: Awaitable[object], seconds: float) -> grpc.aio.AioRpcError:
    """Awaits a gRPC call that must fail UNAVAILABLE, and no slower than `seconds`."""
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    took = time.monotonic() - started
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value.details()
    assert took < seconds, f"{took:.2f}s"
    return caught.value


async def test_a_database_outage_is_unavailable_to_callers_and_everything_resumes_after_it(
    own_nats: NatsServer, own_mongo: MongoServer, tmp_path: Path
) -> None:
    uri = with_selection_timeout(own_mongo.uri)
    database = f"promesa_outage_{uuid.uuid4().hex}"
    svc = await start_contacts(own_nats, tmp_path, uri, database)
    try:
        await outage_and_recovery(svc, own_nats, own_mongo)
    finally:
        if own_mongo._proc is None:
            own_mongo.start()
        await stop_contacts(svc, uri, database)


async def outage_and_recovery(svc: RunningContacts, nats: NatsServer, mongo: MongoServer) -> None:
    async def published(contact_id: str) -> list[Msg]:
        return await events_about(svc.bus.js, CONTACTS_STREAM.name, contact_id)

    async def drained() -> bool:
        return await svc.store.outbox_backlog() == 0

    # Given a contact whose creation was published, and touched (so the consumer is running),
    known = await create(svc, a_person(display_name="Known", emails=["known@example.com"]))
    await eventually(lambda: published(known.id))
    await touch_and_wait(svc, known.id)
    await eventually(drained)
    # and another whose creation is committed but still in the outbox when the database
    # crashes (JetStream is frozen, so the relay cannot have published it),
    os.kill(nats.pid, signal.SIGSTOP)
    try:
        waiting = await create(svc, a_person(display_name="Waiting", emails=["wait@example.com"]))
        assert await svc.store.outbox_backlog() == 1
        crash(mongo)
    finally:
        os.kill(nats.pid, signal.SIGCONT)

    # when callers call while it is down, each is told UNAVAILABLE, and soon,
    lost = a_person(display_name="Lost", emails=["lost@example.com"])
    refused = await unavailable_within(
        svc.stub.CreateContact(
            contacts_pb.CreateContactRequest(contact=lost, request_id="req-lost"),
            metadata=bearer(),
        ),
        ANSWERED_WITHIN,
    )
    assert "try again" in (refused.details() or "")
    await unavailable_within(
        svc.stub.GetContact(contacts_pb.GetContactRequest(id=known.id), metadata=bearer()),
        ANSWERED_WITHIN,
    )
    # and the consumer holds a touch of the waiting contact until it can apply it,
    await publish_interaction(svc, waiting.id, INQUIRY)

    async def held() -> bool:
        info = await svc.bus.js.consumer_info(INTERACTIONS_STREAM.name, CONSUMER)
        return bool(info.num_ack_pending)

    await eventually(held)

    # then once the database is back, nothing of the refused create was written,
    mongo.start()
    assert await svc.store.find_request("req-lost") is None
    assert await svc.store.holder_of_email("lost@example.com") is None
    # the same request goes through,
    reply = await svc.stub.CreateContact(
        contacts_pb.CreateContactRequest(contact=lost, request_id="req-lost"), metadata=bearer()
    )
    assert reply.contact.display_name == "Lost"

    # the relay publishes what was committed before the outage and what came after, once each,
    assert len(await eventually(lambda: published(waiting.id), timeout=20)) == 1
    assert len(await eventually(lambda: published(reply.contact.id), timeout=20)) == 1
    await eventually(drained, timeout=20)

    # and the consumer applies the touch it could not apply while the database was down.
    async def touched() -> contact_pb2.Contact | None:
        c = await get(svc, waiting.id)
        return c if c.HasField("last_interaction_at") else None

    await eventually(touched, timeout=20)
    assert await svc.store.dead_letters() == []


async def test_an_event_that_arrives_during_an_outage_waits_for_the_database_and_is_applied(
    nats_server: NatsServer, own_mongo: MongoServer, tmp_path: Path
) -> None:
    uri = with_selection_timeout(own_mongo.uri)
    database = f"promesa_outage_{uuid.uuid4().hex}"
    # Two deliveries of one second each: spent in seconds, if an outage spent them.
    svc = await start_contacts(
        nats_server,
        tmp_path,
        uri,
        database,
        CRM_CONSUMER_MAX_DELIVER="2",
        CRM_CONSUMER_ACK_WAIT_SECONDS="1",
    )
    try:
        known = await create(svc, a_person(display_name="Known", emails=["known@example.com"]))
        await touch_and_wait(svc, (await create(svc, a_person(emails=["o@example.com"]))).id)
        # Given the database is down while an event arrives and the consumer tries it again
        # and again, for longer than its two deliveries would last,
        crash(own_mongo)
        await publish_interaction(svc, known.id, INQUIRY)

        def holds() -> float:
            labels = {"service": "contacts", "consumer": CONSUMER, "outcome": "waiting"}
            return REGISTRY.get_sample_value("promesa_events_consumed_total", labels) or 0.0

        before = holds()
        await eventually(lambda: _true(holds() >= before + 6), timeout=30)
        info = await svc.bus.js.consumer_info(INTERACTIONS_STREAM.name, CONSUMER)
        # then the event was held, not spent,
        assert (info.num_ack_pending, info.num_redelivered) == (1, 0)
        # and once the database is back it is applied, and nothing is dead-lettered.
        own_mongo.start()

        async def applied() -> bool:
            return (await get(svc, known.id)).HasField("last_interaction_at")

        await eventually(applied, timeout=20)
        assert await svc.store.dead_letters() == []
    finally:
        if own_mongo._proc is None:
            own_mongo.start()
        await stop_contacts(svc, uri, database)


async def _true(value: bool) -> bool:
    return value


async def touch_and_wait(svc: RunningContacts, contact_id: str) -> None:
    """A touch applied end to end: the stream and the durable consumer exist from then on."""
    await publish_interaction(svc, contact_id, INQUIRY)

    async def touched() -> bool:
        return (await get(svc, contact_id)).HasField("last_interaction_at")

    await eventually(touched)


# --- a server without transactions ------------------------------------------------------------


@pytest.fixture(scope="module")
def standalone_mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("standalone"), standalone=True).start()
    yield server
    crash(server)


CLOCK = ManualClock()
STORES: dict[str, Callable[[str], Awaitable[object]]] = {
    "contacts": lambda uri: MongoContactStore.open(
        uri, "promesa_contacts", contacts_codec.encode, CLOCK
    ),
    "interactions": lambda uri: MongoInteractionStore.open(
        uri, "promesa_interactions", interactions_codec.encode, CLOCK
    ),
    "followup": lambda uri: MongoPromiseStore.open(
        uri, "promesa_followup", followup_codec.encode, CLOCK
    ),
}


@pytest.mark.parametrize("service", sorted(STORES))
async def test_every_services_store_refuses_a_server_without_transactions(
    standalone_mongo: MongoServer, service: str
) -> None:
    with pytest.raises(mdb.TransactionsUnsupportedError) as raised:
        await STORES[service](standalone_mongo.uri)

    assert "is a standalone server" in str(raised.value)
    assert "point CRM_MONGODB_URI at a replica set member" in str(raised.value)


def test_the_service_process_will_not_start_on_a_server_without_transactions(
    standalone_mongo: MongoServer, nats_server: NatsServer, tmp_path: Path
) -> None:
    env = contacts_env(
        nats_server,
        tmp_path,
        CRM_GRPC_PORT=str(free_port()),
        CRM_STORE="mongodb",
        CRM_MONGODB_URI=standalone_mongo.uri,
    )
    service = ServiceProcess("contacts", env)
    service.start()
    try:
        assert service.proc is not None
        code = service.proc.wait(30)
    finally:
        service.kill_if_running()

    output = service.log_path.read_text()
    assert code != 0, output
    assert f"MongoDB at 127.0.0.1:{standalone_mongo.port} is a standalone server" in output
    assert "point CRM_MONGODB_URI at a replica set member" in output
