"""What the contacts stream does to the timeline: erasures and merges, each applied once."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.domain.model import Interaction
from interactions.entrypoints.contacts_consumer import CONSUMER
from promesa.bus import CONTACTS_STREAM
from promesa.codec import outgoing
from promesa.event_catalog import CONTACTS
from promesa.ids import new_id
from promesa.protos import to_timestamp
from promesa.storage import InboxKey
from tests.contacts.conftest import RunningContacts
from tests.interactions.conftest import (
    RunningInteractions,
    a_promise,
    amend,
    an_interaction,
    contact_in_both,
    known_contact,
    record,
)
from tests.support import SUPERVISOR_TOKEN, bearer, events_about, eventually


async def timeline_of(
    svc: RunningInteractions, contact_id: str
) -> list[interaction_pb2.Interaction]:
    reply = await svc.stub.ListInteractions(
        interactions_pb.ListInteractionsRequest(contact_id=contact_id), metadata=bearer()
    )
    return list(reply.interactions)


async def contacts_event(contacts: RunningContacts, about: str, subject: str) -> str:
    """The id of the event the contacts service published about a contact on a subject."""

    async def found() -> list[object]:
        msgs = await events_about(contacts.bus.js, CONTACTS_STREAM.name, about)
        return [m for m in msgs if m.subject == subject]

    [msg] = await eventually(found)
    return str(msg.headers["ce-id"])  # type: ignore[attr-defined]


async def test_erasing_a_contact_removes_the_words_of_its_touches_and_keeps_the_facts(
    contacts_service: RunningContacts, interactions_beside_contacts: RunningInteractions
) -> None:
    svc = interactions_beside_contacts
    contact_id = await contact_in_both(contacts_service, svc, "forget@example.com")
    complaint = await record(svc, an_interaction(contact_id, promises=[a_promise()]))
    letter_too = interaction_pb2.Interaction(outcome="Refund and apology letter")
    await amend(svc, complaint.id, letter_too, ["outcome"], "Ms García asked for a letter too")
    await svc.stub.RateInteraction(
        interactions_pb.RateInteractionRequest(id=complaint.id, satisfaction=2), metadata=bearer()
    )
    contacts_service.clock.advance(timedelta(minutes=1))

    # When the contacts service erases the contact,
    await contacts_service.stub.EraseContact(
        contacts_pb.EraseContactRequest(id=contact_id, reason="customer asked"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )

    # then the free text of every touch is gone, the facts for statistics stay,
    async def erased() -> interaction_pb2.Interaction | None:
        [touch] = await timeline_of(svc, contact_id)
        return touch if touch.HasField("erased_at") else None

    touch = await eventually(erased)
    assert (touch.summary, touch.notes, touch.outcome) == ("", "", "")
    assert [p.text for p in touch.promises] == [""]
    assert [p.id for p in touch.promises] == [p.id for p in complaint.promises]
    [amendment] = touch.amendments
    assert (amendment.reason, dict(amendment.previous_values)) == ("", {})
    assert list(amendment.changed_fields) == ["outcome"]
    assert (touch.type, touch.channel, touch.occurred_at) == (
        complaint.type,
        complaint.channel,
        complaint.occurred_at,
    )
    assert touch.satisfaction == 2 and touch.agent_id == "agent-ana"

    # and the contact gets no new touches, nor do the old ones change.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, an_interaction(contact_id))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert contact_id in (caught.value.details() or "") and "erased" in (
        caught.value.details() or ""
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await amend(svc, complaint.id, letter_too, ["summary"], "after the erasure")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    # A redelivered erasure changes nothing the second time.
    event_id = await contacts_event(
        contacts_service, contact_id, f"crm.contacts.erased.{contact_id}"
    )
    inbox = InboxKey(CONSUMER, event_id)
    again = await svc.app.reactions.contact_erased(inbox, contact_id=contact_id, actor="sup-sam")
    assert again is False
    assert await timeline_of(svc, contact_id) == [touch]


async def test_merging_contacts_moves_the_duplicates_touches_to_the_survivor(
    contacts_service: RunningContacts, interactions_beside_contacts: RunningInteractions
) -> None:
    svc = interactions_beside_contacts
    survivor = await contact_in_both(contacts_service, svc, "keep@example.com")
    duplicate = await contact_in_both(contacts_service, svc, "dup@example.com")
    kept = await record(svc, an_interaction(survivor))
    contacts_service.clock.advance(timedelta(minutes=1))
    moved = await record(svc, an_interaction(duplicate, promises=[a_promise()]))

    await contacts_service.stub.MergeContacts(
        contacts_pb.MergeContactsRequest(survivor_id=survivor, duplicate_id=duplicate),
        metadata=bearer(),
    )

    async def merged() -> list[str]:
        ids = [i.id for i in await timeline_of(svc, survivor)]
        return ids if len(ids) == 2 else []

    assert await eventually(merged) == [moved.id, kept.id]
    assert await timeline_of(svc, duplicate) == []
    got = await svc.stub.GetInteraction(
        interactions_pb.GetInteractionRequest(id=moved.id), metadata=bearer()
    )
    assert got.interaction.promises == moved.promises  # the follow-up promises keep their ids

    # A touch recorded under the old id lands on the survivor's timeline.
    late = await record(svc, an_interaction(duplicate))
    assert late.contact_id == survivor

    # A redelivered merge changes nothing the second time.
    event_id = await contacts_event(contacts_service, survivor, f"crm.contacts.merged.{survivor}")
    again = await svc.app.reactions.contacts_merged(
        InboxKey(CONSUMER, event_id), merged_id=duplicate, survivor_id=survivor, actor="agent-ana"
    )
    assert again is False
    assert len(await timeline_of(svc, survivor)) == 3


async def test_an_undecodable_contacts_event_goes_to_the_dead_letters(
    contacts_service: RunningContacts, interactions_beside_contacts: RunningInteractions
) -> None:
    svc = interactions_beside_contacts
    event_id = new_id()
    await contacts_service.bus.js.publish(
        f"crm.contacts.erased.{event_id}",
        b"\xff\xff\xff",
        headers={"ce-id": event_id, "Nats-Msg-Id": event_id},
    )

    async def dead() -> list[dict[str, object]]:
        letters = await svc.store.dead_letters()
        return [d for d in letters if d["event_id"] == event_id]

    [letter] = await eventually(dead)
    assert letter["consumer"] == CONSUMER
    assert "undecodable" in str(letter["error"])


async def test_an_erasure_without_an_actor_is_recorded_as_the_consumers_own_identity(
    interactions_service: RunningInteractions,
) -> None:
    """No default "system" identity: the consumer's worker identity is bound around each event."""
    svc = interactions_service
    contact_id = await known_contact(svc)
    touch = await record(svc, an_interaction(contact_id))
    erased = contacts_events.ContactErased(
        contact_id=contact_id, occurred_at=to_timestamp(svc.clock.now())
    )
    event = outgoing(
        erased,
        subject=CONTACTS.subject(erased, contact_id),
        source="promesa/contacts",
        about=contact_id,
        at=svc.clock.now(),
    )
    await svc.bus.publish_batch([event])

    async def erased_touch() -> Interaction | None:
        found = await svc.store.get(touch.id)
        return found if found and found.erased_at else None

    gone = await eventually(erased_touch)
    assert gone.updated_by == f"interactions/{CONSUMER}"
