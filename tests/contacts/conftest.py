"""Fixtures that run the contacts service in-process: real gRPC, real SQLite, real NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from contacts.bootstrap import ContactsApp, build
from contacts.ports import ContactStore
from contacts.settings import ContactsSettings
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from devtools.natsserver import NatsServer
from promesa.bus import EventBus
from promesa.clock import ManualClock
from promesa.runtime import Runtime
from promesa.settings import Env
from tests.support import TOKENS


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
        "CRM_NATS_URL": nats.url,
        "CRM_SQLITE_PATH": str(data / "contacts.db"),
        "CRM_GRPC_HOST": "127.0.0.1",
        "CRM_GRPC_PORT": "0",
        "CRM_METRICS_PORT": "0",
        "CRM_API_TOKENS": TOKENS,
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
    settings = ContactsSettings.from_env(Env(contacts_env(nats_server, tmp_path)))
    clock = ManualClock()
    app = await build(settings, clock)
    port = await app.runtime.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    bus = EventBus(nats_server.url, name="contacts-test")
    await bus.connect()
    yield RunningContacts(app, clock, channel, contacts_grpc.ContactsServiceStub(channel), bus)
    await channel.close(None)
    await bus.close()
    await app.runtime.stop()
