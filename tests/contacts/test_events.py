"""The contacts service as a consumer of interactions, and its inactivity sweep on a clock."""

from __future__ import annotations

from datetime import timedelta

from contacts.entrypoints.interactions_consumer import CONSUMER
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from promesa.bus import CONTACTS_STREAM, INTERACTIONS_STREAM
from promesa.event_catalog import INTERACTIONS
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.contacts.conftest import RunningContacts
from tests.contacts.test_contacts_api import a_person, create
from tests.support import SUPERVISOR_TOKEN, bearer, events_about, eventually


async def publish_interaction(
    svc: RunningContacts,
    contact_id: str,
    kind: interaction_pb2.InteractionType.ValueType,
    *,
    event_id: str | None = None,
    msg_id: str | None = None,
    data: bytes | None = None,
) -> str:
    """Publishes as the interactions service would (it declares its own stream)."""
    event_id = event_id or new_id()
    await svc.bus.declare_stream(INTERACTIONS_STREAM)
    payload = data
    if payload is None:
        payload = interactions_events.InteractionRecorded(
            interaction_id=new_id(),
            contact_id=contact_id,
            type=kind,
            channel=interaction_pb2.CHANNEL_PHONE,
            occurred_at=to_timestamp(svc.clock.now()),
            agent_id="agent-ana",
        ).SerializeToString()
    await svc.bus.js.publish(
        INTERACTIONS.subject(interactions_events.InteractionRecorded(), contact_id),
        payload,
        headers={
            "ce-id": event_id,
            "ce-type": "crm.interactions.v1.InteractionRecorded",
            "ce-source": "promesa/interactions",
            "ce-subject": contact_id,
            "Nats-Msg-Id": msg_id or event_id,
        },
    )
    return event_id


async def get(svc: RunningContacts, contact_id: str) -> contact_pb2.Contact:
    reply = await svc.stub.GetContact(
        contacts_pb.GetContactRequest(id=contact_id), metadata=bearer()
    )
    return reply.contact


PURCHASE = interaction_pb2.INTERACTION_TYPE_PURCHASE
INQUIRY = interaction_pb2.INTERACTION_TYPE_INQUIRY


async def test_a_recorded_interaction_updates_the_last_touch(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["touch@example.com"]))
    await publish_interaction(contacts_service, created.id, INQUIRY)

    async def touched() -> contact_pb2.Contact | None:
        c = await get(contacts_service, created.id)
        return c if c.HasField("last_interaction_at") else None

    contact = await eventually(touched)
    assert contact.status == contact_pb2.LIFECYCLE_STATUS_NEVER_PURCHASED


async def test_a_purchase_makes_the_customer_active_and_says_so(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["buyer@example.com"]))
    await publish_interaction(contacts_service, created.id, PURCHASE)

    async def active() -> contact_pb2.Contact | None:
        c = await get(contacts_service, created.id)
        return c if c.status == contact_pb2.LIFECYCLE_STATUS_ACTIVE else None

    contact = await eventually(active)
    assert contact.last_purchase_at == contact.last_interaction_at

    async def announced() -> list[object]:
        msgs = await events_about(contacts_service.bus.js, CONTACTS_STREAM.name, created.id)
        return [m for m in msgs if m.subject == f"crm.contacts.became_active.{created.id}"]

    await eventually(announced)


async def test_a_redelivered_interaction_changes_nothing_the_second_time(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["twice@example.com"]))
    event_id = await publish_interaction(contacts_service, created.id, PURCHASE)

    async def applied() -> contact_pb2.Contact | None:
        c = await get(contacts_service, created.id)
        return c if c.status == contact_pb2.LIFECYCLE_STATUS_ACTIVE else None

    first = await eventually(applied)
    # The same event again, under a new message id, as a producer replaying its outbox after
    # the duplicate window would send it; then a marker event to know it has been processed.
    contacts_service.clock.advance(timedelta(days=1))
    await publish_interaction(
        contacts_service, created.id, PURCHASE, event_id=event_id, msg_id=new_id()
    )
    marker = await create(contacts_service, a_person(emails=["marker@example.com"]))
    await publish_interaction(contacts_service, marker.id, INQUIRY)

    async def marker_applied() -> contact_pb2.Contact | None:
        c = await get(contacts_service, marker.id)
        return c if c.HasField("last_interaction_at") else None

    await eventually(marker_applied)
    again = await get(contacts_service, created.id)
    assert again.etag == first.etag
    assert again.last_purchase_at == first.last_purchase_at


