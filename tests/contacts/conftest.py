"""Fixtures that run the contacts service in-process (real gRPC, real SQLite, real NATS), or
only its use cases over a real SQLite store (`contacts_desk`, for rules that need no wire)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from contacts.adapters import event_codec
from contacts.adapters.sqlite_store import SqliteContactStore
from contacts.bootstrap import ContactsApp, build
from contacts.ports import ContactStore
from contacts.settings import ContactsSettings
from contacts.usecases import ContactCommands, ContactQueries, ContactReactions
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from devtools.natsserver import NatsServer
from promesa.bus import EventBus
from promesa.clock import ManualClock
from promesa.runtime import Runtime
from promesa.settings import Env
from promesa.usecases import Writes
from tests.support import TOKENS

# Callers the authorization tests need beside the shared ones (tests/support.py): an agent
# of another team, an agent with no team, and a supervisor of one team.
LISBON_AGENT_TOKEN = "lisbon-agent-token"
TEAMLESS_AGENT_TOKEN = "teamless-agent-token"
MADRID_SUPERVISOR_TOKEN = "madrid-supervisor-token"
CONTACTS_TOKENS = (
    f"{TOKENS},"
    f"{LISBON_AGENT_TOKEN}=agent-leo:agent:lisbon,"
    f"{TEAMLESS_AGENT_TOKEN}=agent-nat:agent,"
    f"{MADRID_SUPERVISOR_TOKEN}=sup-mia:supervisor:madrid"
)
ACTIVE_WINDOW = timedelta(days=90)


@dataclass
class RunningContacts:
    app: ContactsApp
    clock: ManualClock
    channel: grpc.aio.Channel
    stub: contacts_grpc.ContactsServiceAsyncStub
    bus: EventBus

    @property
    def runtime(self) -> Runtime:
        return self.app.runtime

    @property
    def store(self) -> ContactStore:
        return self.app.store


def contacts_env(nats: NatsServer, data: Path, **extra: str) -> dict[str, str]:
    return {
        "CRM_NATS_URL": nats.url_for("contacts"),  # the service as its own NATS user
        "CRM_SQLITE_PATH": str(data / "contacts.db"),
        "CRM_GRPC_HOST": "127.0.0.1",
        "CRM_GRPC_PORT": "0",
        "CRM_METRICS_PORT": "0",
        "CRM_API_TOKENS": CONTACTS_TOKENS,
        "CRM_SHUTDOWN_GRACE_SECONDS": "1",
        "CRM_SWEEP_INTERVAL_SECONDS": "3600",
        "CRM_CONSUMER_ACK_WAIT_SECONDS": "2",
        "CRM_CONSUMER_MAX_DELIVER": "3",
        **extra,
    }


@pytest.fixture
async def contacts_service(
    nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningContacts]:
    async with running_contacts(nats_server, tmp_path, ManualClock()) as service:
        yield service


@asynccontextmanager
async def running_contacts(
    nats: NatsServer, data: Path, clock: ManualClock, **extra: str
) -> AsyncIterator[RunningContacts]:
    """The contacts service in process; `extra` environment puts it on another store."""
    settings = ContactsSettings.from_env(Env(contacts_env(nats, data, **extra)))
    app = await build(settings, clock)
    port = await app.runtime.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    bus = EventBus(nats.url, name="contacts-test")
    await bus.connect()
    try:
        yield RunningContacts(app, clock, channel, contacts_grpc.ContactsServiceStub(channel), bus)
    finally:
        await channel.close(None)
        await bus.close()
        await app.runtime.stop()


@dataclass
class ContactsDesk:
    """The use cases over a real SQLite store, without gRPC or NATS: events stay in the
    outbox, which is all a rule about who may do what, or about event order, needs."""

    store: SqliteContactStore
    clock: ManualClock
    commands: ContactCommands
    queries: ContactQueries
    reactions: ContactReactions
    path: Path


@pytest.fixture
async def contacts_desk(tmp_path: Path) -> AsyncIterator[ContactsDesk]:
    path = tmp_path / "desk.db"
    clock = ManualClock()
    store = SqliteContactStore(path, event_codec.encode, clock)
    writes = Writes(store, lambda: None)
    region = "US"
    desk = ContactsDesk(
        store,
        clock,
        ContactCommands(
            store, writes, clock, active_window=ACTIVE_WINDOW, default_phone_region=region
        ),
        ContactQueries(store, default_phone_region=region),
        ContactReactions(store, writes, clock, active_window=ACTIVE_WINDOW),
        path,
    )
    yield desk
    await store.close()
