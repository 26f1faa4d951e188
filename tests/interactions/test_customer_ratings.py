"""The customer's own answers from the follow-up stream: the score a customer gave a kept
promise is recorded as the rating of the interaction the promise was made in, once, as theirs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crm.followup.v1 import events_pb2 as followup_events
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.entrypoints.followup_consumer import FollowupHandler
from promesa.bus import FOLLOWUP_STREAM, INTERACTIONS_STREAM
from promesa.codec import outgoing
from promesa.event_catalog import FOLLOWUP
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.interactions.conftest import (
    RunningInteractions,
    a_promise,
    an_interaction,
    known_contact,
    record,
)
from tests.support import bearer, events_about, eventually


def given(
    interaction_id: str, contact_id: str, score: int, svc: RunningInteractions, **overrides: str
) -> followup_events.CustomerSatisfactionGiven:
    fields: dict[str, object] = {
        "promise_id": new_id(),
        "contact_id": contact_id,
        "source_interaction_id": interaction_id,
        "score": score,
        "actor": f"customer:{contact_id}",
        "occurred_at": to_timestamp(svc.clock.now()),
    }
    fields.update(overrides)
    return followup_events.CustomerSatisfactionGiven(**fields)  # type: ignore[arg-type]


async def publish(
    svc: RunningInteractions,
    message: followup_events.CustomerSatisfactionGiven,
    event_id: str = "",
) -> str:
    """As the follow-up service publishes it (it declares its own stream)."""
    await svc.bus.declare_stream(FOLLOWUP_STREAM)
    event = outgoing(
        message,
        subject=FOLLOWUP.subject(message, message.contact_id),
        source="promesa/followup",
        about=message.promise_id,
        at=svc.clock.now(),
        event_id=event_id or None,
    )
    await svc.bus.publish_batch([event])
    return event.event_id


async def rating_of(svc: RunningInteractions, interaction_id: str) -> tuple[int, str]:
    reply = await svc.stub.GetInteraction(
        interactions_pb.GetInteractionRequest(id=interaction_id), metadata=bearer()
    )
    return reply.interaction.satisfaction, reply.interaction.updated_by


async def test_a_customers_answer_rates_the_source_interaction_once_as_theirs(
    interactions_service: RunningInteractions,
) -> None:
    svc = interactions_service
    contact_id = await known_contact(svc)
    touch = await record(svc, an_interaction(contact_id, promises=[a_promise()]))

    # When the customer's answer to the promise's satisfaction request is published,
    first = given(touch.id, contact_id, 4, svc)
    event_id = await publish(svc, first)

    # then the interaction is rated by the customer,
    async def rated() -> tuple[int, str] | None:
        found = await rating_of(svc, touch.id)
        return found if found[0] else None

    assert await eventually(rated) == (4, f"customer:{contact_id}")

    async def announced() -> list[interactions_events.InteractionRated]:
        msgs = await events_about(svc.bus.js, INTERACTIONS_STREAM.name, touch.id)
        return [
            interactions_events.InteractionRated.FromString(m.data)
            for m in msgs
            if m.subject.startswith("crm.interactions.rated.")
        ]

    [event] = await eventually(announced)
    assert (event.satisfaction, event.actor) == (4, f"customer:{contact_id}")

    # and neither a redelivery nor another answer changes it: a rating is given once.
    await publish(svc, first, event_id=event_id)
    await publish(svc, given(touch.id, contact_id, 1, svc))
    marker = await record(svc, an_interaction(contact_id, promises=[a_promise()]))
    await publish(svc, given(marker.id, contact_id, 5, svc))
    await eventually(lambda: _rated(svc, marker.id))
    assert await rating_of(svc, touch.id) == (4, f"customer:{contact_id}")
    assert len(await announced()) == 1


async def _rated(svc: RunningInteractions, interaction_id: str) -> bool:
    return (await rating_of(svc, interaction_id))[0] > 0


async def test_a_rating_staff_gave_already_stays(
    interactions_service: RunningInteractions,
) -> None:
    svc = interactions_service
    contact_id = await known_contact(svc)
    touch = await record(svc, an_interaction(contact_id))
    await svc.stub.RateInteraction(
        interactions_pb.RateInteractionRequest(id=touch.id, satisfaction=2), metadata=bearer()
    )

    await publish(svc, given(touch.id, contact_id, 5, svc))
    await publish(svc, given("no-such-interaction", contact_id, 5, svc))
    marker = await record(svc, an_interaction(contact_id))
    await publish(svc, given(marker.id, contact_id, 3, svc))
    await eventually(lambda: _rated(svc, marker.id))

    assert await rating_of(svc, touch.id) == (2, "agent-ana")


def _incoming(message: followup_events.CustomerSatisfactionGiven) -> IncomingEvent:
    subject = FOLLOWUP.subject(message, message.contact_id)
    return IncomingEvent(new_id(), "t", subject, "promesa/followup", "", "", b"", 1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"actor": "agent-ana"},  # staff may not speak for the customer here
        {"actor": "customer:someone-else"},
        {"score": 0},
        {"score": 6},
        {"promise_id": ""},
    ],
)
async def test_an_answer_not_the_customers_own_is_refused(
    interactions_service: RunningInteractions, overrides: dict[str, object]
) -> None:
    svc = interactions_service
    handler = FollowupHandler(svc.app.reactions)
    message = given("i-1", "c-1", 3, svc)
    for name, value in overrides.items():
        setattr(message, name, value)
    event = _incoming(message)
    with pytest.raises(UndecodableEventError):
        await handler(replace(event, data=message.SerializeToString()))