async def test_an_undecodable_event_goes_to_the_dead_letters(
    contacts_service: RunningContacts,
) -> None:
    event_id = await publish_interaction(contacts_service, "x", PURCHASE, data=b"\xff\xff\xff")
    store = contacts_service.store

    async def dead() -> list[dict[str, object]]:
        letters = await store.dead_letters()
        return [d for d in letters if d["event_id"] == event_id]

    [letter] = await eventually(dead)
    assert letter["consumer"] == CONSUMER
    assert "undecodable" in str(letter["error"])


async def test_the_sweep_turns_a_lapsed_customer_inactive_exactly_once(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["lapse@example.com"]))
    await publish_interaction(contacts_service, created.id, PURCHASE)

    async def active() -> contact_pb2.Contact | None:
        c = await get(contacts_service, created.id)
        return c if c.status == contact_pb2.LIFECYCLE_STATUS_ACTIVE else None

    await eventually(active)
    reactions = contacts_service.app.reactions
    contacts_service.clock.advance(timedelta(days=89))
    assert await reactions.sweep_inactive() == 0

    contacts_service.clock.advance(timedelta(days=1))
    assert await reactions.sweep_inactive() == 1
    assert await reactions.sweep_inactive() == 0
    assert (await get(contacts_service, created.id)).status == (
        contact_pb2.LIFECYCLE_STATUS_INACTIVE
    )
    await contacts_service.runtime.parts.relay.flush()
    msgs = await events_about(contacts_service.bus.js, CONTACTS_STREAM.name, created.id)
    inactive = [m for m in msgs if m.subject == f"crm.contacts.became_inactive.{created.id}"]
    assert len(inactive) == 1

    # A new purchase wins the customer back.
    await publish_interaction(contacts_service, created.id, PURCHASE)
    await eventually(active)


async def wait_for_a_marker(svc: RunningContacts) -> None:
    """A touch for a fresh contact, published last: once it shows, what came before it on the
    stream has been handled."""
    marker = await create(svc, a_person(emails=[f"marker-{new_id()}@example.com"]))
    await publish_interaction(svc, marker.id, INQUIRY)

    async def marker_applied() -> contact_pb2.Contact | None:
        c = await get(svc, marker.id)
        return c if c.HasField("last_interaction_at") else None

    await eventually(marker_applied)


async def test_a_touch_for_an_erased_contact_is_acknowledged_and_changes_nothing(
    contacts_service: RunningContacts,
) -> None:
    created = await create(contacts_service, a_person(emails=["erased@example.com"]))
    await contacts_service.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=created.id, reason="REF-1"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    tombstone = await get(contacts_service, created.id)

    await publish_interaction(contacts_service, created.id, PURCHASE)
    await wait_for_a_marker(contacts_service)

    assert await get(contacts_service, created.id) == tombstone
    assert not await contacts_service.store.dead_letters()


async def test_a_late_touch_for_a_merged_away_contact_counts_for_the_survivor(
    contacts_service: RunningContacts,
) -> None:
    survivor = await create(contacts_service, a_person(emails=["survivor@example.com"]))
    duplicate = await create(contacts_service, a_person(emails=["duplicate@example.com"]))
    await contacts_service.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(survivor_id=survivor.id, duplicate_id=duplicate.id),
        metadata=bearer(),
    )

    await publish_interaction(contacts_service, duplicate.id, PURCHASE)

    async def survivor_active() -> contact_pb2.Contact | None:
        c = await get(contacts_service, survivor.id)
        return c if c.status == contact_pb2.LIFECYCLE_STATUS_ACTIVE else None

    await eventually(survivor_active)
    redirect = await get(contacts_service, duplicate.id)
    assert redirect.merged_into_id == survivor.id
    assert not redirect.HasField("last_purchase_at")
