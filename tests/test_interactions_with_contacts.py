"""End to end: the contacts service reacts to the touches the real interactions service records,
on SQLite and on MongoDB (tests/whole_system.py)."""

from __future__ import annotations

from datetime import timedelta

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from promesa.protos import to_timestamp
from tests import whole_system
from tests.contacts.conftest import RunningContacts
from tests.interactions.conftest import (
    RunningInteractions,
    a_purchase,
    an_interaction,
    contact_in_both,
    record,
)
from tests.support import bearer, eventually

# Both services in this process, on one clock: contacts first, interactions beside it, on the
# backend of the test's parameter, [sqlite] or [mongodb].
backend = whole_system.backend
contacts_service = whole_system.contacts_service
interactions_beside_contacts = whole_system.interactions_beside_contacts


async def contact_where(
    contacts: RunningContacts, contact_id: str, status: contact_pb2.LifecycleStatus.ValueType
) -> contact_pb2.Contact:
    async def reached() -> contact_pb2.Contact | None:
        reply = await contacts.stub.GetContact(
            contacts_pb.GetContactRequest(id=contact_id), metadata=bearer()
        )
        return reply.contact if reply.contact.status == status else None

    return await eventually(reached)


async def test_a_touch_moves_the_last_interaction_and_a_purchase_makes_the_customer_active(
    contacts_service: RunningContacts, interactions_beside_contacts: RunningInteractions
) -> None:
    interactions = interactions_beside_contacts
    contact_id = await contact_in_both(contacts_service, interactions, "buyer@example.com")
    inquiry_at = contacts_service.clock.now() - timedelta(hours=1)
    await record(interactions, an_interaction(contact_id, occurred_at=to_timestamp(inquiry_at)))

    async def touched() -> contact_pb2.Contact | None:
        reply = await contacts_service.stub.GetContact(
            contacts_pb.GetContactRequest(id=contact_id), metadata=bearer()
        )
        return reply.contact if reply.contact.HasField("last_interaction_at") else None

    contact = await eventually(touched)
    assert contact.last_interaction_at == to_timestamp(inquiry_at)
    assert contact.status == contact_pb2.LIFECYCLE_STATUS_NEVER_PURCHASED

    purchase = await record(interactions, a_purchase(contact_id))

    active = await contact_where(contacts_service, contact_id, contact_pb2.LIFECYCLE_STATUS_ACTIVE)
    assert active.last_purchase_at == purchase.occurred_at
    assert active.last_interaction_at == purchase.occurred_at


async def test_a_purchase_wins_back_a_customer_the_sweep_made_inactive(
    contacts_service: RunningContacts, interactions_beside_contacts: RunningInteractions
) -> None:
    interactions = interactions_beside_contacts
    clock = contacts_service.clock
    contact_id = await contact_in_both(contacts_service, interactions, "lapsed@example.com")
    await record(interactions, a_purchase(contact_id))
    await contact_where(contacts_service, contact_id, contact_pb2.LIFECYCLE_STATUS_ACTIVE)

    # Given the active window passes without a purchase and the sweep runs,
    clock.advance(timedelta(days=91))
    assert await contacts_service.app.reactions.sweep_inactive() == 1
    await contact_where(contacts_service, contact_id, contact_pb2.LIFECYCLE_STATUS_INACTIVE)

    # when the customer buys again,
    comeback = await record(interactions, a_purchase(contact_id, summary="Back for a teapot"))

    # then they are active again, as of that purchase.
    active = await contact_where(contacts_service, contact_id, contact_pb2.LIFECYCLE_STATUS_ACTIVE)
    assert active.last_purchase_at == comeback.occurred_at == to_timestamp(clock.now())
