"""What the SDK does when the network or a service fails: gRPC's retry policy on UNAVAILABLE
with one request_id per create, deadlines, TLS, and a reminder stream that reconnects without
missing or repeating a reminder. Faults come from proxies in front of the real services."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.followup.v1 import reminder_pb2
from promesa_client import Client, ReminderEvent, errors
from promesa_client._connection import RETRY_POLICY
from tests.clients.proxies import GrpcProxy, TcpProxy, running_grpc_proxy, self_signed_certificate
from tests.front_office import AGENT, FrontOffice, front_office, running_front_office, unique
from tests.support import eventually

__all__ = ["front_office"]  # the module's shared system (tests/front_office.py)

AT_DUE = reminder_pb2.REMINDER_KIND_AT_DUE
# A client that tries to reconnect every 0.2 s at most, so that a test waits little.
QUICK_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 200),
]
CREATE_CONTACT = "/crm.contacts.v1.ContactsService/CreateContact"


def client_via(front_office: FrontOffice, service: str, address: str, **options: object) -> Client:
    """A client whose calls to one service go through a proxy at `address`."""
    targets = {**front_office.targets, service: address}
    return Client(
        contacts=targets["contacts"],
        interactions=targets["interactions"],
        followup=targets["followup"],
        token="dev-agent-token",
        **options,  # type: ignore[arg-type]
    )


async def contacts_with_email(client: Client, email: str) -> list[str]:
    return [c.id async for c in client.contacts.search(email=email)]


async def test_a_create_sent_twice_with_one_request_id_makes_one_record(
    front_office: FrontOffice,
) -> None:
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    request_id = str(uuid.uuid4())
    name = unique("Twice")
    async with front_office.client() as client:
        first = await client.contacts.create(name, emails=[email], request_id=request_id)
        again = await client.contacts.create(name, emails=[email], request_id=request_id)

        assert again.id == first.id
        assert await contacts_with_email(client, email) == [first.id]


async def test_an_answer_lost_with_unavailable_is_retried_by_grpc_with_the_same_request_id(
    front_office: FrontOffice,
) -> None:
    # Given a proxy that lets the first create reach the service, then loses its answer
    proxy = GrpcProxy(front_office.targets["contacts"], lose_answers=1)
    email = f"{uuid.uuid4().hex[:10]}@example.com"
    async with (
        running_grpc_proxy(proxy) as address,
        client_via(front_office, "contacts", address) as client,
    ):
        # When the SDK creates a contact once
        created = await client.contacts.create(unique("Retried"), emails=[email])

    # Then gRPC's retry policy sent it again, the same request_id both times, and the service
    # made one contact
    creates = [a for a in proxy.attempts if a.method == CREATE_CONTACT]
    sent = [contacts_pb.CreateContactRequest.FromString(a.request) for a in creates]
    assert len(sent) == 2 and sent[0].request_id == sent[1].request_id != ""
    async with front_office.client() as direct:
        assert await contacts_with_email(direct, email) == [created.id]
    assert RETRY_POLICY["retryableStatusCodes"] == ["UNAVAILABLE"]


async def test_other_failures_are_not_retried(front_office: FrontOffice) -> None:
    proxy = GrpcProxy(front_office.targets["contacts"])
    async with (
        running_grpc_proxy(proxy) as address,
        client_via(front_office, "contacts", address) as client,
    ):
        with pytest.raises(errors.InvalidArgument):
            await client.contacts.create("", emails=["bad"])

    assert len(proxy.attempts) == 1


async def test_a_service_nobody_answers_for_is_unavailable_after_the_retries(
    front_office: FrontOffice,
) -> None:
    with socket_reserved() as nowhere:
        async with client_via(front_office, "contacts", nowhere) as client:
            with pytest.raises(errors.Unavailable):
                await client.contacts.get("any")


async def test_every_call_has_the_client_deadline_unless_it_sets_its_own(
    front_office: FrontOffice,
) -> None:
    contact_id = await _a_contact(front_office)
    proxy = GrpcProxy(front_office.targets["contacts"], delay=1.0)
    async with (
        running_grpc_proxy(proxy) as address,
        client_via(front_office, "contacts", address, deadline=0.2) as client,
    ):
        with pytest.raises(errors.DeadlineExceeded):
            await client.contacts.get(contact_id)
        patient = await client.contacts.get(contact_id, timeout=5)

    assert patient.id == contact_id


async def test_tls_when_asked_with_the_callers_roots(front_office: FrontOffice) -> None:
    contact_id = await _a_contact(front_office)
    key, certificate = self_signed_certificate()
    roots = grpc.ssl_channel_credentials(root_certificates=certificate)
    proxy = GrpcProxy(front_office.targets["contacts"])
    async with running_grpc_proxy(proxy, tls=(key, certificate)) as address:
        async with client_via(front_office, "contacts", address, tls=roots) as client:
            over_tls = await client.contacts.get(contact_id)
        async with client_via(front_office, "contacts", address, deadline=0.5) as plaintext:
            with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)):
                await plaintext.contacts.get(contact_id)
        async with client_via(front_office, "contacts", address, tls=True, deadline=0.5) as system:
            with pytest.raises((errors.Unavailable, errors.DeadlineExceeded)):
                await system.contacts.get(contact_id)  # not signed by a system root

    assert over_tls.id == contact_id


class Reminders:
    """A reminder stream read in the background, as an app reads it."""

    def __init__(self, client: Client, owner_id: str) -> None:
        self.events: list[ReminderEvent] = []
        self.breaks: list[errors.PromesaError] = []
        self._task = asyncio.create_task(self._read(client, owner_id))

    async def _read(self, client: Client, owner_id: str) -> None:
        async for event in client.promises.reminders(owner_id, on_disconnect=self.breaks.append):
            self.events.append(event)

    def at_due(self, promise_id: str) -> list[ReminderEvent]:
        return [
            e
            for e in self.events
            if e.reminder.promise_id == promise_id and e.reminder.kind == AT_DUE
        ]

    async def wait_for(self, promise_id: str) -> None:
        async def arrived() -> bool:
            if self._task.done():
                self._task.result()  # the stream failed: say why
            return bool(self.at_due(promise_id))

        await eventually(arrived, timeout=20)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def reading_reminders(client: Client, owner_id: str) -> AsyncIterator[Reminders]:
    reading = Reminders(client, owner_id)
    try:
        yield reading
    finally:
        await reading.stop()


async def _a_contact(front_office: FrontOffice) -> str:
    async with front_office.client() as client:
        return (await client.contacts.create(unique("Reminded"))).id


async def _due_soon(front_office: FrontOffice, contact_id: str, text: str) -> str:
    async with front_office.client() as client:
        promise = await client.promises.create(
            contact_id,
            text=text,
            due_at=datetime.now(UTC) + timedelta(seconds=2),  # time to spare on a busy machine
            owner_id=AGENT,
            kind="call_back",
        )
        return promise.id


async def test_reminders_reconnect_after_the_network_fails_missing_none_repeating_none(
    front_office: FrontOffice,
) -> None:
    contact_id = await _a_contact(front_office)
    network = TcpProxy(front_office.targets["followup"])
    address = await network.start()
    try:
        async with (
            client_via(
                front_office, "followup", address, channel_options=QUICK_RECONNECT
            ) as client,
            reading_reminders(client, AGENT) as reading,
        ):
            # Given a reminder read on a live stream
            first = await _due_soon(front_office, contact_id, "first")
            await reading.wait_for(first)

            # When the network fails while another reminder is sent
            network.cut()
            second = await _due_soon(front_office, contact_id, "second")
            await _delivered_at_due(front_office, second)
            network.restore()

            # Then the stream comes back with the one it missed, and nothing twice
            await reading.wait_for(second)
            ids = [e.reminder.id for e in reading.events]
            assert len(ids) == len(set(ids))
            assert len(reading.at_due(first)) == len(reading.at_due(second)) == 1
            assert reading.breaks and all(isinstance(b, errors.Unavailable) for b in reading.breaks)
    finally:
        await network.stop()


async def _delivered_at_due(front_office: FrontOffice, promise_id: str) -> None:
    async with front_office.client() as client:

        async def delivered() -> bool:
            rows = await client.promises.deliveries(promise_id=promise_id).collect()
            return any(
                r.kind == AT_DUE and r.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED
                for r in rows
            )

        await eventually(delivered, timeout=20)


async def test_reminders_reconnect_after_the_service_restarts(tmp_path: Path) -> None:
    async with running_front_office(tmp_path) as system:
        contact_id = await _a_contact(system)
        async with (
            system.client(channel_options=QUICK_RECONNECT) as client,
            reading_reminders(client, AGENT) as reading,
        ):
            first = await _due_soon(system, contact_id, "before the restart")
            await reading.wait_for(first)

            system.stop("followup")
            system.start("followup")
            await system.wait_serving("followup")
            after = await _due_soon(system, contact_id, "after the restart")

            await reading.wait_for(after)
            ids = [e.reminder.id for e in reading.events]
            assert len(ids) == len(set(ids)) and len(reading.at_due(first)) == 1
            assert reading.breaks


@contextlib.contextmanager
def socket_reserved() -> Iterator[str]:
    """An address where nothing answers: a port bound but never listened on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


async def test_a_reminder_stream_refused_for_another_reason_is_raised_not_retried(
    front_office: FrontOffice,
) -> None:
    async with front_office.client() as agent_1:
        stream = agent_1.promises.reminders("agent-2")  # an agent streams only their own

        with pytest.raises(errors.PermissionDenied):
            await asyncio.wait_for(anext(stream), timeout=10)
