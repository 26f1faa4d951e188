"""The commands a scenario sends and the check that each acknowledged one took effect once.

Every command carries a request_id and a marker unique to it (a contact's display name, an
interaction's summary, a promise's text), so its effect can be found and counted without
knowing how a store keeps it: through the services' own list RPCs, on either backend. A call
that fails in a way a client would retry (UNAVAILABLE, DEADLINE_EXCEEDED, a contact not known
downstream yet) is retried with the same request_id until its own deadline: acknowledged
means a reply with status OK.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2

from chaos.cluster import AGENT, AGENT_TOKEN, SUPERVISOR_TOKEN, TEAM, Cluster
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import contacts_service_pb2_grpc as contacts_grpc
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import followup_service_pb2_grpc as followup_grpc
from crm.followup.v1 import promise_pb2
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from crm.interactions.v1 import interactions_service_pb2_grpc as interactions_grpc
from promesa.protos import to_timestamp

T = TypeVar("T")

RETRIED = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.FAILED_PRECONDITION,  # the contact has not reached that service yet
    grpc.StatusCode.ABORTED,
)
CALL_TIMEOUT = 5.0
# Reconnect quickly after a restart on the same port (gRPC's default backs off to minutes).
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


AS_AGENT = metadata(AGENT_TOKEN)
AS_SUPERVISOR = metadata(SUPERVISOR_TOKEN)


class Clients:
    """One channel per replica; `followup` picks a replica round robin."""

    def __init__(self, cluster: Cluster) -> None:
        self.channels: dict[str, list[grpc.aio.Channel]] = {
            service: [grpc.aio.insecure_channel(p.address, options=CHANNEL_OPTIONS) for p in procs]
            for service, procs in cluster.services.items()
        }
        self.contacts = contacts_grpc.ContactsServiceStub(self.channels["contacts"][0])
        self.interactions = interactions_grpc.InteractionsServiceStub(
            self.channels["interactions"][0]
        )
        self.followups = [followup_grpc.FollowupServiceStub(c) for c in self.channels["followup"]]
        self._turn = 0

    @property
    def followup(self) -> followup_grpc.FollowupServiceAsyncStub:
        self._turn += 1
        return self.followups[self._turn % len(self.followups)]

    async def close(self) -> None:
        for channels in self.channels.values():
            for channel in channels:
                await channel.close(None)


async def retrying(call: Callable[[], Awaitable[T]], *, within: float) -> T | None:
    """The reply, or None when it kept failing in a retriable way for `within` seconds.
    Anything else (a bug, a refusal) is raised: the scenario reports it."""
    deadline = time.monotonic() + within
    pause = 0.05
    while True:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in RETRIED or time.monotonic() > deadline:
                if exc.code() in RETRIED:
                    return None
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


@dataclass
class Ledger:
    """What a scenario asked for and what was acknowledged, by marker."""

    tag: str
    contacts: dict[str, str] = field(default_factory=dict)  # marker -> contact id
    interactions: dict[str, tuple[str, str, list[str]]] = field(default_factory=dict)
    # marker -> (interaction id, contact id, promise ids made in it)
    promises: dict[str, tuple[str, str]] = field(default_factory=dict)  # marker -> (id, contact)
    sent: int = 0
    not_acked: int = 0

    @property
    def acked(self) -> int:
        return len(self.contacts) + len(self.interactions) + len(self.promises)


class Workload:
    """Creates contacts, records interactions (each with one promise made in it) and makes
    promises directly; every call with a request_id and a deadline."""

    def __init__(self, clients: Clients, tag: str, *, patience: float = 90.0) -> None:
        self.clients = clients
        self.ledger = Ledger(tag)
        self.patience = patience

    def _marker(self, kind: str) -> str:
        return f"chaos {self.ledger.tag} {kind} {uuid.uuid4().hex[:12]}"

    def contact_request(self) -> tuple[str, Any]:
        marker = self._marker("contact")
        request = contacts_pb.CreateContactRequest(
            contact=contact_pb2.Contact(
                kind=contact_pb2.CONTACT_KIND_PERSON,
                display_name=marker,
                owner_id=AGENT,
                team=TEAM,
                tags=[self.ledger.tag],
                time_zone="Europe/Madrid",
            ),
            request_id=str(uuid.uuid4()),
        )
        return marker, request

    async def contact(self) -> str | None:
        marker, request = self.contact_request()
        self.ledger.sent += 1
        reply = await retrying(
            lambda: self.clients.contacts.CreateContact(
                request, metadata=AS_AGENT, timeout=CALL_TIMEOUT
            ),
            within=self.patience,
        )
        if reply is None:
            self.ledger.not_acked += 1
            return None
        self.ledger.contacts[marker] = reply.contact.id
        return str(reply.contact.id)

    def interaction_request(self, contact_id: str, due_in: timedelta) -> tuple[str, Any]:
        marker = self._marker("interaction")
        within = duration_pb2.Duration()
        within.FromTimedelta(due_in)
        request = interactions_pb.RecordInteractionRequest(
            interaction=interaction_pb2.Interaction(
                contact_id=contact_id,
                channel=interaction_pb2.CHANNEL_PHONE,
                direction=interaction_pb2.DIRECTION_INBOUND,
                type=interaction_pb2.INTERACTION_TYPE_REQUEST,
                team=TEAM,
                summary=marker,
                promises=[
                    interaction_pb2.PromiseMade(
                        text=f"{marker} promise",
                        due_within=within,
                        kind=interaction_pb2.PROMISE_KIND_CALL_BACK,
                    )
                ],
            ),
            request_id=str(uuid.uuid4()),
        )
        return marker, request

    async def interaction(self, contact_id: str, *, due_in: timedelta) -> str | None:
        marker, request = self.interaction_request(contact_id, due_in)
        self.ledger.sent += 1
        reply = await retrying(
            lambda: self.clients.interactions.RecordInteraction(
                request, metadata=AS_AGENT, timeout=CALL_TIMEOUT
            ),
            within=self.patience,
        )
        if reply is None:
            self.ledger.not_acked += 1
            return None
        made = [p.id for p in reply.interaction.promises]
        self.ledger.interactions[marker] = (reply.interaction.id, contact_id, made)
        return str(reply.interaction.id)

    def promise_request(self, contact_id: str, due_at: datetime) -> tuple[str, Any]:
        marker = self._marker("promise")
        request = followup_pb.CreatePromiseRequest(
            promise=promise_pb2.Promise(
                contact_id=contact_id,
                text=marker,
                kind=promise_pb2.PROMISE_KIND_CALL_BACK,
                channel=promise_pb2.CHANNEL_PHONE,
                owner_id=AGENT,
                team=TEAM,
                priority=promise_pb2.PRIORITY_HIGH,
                due_at=to_timestamp(due_at),
            ),
            request_id=str(uuid.uuid4()),
        )
        return marker, request

    async def promise(self, contact_id: str, *, due_at: datetime) -> str | None:
        marker, request = self.promise_request(contact_id, due_at)
        self.ledger.sent += 1
        reply = await retrying(
            lambda: self.clients.followup.CreatePromise(
                request, metadata=AS_AGENT, timeout=CALL_TIMEOUT
            ),
            within=self.patience,
        )
        if reply is None:
            self.ledger.not_acked += 1
            return None
        self.ledger.promises[marker] = (reply.promise.id, contact_id)
        return str(reply.promise.id)

    async def burst(
        self, contacts: list[str], *, interactions: int, promises: int, concurrency: int = 8
    ) -> None:
        """`interactions` interactions and `promises` promises over the contacts, a few at a
        time, due far enough ahead that no reminder fires during the scenario."""
        gate = asyncio.Semaphore(concurrency)
        far = datetime.now(UTC) + timedelta(days=3)

        async def one(i: int) -> None:
            async with gate:
                contact = contacts[i % len(contacts)]
                if i < interactions:
                    await self.interaction(contact, due_in=timedelta(days=2))
                else:
                    await self.promise(contact, due_at=far)

        await asyncio.gather(*(one(i) for i in range(interactions + promises)))

    async def contacts(self, count: int, concurrency: int = 4) -> list[str]:
        gate = asyncio.Semaphore(concurrency)

        async def one() -> str | None:
            async with gate:
                return await self.contact()

        made = await asyncio.gather(*(one() for _ in range(count)))
        return [c for c in made if c]


@dataclass
class Verdict:
    """The effects of a ledger as the services show them."""

    expected: int = 0
    found: int = 0
    duplicates: int = 0
    missing: list[str] = field(default_factory=list)
    failed_reads: int = 0

    @property
    def lost(self) -> int:
        return self.expected - self.found


async def _pages(fetch: Callable[[str], Awaitable[tuple[list[Any], str]]]) -> list[Any]:
    items: list[Any] = []
    token = ""
    while True:
        page, token = await fetch(token)
        items.extend(page)
        if not token:
            return items


async def inspect(clients: Clients, ledger: Ledger) -> Verdict:
    """Every acknowledged command's effect, and every effect of the events it caused:
    the contact (and, once its interactions reached the contacts service, its last touch),
    the interaction, each promise made in it (tracked by follow-up under the same id),
    each promise made directly. Counted by marker: more than one is a duplicate effect."""
    verdict = Verdict()
    contact_ids = {c for c in ledger.contacts.values()}
    contact_ids |= {c for _, c, _ in ledger.interactions.values()}
    contact_ids |= {c for _, c in ledger.promises.values()}
    touched = {c for _, c, _ in ledger.interactions.values()}
    try:
        contacts = await _pages(lambda token: _contacts_page(clients, ledger.tag, token))
        by_name = Counter(c.display_name for c in contacts)
        last_touch = {c.id: c.HasField("last_interaction_at") for c in contacts}
        interactions: Counter[str] = Counter()
        promises: Counter[str] = Counter()
        promise_ids: set[str] = set()
        for contact_id in contact_ids:
            found = await _pages(
                lambda token, c=contact_id: _interactions_page(clients, c, token)  # type: ignore[misc]
            )
            interactions.update(i.summary for i in found)
            made = await _pages(
                lambda token, c=contact_id: _promises_page(clients, c, token)  # type: ignore[misc]
            )
            promises.update(p.text for p in made)
            promise_ids |= {p.id for p in made}
    except grpc.aio.AioRpcError:
        verdict.failed_reads += 1
        return verdict

    def expect(key: str, present: bool, copies: int) -> None:
        verdict.expected += 1
        if present:
            verdict.found += 1
        else:
            verdict.missing.append(key)
        verdict.duplicates += max(0, copies - 1)

    for marker in ledger.contacts:
        expect(marker, by_name[marker] >= 1, by_name[marker])
    for marker, (_, _, made) in ledger.interactions.items():
        expect(marker, interactions[marker] >= 1, interactions[marker])
        for promise_id in made:  # through crm.interactions.recorded to follow-up
            text = f"{marker} promise"
            expect(f"{marker} promise", promise_id in promise_ids, promises[text])
    for marker in ledger.promises:
        expect(marker, promises[marker] >= 1, promises[marker])
    for contact_id in touched & set(ledger.contacts.values()):
        # through crm.interactions.recorded to contacts (its last touch)
        expect(f"last touch of {contact_id}", last_touch.get(contact_id, False), 1)
    return verdict


async def _contacts_page(clients: Clients, tag: str, token: str) -> tuple[list[Any], str]:
    reply = await clients.contacts.ListContacts(
        contacts_pb.ListContactsRequest(tag=tag, page_size=100, page_token=token),
        metadata=AS_SUPERVISOR,
        timeout=CALL_TIMEOUT,
    )
    return list(reply.contacts), reply.next_page_token


async def _interactions_page(
    clients: Clients, contact_id: str, token: str
) -> tuple[list[Any], str]:
    reply = await clients.interactions.ListInteractions(
        interactions_pb.ListInteractionsRequest(
            contact_id=contact_id, page_size=100, page_token=token
        ),
        metadata=AS_SUPERVISOR,
        timeout=CALL_TIMEOUT,
    )
    return list(reply.interactions), reply.next_page_token


async def _promises_page(clients: Clients, contact_id: str, token: str) -> tuple[list[Any], str]:
    reply = await clients.followups[0].ListPromises(
        followup_pb.ListPromisesRequest(contact_id=contact_id, page_size=100, page_token=token),
        metadata=AS_SUPERVISOR,
        timeout=CALL_TIMEOUT,
    )
    return list(reply.promises), reply.next_page_token


async def settle(clients: Clients, ledger: Ledger, *, within: float) -> tuple[Verdict, float]:
    """Polls until every expected effect is found (or the deadline); returns the last look and
    how long it took from the call (the recovery time when called at the end of a fault)."""
    started = time.monotonic()
    while True:
        verdict = await inspect(clients, ledger)
        if verdict.failed_reads == 0 and verdict.lost == 0:
            return verdict, time.monotonic() - started
        if time.monotonic() - started > within:
            return verdict, time.monotonic() - started
        await asyncio.sleep(0.25)
