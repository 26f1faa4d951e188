"""Fixtures that run the interactions service in-process: real gRPC, real SQLite, real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from devtools.natsserver import NatsServer
from interactions.bootstrap import InteractionsApp, build
from interactions.ports import InteractionStore
from interactions.settings import InteractionsSettings
from promesa.bus import CONTACTS_STREAM, EventBus
from promesa.clock import ManualClock
from promesa.codec import outgoing
from promesa.event_catalog import CONTACTS
from promesa.ids import new_id
from promesa.protos import to_timestamp
from promesa.runtime import Runtime
from promesa.settings import Env
from tests.contacts import conftest as contacts_fixtures
from tests.contacts.conftest import RunningContacts, contacts_env
from tests.contacts.test_contacts_api import a_person, create
from tests.support import AGENT_TOKEN, TOKENS, bearer, eventually

# Callers of another team, beside tests/support.py's agent-ana (madrid), sup-sam (every team)
# and svc-followup (service).
PARIS_AGENT_TOKEN = "paris-agent-token"
PARIS_SUPERVISOR_TOKEN = "paris-supervisor-token"
INTERACTIONS_TOKENS = (
    f"{TOKENS},{PARIS_AGENT_TOKEN}=agent-pia:agent:paris,"
    f"{PARIS_SUPERVISOR_TOKEN}=sup-pat:supervisor:paris"
)

# The real contacts service, for tests of what its events do here.
contacts_service = contacts_fixtures.contacts_service


@dataclass
class RunningInteractions:
    app: InteractionsApp
    clock: ManualClock
    channel: grpc.aio.Channel
    stub: interactions_grpc.InteractionsServiceAsyncStub
    bus: EventBus

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    @property
    def store(self) -> InteractionStore:
        return self.app.store


def interactions_env(nats: NatsServer, data: Path, **extra: str) -> dict[str, str]:
    """The environment of the contacts tests, with a database and callers of its own."""
    own = {
        "CRM_SQLITE_PATH": str(data / "interactions.db"),
        "CRM_API_TOKENS": INTERACTIONS_TOKENS,
        "CRM_NATS_URL": nats.url_for("interactions"),  # the service as its own NATS user
        **extra,
    }
    return contacts_env(nats, data, **own)


@asynccontextmanager
async def running_interactions(
    nats: NatsServer, data: Path, clock: ManualClock, **extra: str
) -> AsyncIterator[RunningInteractions]:
    """The interactions service in process; `extra` environment puts it on another store."""
    settings = InteractionsSettings.from_env(Env(interactions_env(nats, data, **extra)))
    app = await build(settings, clock)
    port = await app.runtime.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    bus = EventBus(nats.url, name="interactions-test")
    await bus.connect()
    stub = interactions_grpc.InteractionsServiceStub(channel)
    try:
        yield RunningInteractions(app, clock, channel, stub, bus)
    finally:
        await channel.close(None)
        await bus.close()
        await app.runtime.stop()


@pytest.fixture
async def interactions_service(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningInteractions]:
    async with running_interactions(nats_server, tmp_path, ManualClock()) as service:
        yield service


@pytest.fixture(scope="module")
async def shared_interactions(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[RunningInteractions]:
    """One service (and NATS server) for a whole module, where each test works on contacts of
    its own."""
    data = tmp_path_factory.mktemp("interactions")
    nats = NatsServer(data / "nats").start()
    try:
        async with running_interactions(nats, data, ManualClock()) as service:
            yield service
    finally:
        nats.stop()


@pytest.fixture
async def interactions_beside_contacts(
    contacts_service: RunningContacts, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningInteractions]:
    """The interactions service next to a real contacts service, both on one clock."""
    async with running_interactions(nats_server, tmp_path, contacts_service.clock) as service:
        yield service


# --- builders --------------------------------------------------------------------------------


async def announce_contact(
    bus: EventBus,
    contact_id: str,
    at: datetime,
    *,
    team: str = "madrid",
    owner_id: str = "agent-ana",
    updated: bool = False,
) -> None:
    """Publishes ContactCreated (or ContactUpdated) as the contacts service would (it declares
    its own stream)."""
    await bus.declare_stream(CONTACTS_STREAM)
    profile = contacts_events.ContactProfile(contact_id=contact_id, owner_id=owner_id, team=team)
    message: contacts_events.ContactCreated | contacts_events.ContactUpdated
    if updated:
        message = contacts_events.ContactUpdated(
            profile=profile, changed_fields=["team"], actor="sup-sam", occurred_at=to_timestamp(at)
        )
    else:
        message = contacts_events.ContactCreated(
            profile=profile, actor=owner_id, occurred_at=to_timestamp(at)
        )
    event = outgoing(
        message,
        subject=CONTACTS.subject(message, contact_id),
        source="promesa/contacts",
        about=contact_id,
        at=at,
    )
    await bus.publish_batch([event])


async def known_contact(
    svc: RunningInteractions, contact_id: str = "", *, team: str = "madrid"
) -> str:
    """A contact of a team (madrid: agent-ana's) the interactions service has taken into its
    read model; team "" is an unassigned one."""
    contact_id = contact_id or new_id()
    await announce_contact(svc.bus, contact_id, svc.clock.now(), team=team)
    await eventually(lambda: svc.store.contact(contact_id))
    return contact_id


async def contact_in_both(
    contacts: RunningContacts, interactions: RunningInteractions, email: str
) -> str:
    """A contact created through the contacts API, once the interactions service knows it."""
    created = await create(contacts, a_person(emails=[email]))
    await eventually(lambda: interactions.store.contact(created.id))
    return created.id


def a_promise(
    text: str = "Call back with the refund number", within: timedelta = timedelta(days=1)
) -> interaction_pb2.PromiseMade:
    due = duration_pb2.Duration()
    due.FromTimedelta(within)
    return interaction_pb2.PromiseMade(
        text=text, due_within=due, kind=interaction_pb2.PROMISE_KIND_CALL_BACK
    )


def an_interaction(contact_id: str, **overrides: object) -> interaction_pb2.Interaction:
    fields: dict[str, object] = {
        "contact_id": contact_id,
        "channel": interaction_pb2.CHANNEL_PHONE,
        "direction": interaction_pb2.DIRECTION_INBOUND,
        "type": interaction_pb2.INTERACTION_TYPE_COMPLAINT,
        "team": "madrid",
        "summary": "Parcel arrived damaged",
        "notes": "Customer sent photos; box crushed on one side.",
        "outcome": "Refund agreed",
    }
    fields.update(overrides)
    return interaction_pb2.Interaction(**fields)  # type: ignore[arg-type]


def a_purchase(contact_id: str, **overrides: object) -> interaction_pb2.Interaction:
    purchase = interaction_pb2.PurchaseDetails(amount_minor=4999, currency_code="EUR")
    fields: dict[str, object] = {
        "type": interaction_pb2.INTERACTION_TYPE_PURCHASE,
        "channel": interaction_pb2.CHANNEL_WEB,
        "summary": "Bought the blue kettle",
        "outcome": "",
        "purchase": purchase,
    }
    fields.update(overrides)
    return an_interaction(contact_id, **fields)


async def record(
    svc: RunningInteractions,
    interaction: interaction_pb2.Interaction,
    request_id: str = "",
    token: str = AGENT_TOKEN,
) -> interaction_pb2.Interaction:
    reply = await svc.stub.RecordInteraction(
        interactions_pb.RecordInteractionRequest(interaction=interaction, request_id=request_id),
        metadata=bearer(token),
    )
    return reply.interaction


async def amend(
    svc: RunningInteractions,
    interaction_id: str,
    change: interaction_pb2.Interaction,
    paths: list[str],
    reason: str = "typo",
    etag: str = "",
    token: str = AGENT_TOKEN,
) -> interaction_pb2.Interaction:
    reply = await svc.stub.AmendInteraction(
        interactions_pb.AmendInteractionRequest(
            id=interaction_id,
            interaction=change,
            update_mask=field_mask_pb2.FieldMask(paths=paths),
            reason=reason,
            etag=etag,
        ),
        metadata=bearer(token),
    )
    return reply.interaction
