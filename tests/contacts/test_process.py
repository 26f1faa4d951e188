"""The contacts service as a real process: crash safety of the outbox, clean shutdown, metrics."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from collections import Counter
from pathlib import Path

import grpc
from nats.aio.msg import Msg

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from devtools.listening import free_port
from devtools.natsserver import NatsServer
from promesa.bus import CONTACTS_STREAM, EventBus
from tests.contacts.conftest import contacts_env
from tests.contacts.test_contacts_api import a_person
from tests.processes import ServiceProcess
from tests.support import bearer, events_about, eventually, stream_messages


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


async def test_an_event_committed_before_a_crash_is_published_once_after_restart(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    env = contacts_env(own_nats, tmp_path, CRM_GRPC_PORT=str(free_port()))
    service = ServiceProcess("contacts", env)
    service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        await service.wait_serving(channel)
        stub = contacts_grpc.ContactsServiceStub(channel)
        # Given JetStream cannot answer, so the relay cannot publish what the RPC commits,
        os.kill(own_nats.pid, signal.SIGSTOP)
        reply = await stub.CreateContact(
            contacts_pb.CreateContactRequest(contact=a_person(emails=["crash@example.com"])),
            metadata=bearer(),
            timeout=5,
        )
        contact_id = reply.contact.id
        # when the service dies between the commit and the publish,
        service.signal(signal.SIGKILL)
        os.kill(own_nats.pid, signal.SIGCONT)
        # then after a restart the event is published, exactly once.
        service.start()
        await service.wait_serving(channel)
        bus = EventBus(own_nats.url, name="test")
        await bus.connect()
        try:

            async def published() -> list[Msg]:
                return await events_about(bus.js, CONTACTS_STREAM.name, contact_id)

            await eventually(published, timeout=20)
            assert service.signal(signal.SIGTERM) == 0  # a clean stop flushes the outbox too
            assert len(await published()) == 1
        finally:
            await bus.close()
    finally:
        service.kill_if_running()
        await channel.close(None)


async def test_sigterm_finishes_cleanly_and_metrics_were_served(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = contacts_env(
        nats_server, tmp_path, CRM_GRPC_PORT=str(free_port()), CRM_METRICS_PORT=str(metrics_port)
    )
    service = ServiceProcess("contacts", env)
    service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        await service.wait_serving(channel)
        stub = contacts_grpc.ContactsServiceStub(channel)
        await stub.CreateContact(
            contacts_pb.CreateContactRequest(contact=a_person(emails=["metrics@example.com"])),
            metadata=bearer(),
        )
        text = await asyncio.to_thread(scrape, f"http://127.0.0.1:{metrics_port}/metrics")
        assert 'promesa_grpc_server_handled_total{code="OK",method="CreateContact"' in text
        assert "promesa_grpc_server_handling_seconds_bucket" in text
        assert "promesa_outbox_backlog" in text
        assert service.signal(signal.SIGTERM) == 0
    finally:
        service.kill_if_running()
        await channel.close(None)


async def test_a_kill_during_group_commits_loses_no_answered_write_and_repeats_no_event(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """64 writers keep the group commit full when the process is killed: whatever was answered
    OK was durable (it is there after a restart), and each of its events is published once."""
    env = contacts_env(own_nats, tmp_path, CRM_GRPC_PORT=str(free_port()))
    service = ServiceProcess("contacts", env)
    service.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    answered: dict[str, str] = {}  # contact id -> email
    try:
        await service.wait_serving(channel)
        stub = contacts_grpc.ContactsServiceStub(channel)

        async def writer(w: int) -> None:
            for n in range(100_000):
                email = f"writer{w}-{n}@example.com"
                request = contacts_pb.CreateContactRequest(
                    contact=a_person(emails=[email]), request_id=f"kill-{w}-{n}"
                )
                try:
                    reply = await stub.CreateContact(request, metadata=bearer(), timeout=10)
                except grpc.aio.AioRpcError:
                    return  # the process died under this call: nothing was promised
                answered[reply.contact.id] = email

        writers = [asyncio.create_task(writer(w)) for w in range(64)]

        async def under_way() -> bool:
            return len(answered) >= 640

        await eventually(under_way, timeout=60)
        service.signal(signal.SIGKILL)
        await asyncio.gather(*writers)
        promised = dict(answered)

        service.start()
        await service.wait_serving(channel)
        for contact_id, email in promised.items():
            reply = await stub.GetContact(
                contacts_pb.GetContactRequest(id=contact_id), metadata=bearer()
            )
            assert list(reply.contact.emails) == [email]

        bus = EventBus(own_nats.url, name="test")
        await bus.connect()
        try:

            async def all_published() -> list[Msg] | None:
                msgs = await stream_messages(bus.js, CONTACTS_STREAM.name)
                about = {(m.headers or {}).get("ce-subject") for m in msgs}
                return msgs if about >= set(promised) else None

            msgs = await eventually(all_published, timeout=30)
            per_contact = Counter((m.headers or {}).get("ce-subject") for m in msgs)
            assert {per_contact[i] for i in promised} == {1}
            assert max(per_contact.values()) == 1  # nor twice for a create cut short
        finally:
            await bus.close()
    finally:
        service.kill_if_running()
        await channel.close(None)
