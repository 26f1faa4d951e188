"""Domain events of the timeline → protobuf payloads on `crm.interactions.<event>.<contact>`.

Summaries, notes and outcomes stay in this service. Promise texts do travel: the follow-up
service tracks each promise and must say what was promised; it erases them on ContactErased,
and this service purges the contact's subjects from its stream. Event ids derive from the
interaction (and version), or the contact for a confirmation, so re-encoding an event never
makes a second one.
"""

from __future__ import annotations

from typing import assert_never

from google.protobuf.message import Message

from crm.interactions.v1 import events_pb2 as events_pb
from interactions.domain.events import (
    ContactErasureConfirmed,
    InteractionAmended,
    InteractionEvent,
    InteractionRated,
    InteractionRecorded,
)
from interactions.entrypoints import proto_mapping as mapping
from promesa.codec import outgoing
from promesa.event_catalog import INTERACTIONS
from promesa.events import OutgoingEvent
from promesa.ids import derived_id
from promesa.protos import to_timestamp

SOURCE = "promesa/interactions"
SERVICE = "interactions"  # how an erasure confirmation names the service that confirms


def encode(event: InteractionEvent) -> OutgoingEvent:
    message: Message
    match event:
        case ContactErasureConfirmed(contact_id=contact_id, occurred_at=at):
            # One per contact: a second encoding is the same event, dropped by JetStream.
            message = events_pb.ContactErasureConfirmed(
                contact_id=contact_id, service=SERVICE, occurred_at=to_timestamp(at)
            )
            return outgoing(
                message,
                subject=INTERACTIONS.subject(message, contact_id),
                source=SOURCE,
                about=contact_id,
                at=at,
                event_id=derived_id(contact_id, "contact_erasure_confirmed"),
            )
        case InteractionRecorded(interaction=i, actor=actor, occurred_at=at):
            d = i.details
            event_id = derived_id(i.id, "recorded")
            recorded = events_pb.InteractionRecorded(
                interaction_id=i.id,
                contact_id=i.contact_id,
                type=mapping.INTERACTION_TYPE.to_proto(d.type),
                channel=mapping.CHANNEL.to_proto(d.channel),
                direction=mapping.DIRECTION.to_proto(d.direction),
                occurred_at=to_timestamp(d.occurred_at),
                agent_id=d.agent_id,
                team=d.team,
                purchase=mapping.purchase_to_proto(d.purchase),
                actor=actor,
            )
            for p in i.promises:
                mapping.promise_to_proto(p, into=recorded.promises.add())
            message = recorded
        case InteractionRated(interaction=i, actor=actor, occurred_at=at):
            event_id = derived_id(i.id, "rated")
            message = events_pb.InteractionRated(
                interaction_id=i.id,
                contact_id=i.contact_id,
                agent_id=i.details.agent_id,
                team=i.details.team,
                satisfaction=i.satisfaction or 0,
                occurred_at=to_timestamp(at),
                actor=actor,
            )
        case InteractionAmended(interaction=i, changed_fields=changed, actor=actor, occurred_at=at):
            event_id = derived_id(i.id, "amended", str(i.version))
            message = events_pb.InteractionAmended(
                interaction_id=i.id,
                contact_id=i.contact_id,
                changed_fields=changed,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case _:
            assert_never(event)
    return outgoing(
        message,
        subject=INTERACTIONS.subject(message, i.contact_id),
        source=SOURCE,
        about=i.id,
        at=at,
        event_id=event_id,
    )
