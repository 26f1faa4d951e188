"""Each service on NATS as its own user: it does all it needs under its permissions (declare
and update its stream, publish its own subjects, consume another's stream through its own
durable, purge its own stream) and nothing more; the operator's user only reads; anonymous
clients are refused. On the real nats-server the tests start, with the users devtools writes
into its configuration (the same ones deploy/ renders)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig

from devtools.natsserver import CONSUMES, OPERATOR, OWNS, SERVICES, NatsServer, durable_name
from promesa.auth import Identity, current_identity
from promesa.bus import (
    DurableConsumer,
    EventBus,
    NatsAuthorizationError,
    StreamSpec,
    inbox_prefix,
)
from promesa.events import IncomingEvent, OutgoingEvent
from tests.support import eventually


def event_on(stream: StreamSpec, contact_id: str) -> OutgoingEvent:
    domain = stream.subjects[0].split(".")[1]
    return OutgoingEvent(
        event_id=f"{domain}-{contact_id}",
        subject=f"crm.{domain}.created.{contact_id}",
        type=f"crm.{domain}.v1.Created",
        source=domain,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        ce_subject=contact_id,
        data=b"\x0a\x02c1",
    )


class Refusals:
    """A raw client's view of what the server refused: nats-server answers a denied publish
    or subscription with an error, after which the connection goes on."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def record(self, exc: Exception) -> None:
        self.errors.append(str(exc).lower())

    def denied_now(self, action: str, subject: str) -> bool:
        return any(
            "permissions violation" in e and action in e and subject.lower() in e
            for e in self.errors
        )

    async def denied(self, action: str, subject: str) -> bool:
        """Whether the server refused it; its error is not ordered with the reply to a ping,
        so wait for it (with a deadline)."""

        async def refused() -> bool:
            return self.denied_now(action, subject)

        try:
            await eventually(refused, timeout=5)
        except AssertionError:
            return False
        return True


@contextlib.asynccontextmanager
async def raw_client(server: NatsServer, user: str) -> AsyncIterator[tuple[Client, Refusals]]:
    refusals = Refusals()
    prefix = "_INBOX" if user == OPERATOR else inbox_prefix(user)
    nc = await nats.connect(
        server.url_for(user), error_cb=refusals.record, inbox_prefix=prefix, allow_reconnect=False
    )
    try:
        yield nc, refusals
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def bus_as(server: NatsServer, user: str) -> AsyncIterator[EventBus]:
    bus = EventBus(server.url_for(user), name=user)
    await bus.connect()
    try:
        yield bus
    finally:
        await bus.close()


async def messages_in(admin: EventBus, stream: StreamSpec) -> int:
    return int((await admin.js.stream_info(stream.name)).state.messages)


@pytest.fixture
async def admin(nats_server: NatsServer) -> AsyncIterator[EventBus]:
    async with bus_as(nats_server, "admin") as bus:
        for spec in OWNS.values():
            await bus.declare_stream(spec)
        yield bus


# ---------------------------------------------------------------------------------------------
# What each service needs, under its own user


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_declares_publishes_and_purges_its_own_stream(
    nats_server: NatsServer, service: str
) -> None:
    own = OWNS[service]
    async with bus_as(nats_server, service) as bus:
        # Given a fresh server: the service creates its stream, then (a restart) updates it
        await bus.declare_stream(own)
        await bus.declare_stream(own, replicas=1)

        # When it publishes two events about two contacts, then purges one contact's
        await bus.publish_batch([event_on(own, "c1"), event_on(own, "c2")])
        assert await messages_in(bus, own) == 2
        await bus.purge(own, ["crm.*.*.c1"])

        # Then only the other contact's event is left
        assert await messages_in(bus, own) == 1


