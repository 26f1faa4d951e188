"""The three services in one process for end-to-end tests, on the store backend the test is
parametrized with: the embedded SQLite, and MongoDB (the session's server, tests/conftest.py),
where each service has a database of its own, as in production, and replicas of one service
share theirs, as pods would.

A test module takes the fixtures by name (`contacts_service = whole_system.contacts_service`);
every test that uses them runs once per backend, `[sqlite]` and `[mongodb]`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from devtools.natsserver import NatsServer
from promesa.clock import ManualClock
from tests.contacts.conftest import RunningContacts, running_contacts
from tests.followup.conftest import RunningFollowup, followup_env, start_followup
from tests.interactions.conftest import RunningInteractions, running_interactions
from tests.support import mongodb_is_secantus

STORES = ("sqlite", "mongodb")
MONGODB_URI = "CRM_TEST_MONGODB_URI"


@dataclass
class Backend:
    """The store a test runs on, and the environment that puts a service on it."""

    store: str
    databases: dict[str, str] = field(default_factory=dict)  # service -> its database

    @property
    def secantus(self) -> bool:
        """On SecantusDB: a server written in Python, far slower than mongod when many
        transactions run at once."""
        return self.store == "mongodb" and mongodb_is_secantus(os.environ[MONGODB_URI])

    def env(self, service: str) -> dict[str, str]:
        """Extra environment for `service`; on MongoDB, the same database every time it is
        asked for the same service in one test (replicas), a new one for another service."""
        if self.store == "sqlite":
            return {}
        database = self.databases.setdefault(service, f"e2e_{service}_{uuid.uuid4().hex[:16]}")
        return {
            "CRM_STORE": "mongodb",
            "CRM_MONGODB_URI": os.environ[MONGODB_URI],
            "CRM_MONGODB_DATABASE": database,
        }

    async def drop(self) -> None:
        """Drops the test's databases on a real mongod, which outlives the session. Not on
        SecantusDB: its store is a temporary one, thrown away with the session, and dropping a
        database that aborted transactions had touched (a test that failed mid-way) has been
        seen to hang 0.7.0b3 with a core busy, and every later test with it."""
        if not self.databases or self.secantus:
            return
        # Bounded, so that a server that stopped answering fails the teardown, not hangs it.
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            os.environ[MONGODB_URI], timeoutMS=30_000
        )
        try:
            for database in self.databases.values():
                await client.drop_database(database)
        finally:
            await client.close()


@pytest.fixture(params=STORES)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    chosen = Backend(str(request.param))
    yield chosen
    await chosen.drop()


@pytest.fixture
async def contacts_service(
    backend: Backend, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningContacts]:
    async with running_contacts(
        nats_server, tmp_path, ManualClock(), **backend.env("contacts")
    ) as service:
        yield service


@pytest.fixture
async def interactions_beside_contacts(
    backend: Backend, contacts_service: RunningContacts, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningInteractions]:
    """The interactions service next to the contacts service, both on one clock."""
    async with running_interactions(
        nats_server, tmp_path, contacts_service.clock, **backend.env("interactions")
    ) as service:
        yield service


@pytest.fixture
async def followup_beside(
    backend: Backend, contacts_service: RunningContacts, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningFollowup]:
    """The follow-up service next to the other two, on their clock."""
    env = followup_env(nats_server, tmp_path, **backend.env("followup"))
    svc = await start_followup(nats_server, env, contacts_service.clock)
    yield svc
    await svc.stop()
