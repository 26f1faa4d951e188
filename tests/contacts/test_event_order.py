"""Contacts' consumer of interactions gives the same result in any order: a touch for an erased
contact changes nothing (it is acknowledged), one for a merged-away contact counts for the
survivor, whether the touch arrives before the erasure or merge, or after it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import pytest

from contacts.domain.model import Contact, ContactDetails, ContactDraft, ContactKind, Lifecycle
from promesa.auth import Identity, Role
from promesa.storage import InboxKey
from tests.contacts.conftest import ContactsDesk

SAM = Identity("sup-sam", Role.SUPERVISOR)
CONSUMER = "contacts-interactions"


def draft(name: str, email: str) -> ContactDraft:
    details = ContactDetails(
        kind=ContactKind.PERSON, display_name=name, emails=(email,), team="madrid"
    )
    return ContactDraft(ContactKind.PERSON, details)


def state(c: Contact | None) -> tuple[object, ...]:
    """What a contact is, leaving out the bookkeeping that counts writes (version, updated_at)."""
    assert c is not None
    return (
        c.details,
        c.status,
        c.last_purchase_at,
        c.last_interaction_at,
        c.merged_into_id,
        c.erased_at,
    )


async def touch(
    desk: ContactsDesk, contact_id: str, at: datetime, *, event_id: str = "evt-1"
) -> bool:
    return await desk.reactions.interaction_recorded(
        InboxKey(CONSUMER, event_id), contact_id=contact_id, occurred_at=at, is_purchase=True
    )


async def subjects_in_outbox(desk: ContactsDesk) -> list[str]:
    return [event.subject for _, event in await desk.store.pending_events(1000)]


Order = Callable[[ContactsDesk, Contact, Contact], Awaitable[None]]


# --- erasure ---------------------------------------------------------------------------------


async def test_a_touch_after_the_erasure_is_acknowledged_and_changes_nothing(
    contacts_desk: ContactsDesk,
) -> None:
    contact = await contacts_desk.commands.create(draft("Ada", "ada@example.com"), "", SAM)
    await contacts_desk.commands.erase(contact.id, "REF-1", SAM)
    tombstone = await contacts_desk.store.get(contact.id)
    backlog = await contacts_desk.store.outbox_backlog()

    assert await touch(contacts_desk, contact.id, contacts_desk.clock.now()) is True
    # Handled (its inbox row is there: a redelivery is told apart), nothing written.
    assert await touch(contacts_desk, contact.id, contacts_desk.clock.now()) is False
    assert await contacts_desk.store.get(contact.id) == tombstone
    assert await contacts_desk.store.outbox_backlog() == backlog


async def test_the_tombstone_is_the_same_whether_a_touch_came_before_or_after_the_erasure(
    contacts_desk: ContactsDesk,
) -> None:
    c = contacts_desk.commands
    before = await c.create(draft("Ada", "ada@example.com"), "", SAM)
    after = await c.create(draft("Ada", "ada2@example.com"), "", SAM)
    at = contacts_desk.clock.now() - timedelta(hours=1)

    # Touch, then erase; and erase, then touch: the same touch, at the same time.
    await touch(contacts_desk, before.id, at, event_id="evt-before")
    await c.erase(before.id, "REF-1", SAM)
    await c.erase(after.id, "REF-2", SAM)
    await touch(contacts_desk, after.id, at, event_id="evt-after")

    touched_first = await contacts_desk.store.get(before.id)
    erased_first = await contacts_desk.store.get(after.id)
    assert state(touched_first) == state(erased_first)
    assert touched_first is not None and touched_first.last_purchase_at is None
    assert touched_first.status is Lifecycle.NEVER_PURCHASED


# --- merge -----------------------------------------------------------------------------------


async def touch_then_merge(desk: ContactsDesk, survivor: Contact, duplicate: Contact) -> None:
    await touch(desk, duplicate.id, desk.clock.now(), event_id=f"touch-{duplicate.id}")
    await desk.commands.merge(survivor.id, duplicate.id, "", SAM)


async def merge_then_touch(desk: ContactsDesk, survivor: Contact, duplicate: Contact) -> None:
    await desk.commands.merge(survivor.id, duplicate.id, "", SAM)
    await touch(desk, duplicate.id, desk.clock.now(), event_id=f"touch-{duplicate.id}")


@pytest.mark.parametrize("order", [touch_then_merge, merge_then_touch])
async def test_a_purchase_of_the_merged_away_contact_counts_for_the_survivor_in_any_order(
    contacts_desk: ContactsDesk, order: Order
) -> None:
    c = contacts_desk.commands
    survivor = await c.create(draft("Ada", "ada@example.com"), "", SAM)
    duplicate = await c.create(draft("Ada L.", "lovelace@example.com"), "", SAM)

    await order(contacts_desk, survivor, duplicate)

    now = contacts_desk.clock.now()
    merged = await contacts_desk.store.get(survivor.id)
    assert merged is not None
    assert merged.status is Lifecycle.ACTIVE
    assert merged.last_purchase_at == merged.last_interaction_at == now
    assert set(merged.details.emails) == {"ada@example.com", "lovelace@example.com"}
    redirect = await contacts_desk.store.get(duplicate.id)
    assert redirect is not None and redirect.merged_into_id == survivor.id
    assert redirect.last_purchase_at is None and redirect.status is Lifecycle.NEVER_PURCHASED
    # Other services hear that the survivor became active, whichever came first.
    assert f"crm.contacts.became_active.{survivor.id}" in await subjects_in_outbox(contacts_desk)


async def test_both_orders_of_a_merge_and_a_touch_end_in_the_same_state(
    contacts_desk: ContactsDesk,
) -> None:
    c = contacts_desk.commands
    results = []
    for i, order in enumerate((touch_then_merge, merge_then_touch)):
        survivor = await c.create(draft("Ada", f"ada{i}@example.com"), "", SAM)
        duplicate = await c.create(draft("Ada L.", f"lovelace{i}@example.com"), "", SAM)
        await order(contacts_desk, survivor, duplicate)
        merged = await contacts_desk.store.get(survivor.id)
        redirect = await contacts_desk.store.get(duplicate.id)
        assert merged is not None and redirect is not None
        # Emails differ by design between the two runs; the rest must not.
        results.append(
            (
                merged.status,
                merged.last_purchase_at,
                merged.last_interaction_at,
                redirect.status,
                redirect.last_purchase_at,
                redirect.last_interaction_at,
            )
        )
    assert results[0] == results[1]


async def test_a_touch_for_a_contact_merged_into_one_later_erased_keeps_nothing(
    contacts_desk: ContactsDesk,
) -> None:
    c = contacts_desk.commands
    survivor = await c.create(draft("Ada", "ada@example.com"), "", SAM)
    duplicate = await c.create(draft("Ada L.", "lovelace@example.com"), "", SAM)
    await c.merge(survivor.id, duplicate.id, "", SAM)
    await c.erase(survivor.id, "REF-3", SAM)
    tombstone = await contacts_desk.store.get(survivor.id)

    assert await touch(contacts_desk, duplicate.id, contacts_desk.clock.now()) is True

    assert await contacts_desk.store.get(survivor.id) == tombstone
