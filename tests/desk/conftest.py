"""The three services in this process for the desk's tests, on one ManualClock set to the wall
clock's now (so the desk's countdowns, read against that clock, start where a person's would),
with the follow-up service on a fixed port so that it can be stopped and started again under a
desk that keeps running, as a pod restart would look from an agent's terminal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from crm.contacts.v1 import contact_pb2
from crm.followup.v1 import promise_pb2
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from promesa.clock import ManualClock
from promesa_cli.desk.app import DeskApp
from promesa_client import Client
from tests.contacts.conftest import RunningContacts, running_contacts
from tests.followup.conftest import RunningFollowup, followup_env, start_followup
from tests.interactions.conftest import RunningInteractions, running_interactions
from tests.support import AGENT_TOKEN, eventually

AGENT = "agent-ana"  # AGENT_TOKEN's subject, team madrid, in every service's token table
AGENT_ZONE = ZoneInfo("Europe/Madrid")


@dataclass
class DeskServices:
    """The services a desk talks to, and what a test does to them besides using the desk."""

    nats: NatsServer
    clock: ManualClock
    contacts: RunningContacts
    interactions: RunningInteractions
    followup: RunningFollowup
    followup_env: dict[str, str]
    client: Client
    replicas: list[RunningFollowup]  # every follow-up replica started, stopped at the end

    def targets(self) -> dict[str, str]:
        return {
            "contacts": f"127.0.0.1:{self.contacts.runtime.port}",
            "interactions": f"127.0.0.1:{self.interactions.runtime.port}",
            "followup": f"127.0.0.1:{self.followup_env['CRM_GRPC_PORT']}",
        }

    def client_with(self, token: str) -> Client:
        """A client of these services with another token (close it after use)."""
        t = self.targets()
        return Client(
            contacts=t["contacts"],
            interactions=t["interactions"],
            followup=t["followup"],
            token=token,
            deadline=5.0,
        )

    async def replica(self, **extra: str) -> RunningFollowup:
        """Another follow-up replica on the same database and nats-server; on the desk's port
        unless `extra` moves it (CRM_GRPC_PORT="0": one the desk does not talk to)."""
        started = await start_followup(self.nats, {**self.followup_env, **extra}, self.clock)
        self.replicas.append(started)
        return started

    def desk(self, **options: float) -> DeskApp:
        return DeskApp(self.client, user=AGENT, zone=AGENT_ZONE, now=self.clock.now, **options)

    async def customer(self, name: str, preferred: str, zone: str) -> contact_pb2.Contact:
        """A customer of agent-ana's team, once the interactions service knows it too (it
        learns contacts from their events), so that touches can be logged with it."""
        created = await self.client.contacts.create(
            display_name=name,
            preferred_name=preferred,
            time_zone=zone,
            phones=["+34 612 34 56 78"],
        )
        await eventually(lambda: self.interactions.store.contact(created.id))
        return created

    async def promise(
        self, contact_id: str, text: str, due_in: timedelta, owner_id: str = AGENT
    ) -> promise_pb2.Promise:
        return await self.client.promises.create(
            contact_id=contact_id,
            text=text,
            due_at=self.clock.now() + due_in,
            owner_id=owner_id,
            channel="phone",
            kind="call_back",
        )

    async def fall_due(self, delta: timedelta, replica: RunningFollowup | None = None) -> int:
        """Time passes; the follow-up replica sends what fell due and publishes it at once."""
        replica = replica or self.followup
        self.clock.advance(delta)
        sent = await replica.scheduler.drain()
        await replica.runtime.parts.relay.flush()
        return sent


@pytest.fixture
async def services(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[DeskServices]:
    clock = ManualClock(datetime.now(UTC).replace(microsecond=0))
    env = followup_env(nats_server, tmp_path, CRM_GRPC_PORT=str(free_port()))
    async with AsyncExitStack() as stack:
        contacts = await stack.enter_async_context(running_contacts(nats_server, tmp_path, clock))
        interactions = await stack.enter_async_context(
            running_interactions(nats_server, tmp_path, clock)
        )
        replicas: list[RunningFollowup] = []
        stack.push_async_callback(_stop_all, replicas)
        followup = await start_followup(nats_server, env, clock)
        replicas.append(followup)
        client = Client(
            contacts=f"127.0.0.1:{contacts.runtime.port}",
            interactions=f"127.0.0.1:{interactions.runtime.port}",
            followup=f"127.0.0.1:{followup.runtime.port}",
            token=AGENT_TOKEN,
            deadline=5.0,
        )
        await stack.enter_async_context(client)
        office = DeskServices(
            nats_server, clock, contacts, interactions, followup, env, client, replicas
        )
        yield office


async def _stop_all(replicas: list[RunningFollowup]) -> None:
    for replica in replicas:
        await replica.stop()