@pytest.mark.parametrize(
    ("service", "stream"),
    [(service, stream) for service in SERVICES for stream in CONSUMES[service]],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
async def test_a_service_consumes_another_stream_through_its_own_durable(
    nats_server: NatsServer, admin: EventBus, service: str, stream: StreamSpec
) -> None:
    # Given an event in the other service's stream
    await admin.publish_batch([event_on(stream, "c1")])
    seen: list[tuple[IncomingEvent, Identity]] = []

    async def handle(event: IncomingEvent) -> None:
        seen.append((event, current_identity()))

    async def dead_letter(consumer: str, event: IncomingEvent, error: str) -> None:
        raise AssertionError(f"dead-lettered: {error}")

    durable = durable_name(service, stream)
    async with bus_as(nats_server, service) as bus:
        consumer = DurableConsumer(
            bus,
            service=service,
            stream=stream,
            durable=durable,
            filter_subjects=[f"{stream.subjects[0][:-1]}created.>"],
            handler=handle,
            dead_letters=dead_letter,
        )
        running = asyncio.create_task(consumer.run())

        # When the service's durable pull consumer runs under the service's own user
        async def acknowledged() -> bool:
            if not seen:
                return False
            info = await admin.js.consumer_info(stream.name, durable)
            return bool(info.num_ack_pending == 0 and info.delivered.stream_seq == 1)

        try:
            await eventually(acknowledged)
        finally:
            consumer.stop()
            await running

    # Then it got the event, handled it as its worker, and acknowledged it
    ((event, who),) = seen
    assert event.subject == f"crm.{stream.subjects[0].split('.')[1]}.created.c1"
    assert who.subject == f"{service}/{durable}"


# ---------------------------------------------------------------------------------------------
# And nothing more


@pytest.mark.parametrize(
    "subject",
    [
        "crm.followup.promises.c1",
        "crm.interactions.recorded.c1",
        "crm.anything",
        "$JS.API.STREAM.PURGE.CRM_FOLLOWUP",
        "$JS.API.STREAM.DELETE.CRM_CONTACTS",
        "$JS.API.STREAM.CREATE.CRM_SHADOW",
        "$JS.API.CONSUMER.DURABLE.CREATE.CRM_INTERACTIONS.followup-interactions",
        "$JS.API.CONSUMER.CREATE.CRM_INTERACTIONS",
        "$JS.ACK.CRM_INTERACTIONS.followup-interactions.1.1.1.1.0",
    ],
)
async def test_the_contacts_user_cannot_publish_outside_its_own_subjects_and_durables(
    nats_server: NatsServer, admin: EventBus, subject: str
) -> None:
    async with raw_client(nats_server, "contacts") as (nc, refusals):
        # When contacts publishes on another service's subject, or calls an API it has no
        # business calling (another's stream, its own stream's deletion, another's durable)
        await nc.publish(subject, json.dumps({"stream_name": "CRM_INTERACTIONS"}).encode())
        await nc.flush()

        # Then the server refuses it and nothing lands anywhere
        assert await refusals.denied("publish", subject), refusals.errors
    assert await messages_in(admin, OWNS["followup"]) == 0
    assert await messages_in(admin, OWNS["interactions"]) == 0
    assert {s.config.name for s in await admin.js.streams_info()} == {
        spec.name for spec in OWNS.values()
    }


async def test_a_jetstream_publish_outside_its_subjects_is_never_acknowledged(
    nats_server: NatsServer, admin: EventBus
) -> None:
    async with bus_as(nats_server, "contacts") as bus:
        with pytest.raises((TimeoutError, nats.errors.TimeoutError)):
            await bus.publish_batch([event_on(OWNS["followup"], "c1")], timeout=0.3)

    assert await messages_in(admin, OWNS["followup"]) == 0


@pytest.mark.parametrize("subject", ["_INBOX.>", "_INBOX_followup.>", "crm.>", ">"])
async def test_a_service_cannot_listen_to_events_or_to_others_replies(
    nats_server: NatsServer, subject: str
) -> None:
    async with raw_client(nats_server, "contacts") as (nc, refusals):
        await nc.subscribe(subject)
        await nc.flush()

        assert await refusals.denied("subscription", subject), refusals.errors


async def test_the_operator_reads_streams_and_live_events(
    nats_server: NatsServer, admin: EventBus
) -> None:
    await admin.publish_batch([event_on(OWNS["contacts"], "c1")])
    async with raw_client(nats_server, OPERATOR) as (nc, refusals):
        js = nc.jetstream()
        live = await nc.subscribe("crm.>")

        # The operator reads what streams hold, by sequence
        info = await js.stream_info("CRM_CONTACTS")
        stored = await js.get_msg("CRM_CONTACTS", info.state.first_seq)
        assert stored.subject == "crm.contacts.created.c1"
        assert (stored.headers or {}).get("ce-id") == "contacts-c1"

        # and sees live events as they are published
        await admin.publish_batch([event_on(OWNS["interactions"], "c2")])
        message = await live.next_msg(timeout=5)
        assert message.subject == "crm.interactions.created.c2"
        assert not refusals.errors


@pytest.mark.parametrize(
    "subject",
    [
        "crm.contacts.created.c9",
        "crm.followup.reminders.ana.c9",
        "$JS.API.STREAM.PURGE.CRM_CONTACTS",
        "$JS.API.STREAM.DELETE.CRM_CONTACTS",
        "$JS.API.STREAM.UPDATE.CRM_CONTACTS",
        # A consumer create with a known name would rewrite a service's durable.
        "$JS.API.CONSUMER.CREATE.CRM_CONTACTS",
        "$JS.API.CONSUMER.CREATE.CRM_CONTACTS.interactions-contacts",
        "$JS.API.CONSUMER.DURABLE.CREATE.CRM_CONTACTS.interactions-contacts",
        "$JS.API.CONSUMER.DELETE.CRM_CONTACTS.interactions-contacts",
        "$JS.ACK.CRM_CONTACTS.interactions-contacts.1.1.1.1.0",
    ],
)
async def test_the_operator_cannot_publish_or_change_anything(
    nats_server: NatsServer, admin: EventBus, subject: str
) -> None:
    await admin.publish_batch([event_on(OWNS["contacts"], "c1")])
    await admin.js.add_consumer(
        "CRM_CONTACTS",
        config=ConsumerConfig(
            durable_name="interactions-contacts",
            ack_policy=AckPolicy.EXPLICIT,
            filter_subjects=["crm.contacts.created.>"],
        ),
    )
    async with raw_client(nats_server, OPERATOR) as (nc, refusals):
        config = {"durable_name": "interactions-contacts", "filter_subject": "crm.contacts.x.>"}
        await nc.publish(
            subject, json.dumps({"stream_name": "CRM_CONTACTS", "config": config}).encode()
        )
        await nc.flush()

        assert await refusals.denied("publish", subject), refusals.errors
    assert await messages_in(admin, OWNS["contacts"]) == 1
    durable = await admin.js.consumer_info("CRM_CONTACTS", "interactions-contacts")
    assert durable.config.filter_subjects == ["crm.contacts.created.>"]


# ---------------------------------------------------------------------------------------------
# Who may connect


async def test_an_anonymous_client_cannot_connect(nats_server: NatsServer) -> None:
    with pytest.raises(nats.errors.Error, match=r"(?i)authorization violation"):
        await nats.connect(nats_server.address, allow_reconnect=False)


@pytest.mark.parametrize("how", ["anonymous", "wrong password", "unknown user"])
async def test_a_service_refused_by_nats_fails_at_once_naming_the_user_not_the_password(
    nats_server: NatsServer, how: str
) -> None:
    where = f"{nats_server.host}:{nats_server.port}"
    url = {
        "anonymous": nats_server.address,
        "wrong password": f"nats://contacts:not-the-password@{where}",
        "unknown user": f"nats://mallory:{nats_server.password('contacts')}@{where}",
    }[how]
    bus = EventBus(url, name="contacts")

    with pytest.raises(NatsAuthorizationError, match="NATS refused") as refused:
        await asyncio.wait_for(bus.connect(), 10)

    assert nats_server.password("contacts") not in str(refused.value)
    if how != "anonymous":
        assert "'contacts'" in str(refused.value) or "'mallory'" in str(refused.value)


def test_a_server_uses_the_passwords_it_is_given_and_generates_the_others(
    tmp_path: Path,
) -> None:
    one = NatsServer(tmp_path / "one", passwords={"contacts": "given-secret"})
    two = NatsServer(tmp_path / "two")

    assert one.url_for("contacts") == f"nats://contacts:given-secret@127.0.0.1:{one.port}"
    assert one.password("followup") != two.password("followup")
    assert one.url.startswith("nats://admin:")
    with pytest.raises(KeyError, match="no NATS user 'mallory'"):
        one.url_for("mallory")
