"""The follow-up service as a consumer of interactions and contacts events."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import events_pb2 as followup_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from followup.entrypoints import contacts_consumer
from followup.entrypoints.interactions_consumer import CONSUMER
from promesa.auth import acting_as, worker_identity
from promesa.bus import CONTACTS_STREAM, INTERACTIONS_STREAM, StreamSpec
from promesa.codec import outgoing
from promesa.errors import UnauthenticatedError
from promesa.event_catalog import subject_token
from promesa.events import NATS_MSG_ID
from promesa.ids import derived_id, new_id
from promesa.protos import to_timestamp
from promesa.storage import InboxKey
from tests.followup.conftest import RunningFollowup, make
from tests.support import SUPERVISOR_TOKEN, bearer, eventually


def contact_of(message: Message | bytes) -> str:
    """The contact an event of the contacts or interactions stream is about."""
    if isinstance(message, bytes):
        return "unknown"
    fields = message.DESCRIPTOR.fields_by_name
    for name in ("contact_id", "merged_id"):
        if name in fields:
            return str(getattr(message, name))
    profile = getattr(message, "profile", None)
    return str(profile.contact_id) if profile is not None else ""


async def publish(
    svc: RunningFollowup,
    stream: StreamSpec,
    subject: str,
    message: Message | bytes,
    *,
    event_id: str | None = None,
    about: str = "",
) -> str:
    """Publishes as the producing service would (it declares its own stream): on `subject`
    (`crm.<domain>.<event>`) followed by the contact the event is about. Every call gets a
    fresh `Nats-Msg-Id`, so repeating an event id acts as a replay JetStream lets through."""
    subject = f"{subject}.{subject_token(contact_of(message))}"
    await svc.bus.declare_stream(stream)
    payload = empty_pb2.Empty() if isinstance(message, bytes) else message
    event = outgoing(
        payload, subject=subject, source="promesa/test", about=about, at=svc.clock.now()
    )
    event = replace(
        event,
        event_id=event_id or event.event_id,
        data=message if isinstance(message, bytes) else event.data,
    )
    await svc.bus.js.publish(
        subject, event.data, headers={**event.headers(), NATS_MSG_ID: new_id()}
    )
    return event.event_id


def recorded(
    svc: RunningFollowup,
    contact_id: str,
    kind: interaction_pb2.InteractionType.ValueType,
    promises: list[interaction_pb2.PromiseMade] | None = None,
) -> interactions_events.InteractionRecorded:
    return interactions_events.InteractionRecorded(
        interaction_id=new_id(),
        contact_id=contact_id,
        type=kind,
        channel=interaction_pb2.CHANNEL_PHONE,
        occurred_at=to_timestamp(svc.clock.now()),
        agent_id="agent-ana",
        team="madrid",
        promises=promises or [],
        actor="agent-ana",
    )


async def promises_of(svc: RunningFollowup, contact_id: str) -> list[promise_pb2.Promise]:
    """Every promise to the contact, read by a supervisor of every team (what events make
    is not always in the agent's team)."""
    page = await svc.stub.ListPromises(
        followup_pb.ListPromisesRequest(contact_id=contact_id), metadata=bearer(SUPERVISOR_TOKEN)
    )
    return list(page.promises)


async def test_each_promise_made_in_an_interaction_is_tracked_once(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    promised = interaction_pb2.PromiseMade(
        id=new_id(),
        text="Send the replacement part",
        due_at=to_timestamp(svc.clock.now() + timedelta(days=2)),
        kind=interaction_pb2.PROMISE_KIND_DELIVER,
    )
    event = recorded(svc, contact, interaction_pb2.INTERACTION_TYPE_REQUEST, [promised])
    event_id = await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", event)

    [promise] = await eventually(lambda: promises_of(svc, contact))
    assert promise.id == promised.id
    assert promise.owner_id == "agent-ana" and promise.team == "madrid"
    assert promise.kind == promise_pb2.PROMISE_KIND_DELIVER
    assert promise.source_interaction_id == event.interaction_id

    # The same event redelivered, and the promise again in a later event: nothing new.
    await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", event, event_id=event_id)
    again = recorded(svc, contact, interaction_pb2.INTERACTION_TYPE_REQUEST, [promised])
    marker = new_id()
    await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", again)
    await publish(
        svc,
        INTERACTIONS_STREAM,
        "crm.interactions.recorded",
        recorded(svc, marker, interaction_pb2.INTERACTION_TYPE_COMPLAINT),
    )
    await eventually(lambda: promises_of(svc, marker))
    assert [p.etag for p in await promises_of(svc, contact)] == [promise.etag]


async def test_a_promise_from_an_event_without_an_actor_is_made_by_the_consumer_handling_it(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    promised = interaction_pb2.PromiseMade(
        id=new_id(),
        text="Send the manual",
        due_at=to_timestamp(svc.clock.now() + timedelta(days=1)),
        owner_id="agent-bea",
    )
    event = recorded(svc, contact, interaction_pb2.INTERACTION_TYPE_INQUIRY, [promised])
    event.actor, event.agent_id = "", ""  # e.g. recorded by an import, not by a person
    await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", event)

    [promise] = await eventually(lambda: promises_of(svc, contact))

    assert promise.created_by == f"followup/{CONSUMER}"
    assert promise.owner_id == "agent-bea"
    assert promise.kind == promise_pb2.PROMISE_KIND_OTHER  # no kind given


async def test_a_complaint_gets_an_owner_and_a_due_time_at_once(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    event = recorded(svc, contact, interaction_pb2.INTERACTION_TYPE_COMPLAINT)
    await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", event)

    [promise] = await eventually(lambda: promises_of(svc, contact))
    assert promise.id == derived_id(event.interaction_id, "complaint-resolution")
    assert promise.kind == promise_pb2.PROMISE_KIND_RESOLVE_COMPLAINT
    assert promise.owner_id == "agent-ana"
    assert promise.due_at.ToDatetime() - event.occurred_at.ToDatetime() == timedelta(hours=48)


async def test_an_inactive_customer_gets_one_win_back_promise(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    inactive = contacts_events.ContactBecameInactive(
        contact_id=contact, owner_id="agent-ana", team="madrid"
    )
    await publish(svc, CONTACTS_STREAM, "crm.contacts.became_inactive", inactive)
    [promise] = await eventually(lambda: promises_of(svc, contact))
    assert promise.kind == promise_pb2.PROMISE_KIND_WIN_BACK
    assert promise.created_by == "followup/followup-contacts"  # the consumer's identity

    await publish(svc, CONTACTS_STREAM, "crm.contacts.became_inactive", inactive)
    marker = new_id()
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.became_inactive",
        contacts_events.ContactBecameInactive(contact_id=marker, owner_id="agent-ana"),
    )
    await eventually(lambda: promises_of(svc, marker))
    assert len(await promises_of(svc, contact)) == 1


async def test_erasing_a_contact_cancels_open_promises_and_removes_their_text(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    await make(svc, contact_id=contact)
    # Watching as it is published: the erasure purges it from the stream right after.
    watch = await svc.bus.js.subscribe(f"crm.followup.promise_cancelled.{contact}")
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.erased",
        contacts_events.ContactErased(contact_id=contact, actor="sup-sam"),
    )

    async def erased() -> promise_pb2.Promise | None:
        [p] = await promises_of(svc, contact)
        return p if p.HasField("erased_at") else None

    promise = await eventually(erased)
    assert promise.status == promise_pb2.PROMISE_STATUS_CANCELLED
    assert promise.text == ""
    assert all(h.reason == "" for h in promise.history)

    msg = await watch.next_msg(timeout=10)
    await watch.unsubscribe()
    assert followup_events.PromiseCancelled.FromString(msg.data).actor == "system"


async def test_merged_contacts_promises_follow_the_survivor(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    survivor, duplicate = new_id(), new_id()
    p = await make(svc, contact_id=duplicate)
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.merged",
        contacts_events.ContactsMerged(survivor_id=survivor, merged_id=duplicate),
    )
    [moved] = await eventually(lambda: promises_of(svc, survivor))
    assert moved.id == p.id


async def test_contact_preferences_are_kept_locally_and_bad_events_are_dead_lettered(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    profile = contacts_events.ContactProfile(
        contact_id=contact,
        owner_id="agent-ana",
        time_zone="Europe/Madrid",
        discreet=True,
        consents=[contact_pb2.ChannelConsent(channel=contact_pb2.CHANNEL_EMAIL, granted=True)],
        quiet_hours=contact_pb2.QuietHours(start_minute=1320, end_minute=480),
    )
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.created",
        contacts_events.ContactCreated(profile=profile),
    )
    prefs = await eventually(lambda: svc.store.profile(contact))
    assert prefs.discreet and prefs.time_zone == "Europe/Madrid"
    assert prefs.quiet_hours is not None and prefs.quiet_hours.start_minute == 1320

    bad = await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", b"\xff\xff\xff")

    async def dead() -> list[dict[str, object]]:
        return [d for d in await svc.store.dead_letters() if d["event_id"] == bad]

    [letter] = await eventually(dead)
    assert letter["consumer"] == CONSUMER


async def test_a_reaction_run_outside_any_worker_is_refused_and_writes_nothing(
    followup_service: RunningFollowup,
) -> None:
    """No identity bound (a path that skipped the consumer) is no access, not "system"."""
    reactions, contact = followup_service.app.reactions, new_id()

    with pytest.raises(UnauthenticatedError):
        await reactions.contact_became_inactive(
            InboxKey(contacts_consumer.CONSUMER, new_id()),
            contact_id=contact,
            owner_id="agent-ana",
            team="madrid",
        )

    assert await promises_of(followup_service, contact) == []
    with acting_as(worker_identity("followup", "replay")):
        made = await reactions.contact_became_inactive(
            InboxKey(contacts_consumer.CONSUMER, new_id()),
            contact_id=contact,
            owner_id="agent-ana",
            team="madrid",
        )
    [promise] = await promises_of(followup_service, contact)
    assert made and promise.created_by == "followup/replay"
