"""The interactions service over real gRPC, with its events on a real JetStream."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from promesa.bus import INTERACTIONS_STREAM
from promesa.ids import derived_id
from promesa.protos import to_timestamp
from tests.interactions.conftest import (
    RunningInteractions,
    a_promise,
    a_purchase,
    amend,
    an_interaction,
    known_contact,
    record,
)
from tests.support import SUPERVISOR_TOKEN, bearer, events_about, eventually

COMPLAINT = interaction_pb2.INTERACTION_TYPE_COMPLAINT


async def published(
    svc: RunningInteractions, interaction_id: str, subject: str = ""
) -> list[object]:
    """The events about an interaction in its stream, on one subject or all of them."""
    await svc.runtime.parts.relay.flush()
    msgs = await events_about(svc.bus.js, INTERACTIONS_STREAM.name, interaction_id)
    return [m for m in msgs if subject in ("", m.subject)]


async def test_a_recorded_touch_is_announced_with_its_promises_and_cloudevents_headers(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    occurred = svc.clock.now() - timedelta(hours=2)
    due_at = svc.clock.now() + timedelta(days=3)

    recorded = await record(
        svc,
        an_interaction(
            contact_id,
            occurred_at=to_timestamp(occurred),
            promises=[
                a_promise("Call back with the refund number", timedelta(days=1)),
                interaction_pb2.PromiseMade(
                    text="Send a new kettle", due_at=to_timestamp(due_at), owner_id="agent-bo"
                ),
            ],
        ),
    )

    # The promises got ids derived from the interaction, and absolute due times.
    assert recorded.agent_id == recorded.created_by == "agent-ana"
    first, second = recorded.promises
    assert [first.id, second.id] == [derived_id(recorded.id, "0"), derived_id(recorded.id, "1")]
    assert first.due_at.ToDatetime() == (occurred + timedelta(days=1)).replace(tzinfo=None)
    assert first.owner_id == "agent-ana" and second.owner_id == "agent-bo"
    assert second.kind == interaction_pb2.PROMISE_KIND_OTHER
    assert recorded.etag == "1"

    [msg] = await eventually(lambda: published(svc, recorded.id))
    assert msg.subject == f"crm.interactions.recorded.{contact_id}"  # type: ignore[attr-defined]
    headers: dict[str, str] = msg.headers  # type: ignore[attr-defined]
    assert {k: v for k, v in headers.items() if k != "ce-time"} == {
        "ce-specversion": "1.0",
        "ce-id": derived_id(recorded.id, "recorded"),  # the same on every retry of the relay
        "Nats-Msg-Id": derived_id(recorded.id, "recorded"),
        "ce-source": "promesa/interactions",
        "ce-type": "crm.interactions.v1.InteractionRecorded",
        "ce-subject": recorded.id,
        "content-type": "application/protobuf",
    }
    assert headers["ce-time"] == "2026-01-05T09:00:00Z"  # recorded; the touch is older
    event = interactions_events.InteractionRecorded.FromString(msg.data)  # type: ignore[attr-defined]
    assert event.contact_id == contact_id
    assert event.type == interaction_pb2.INTERACTION_TYPE_COMPLAINT
    assert list(event.promises) == list(recorded.promises)
    assert event.promises[0].HasField("due_at")
    assert event.actor == "agent-ana"
    assert b"crushed" not in msg.data  # type: ignore[attr-defined]


async def test_retried_record_with_the_same_request_id_makes_one_interaction_and_one_event(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    touch = an_interaction(contact_id, promises=[a_promise()])

    first = await record(svc, touch, request_id="retry-1")
    svc.clock.advance(timedelta(days=2))  # the promise would be overdue if recorded again
    again = await record(svc, touch, request_id="retry-1")

    assert again == first
    await eventually(lambda: published(svc, first.id))
    assert len(await published(svc, first.id)) == 1
    timeline = await svc.stub.ListInteractions(
        interactions_pb.ListInteractionsRequest(contact_id=contact_id), metadata=bearer()
    )
    assert [i.id for i in timeline.interactions] == [first.id]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, an_interaction(contact_id, summary="other"), request_id="retry-1")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_the_timeline_lists_newest_first_a_page_at_a_time_with_filters(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    other = await known_contact(svc)
    start = svc.clock.now() - timedelta(days=10)
    ids = []
    for day in range(7):
        kind = interaction_pb2.INTERACTION_TYPE_INQUIRY if day % 2 else COMPLAINT
        at = to_timestamp(start + timedelta(days=day))
        ids.append((await record(svc, an_interaction(contact_id, occurred_at=at, type=kind))).id)
    await record(svc, an_interaction(other))

    async def pages(**filters: object) -> list[list[str]]:
        found, token = [], ""
        while True:
            reply = await svc.stub.ListInteractions(
                interactions_pb.ListInteractionsRequest(
                    contact_id=contact_id,
                    page_size=3,
                    page_token=token,
                    **filters,  # type: ignore[arg-type]
                ),
                metadata=bearer(),
            )
            found.append([i.id for i in reply.interactions])
            token = reply.next_page_token
            if not token:
                return found

    newest_first = ids[::-1]
    assert await pages() == [newest_first[:3], newest_first[3:6], newest_first[6:]]
    inquiries = await pages(type=interaction_pb2.INTERACTION_TYPE_INQUIRY)
    assert inquiries == [[ids[5], ids[3], ids[1]]]
    window = await pages(
        occurred_after=to_timestamp(start + timedelta(days=2)),
        occurred_before=to_timestamp(start + timedelta(days=4)),
    )
    assert window == [[ids[3], ids[2]]]
    assert await pages(channel=interaction_pb2.CHANNEL_EMAIL) == [[]]
    assert await pages(agent_id="agent-ana") == [newest_first[:3], newest_first[3:6], [ids[0]]]


async def test_a_rating_is_given_once_and_announced(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    recorded = await record(svc, an_interaction(contact_id))

    rated = await svc.stub.RateInteraction(
        interactions_pb.RateInteractionRequest(id=recorded.id, satisfaction=4), metadata=bearer()
    )
    assert rated.interaction.satisfaction == 4
    assert rated.interaction.rated_at == to_timestamp(svc.clock.now())

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.RateInteraction(
            interactions_pb.RateInteractionRequest(id=recorded.id, satisfaction=5),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already rated 4" in (caught.value.details() or "")

    [msg] = await eventually(
        lambda: published(svc, recorded.id, f"crm.interactions.rated.{contact_id}")
    )
    event = interactions_events.InteractionRated.FromString(msg.data)  # type: ignore[attr-defined]
    assert (event.satisfaction, event.agent_id, event.team) == (4, "agent-ana", "madrid")


async def test_an_amendment_keeps_the_original_and_says_who_changed_what(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    recorded = await record(svc, an_interaction(contact_id, summary="Parcel arived damagd"))
    svc.clock.advance(timedelta(minutes=3))

    change = interaction_pb2.Interaction(
        summary="Parcel arrived damaged",
        type=interaction_pb2.INTERACTION_TYPE_DISPUTE,
        notes="ignored: not in the mask",
    )
    amended = await amend(
        svc, recorded.id, change, ["summary", "type"], "spelling", recorded.etag, SUPERVISOR_TOKEN
    )

    assert amended.summary == "Parcel arrived damaged"
    assert amended.type == interaction_pb2.INTERACTION_TYPE_DISPUTE
    assert amended.notes == recorded.notes
    assert amended.etag == "2" and amended.updated_by == "sup-sam"
    [amendment] = amended.amendments
    assert amendment.actor == "sup-sam"
    assert amendment.amended_at == to_timestamp(svc.clock.now())
    assert list(amendment.changed_fields) == ["type", "summary"]
    assert amendment.reason == "spelling"
    assert dict(amendment.previous_values) == {
        "summary": "Parcel arived damagd",
        "type": "COMPLAINT",
    }
    # Then a stale etag is refused, and a retry of what already landed is harmless.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await amend(svc, recorded.id, change, ["outcome"], etag=recorded.etag)
    assert caught.value.code() == grpc.StatusCode.ABORTED
    again = await amend(
        svc, recorded.id, change, ["summary", "type"], "spelling", recorded.etag, SUPERVISOR_TOKEN
    )
    assert again == amended

    [msg] = await eventually(
        lambda: published(svc, recorded.id, f"crm.interactions.amended.{contact_id}")
    )
    event = interactions_events.InteractionAmended.FromString(msg.data)  # type: ignore[attr-defined]
    assert list(event.changed_fields) == ["type", "summary"]
    assert event.actor == "sup-sam"


async def test_recording_for_a_contact_the_service_does_not_know_is_refused_naming_it(
    shared_interactions: RunningInteractions,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(shared_interactions, an_interaction("no-such-contact"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no-such-contact" in (caught.value.details() or "")


async def test_a_purchase_keeps_its_amount_and_a_normalised_currency(
    shared_interactions: RunningInteractions,
) -> None:
    contact_id = await known_contact(shared_interactions)
    purchase = interaction_pb2.PurchaseDetails(amount_minor=120_000, currency_code="jpy")
    recorded = await record(shared_interactions, a_purchase(contact_id, purchase=purchase))
    assert (recorded.purchase.amount_minor, recorded.purchase.currency_code) == (120_000, "JPY")


async def test_a_follow_up_continues_a_thread_with_the_same_customer(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    first = await record(svc, an_interaction(contact_id))
    follow_up = await record(
        svc,
        an_interaction(
            contact_id,
            type=interaction_pb2.INTERACTION_TYPE_FOLLOW_UP,
            direction=interaction_pb2.DIRECTION_OUTBOUND,
            thread_id=first.id,
        ),
    )
    assert follow_up.thread_id == first.id
    got = await svc.stub.GetInteraction(
        interactions_pb.GetInteractionRequest(id=follow_up.id), metadata=bearer()
    )
    assert got.interaction == follow_up
