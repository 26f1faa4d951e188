"""Turns promises made in an interaction (and complaints made without one) into promises."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from followup.domain.model import Channel, PromiseKind
from followup.usecases import InteractionFacts, PromisedInInteraction, PromiseLedger
from promesa.errors import Violations
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import enum_from_proto, from_timestamp

CONSUMER = "followup-interactions"
SUBJECTS = ("crm.interactions.recorded",)
COMPLAINT = interaction_pb2.INTERACTION_TYPE_COMPLAINT
CHANNEL = ("CHANNEL", interaction_pb2.Channel)
KIND = ("PROMISE_KIND", interaction_pb2.PromiseKind)


def facts_from(recorded: interactions_events.InteractionRecorded) -> InteractionFacts:
    occurred_at = from_timestamp(recorded, "occurred_at")
    if not recorded.contact_id or not recorded.interaction_id or occurred_at is None:
        raise UndecodableEventError("interaction_id, contact_id and occurred_at are required")
    v = Violations()  # an enum value newer than this code reads as unset, not as an error
    promised = []
    for i, p in enumerate(recorded.promises):
        due_at = from_timestamp(p, "due_at")
        if due_at is None and p.HasField("due_within"):
            due_at = occurred_at + p.due_within.ToTimedelta()
        if due_at is None or not p.text:
            raise UndecodableEventError(f"promises[{i}] has no text or no due time")
        kind = enum_from_proto(p.kind, *KIND, PromiseKind, f"promises[{i}].kind", v)
        promised.append(PromisedInInteraction(p.id, p.text, due_at, p.owner_id, kind))
    return InteractionFacts(
        interaction_id=recorded.interaction_id,
        contact_id=recorded.contact_id,
        is_complaint=recorded.type == COMPLAINT,
        channel=enum_from_proto(recorded.channel, *CHANNEL, Channel, "channel", v),
        occurred_at=occurred_at,
        agent_id=recorded.agent_id,
        team=recorded.team,
        actor=recorded.actor,
        promises=tuple(promised),
    )


class InteractionsHandler:
    def __init__(self, ledger: PromiseLedger) -> None:
        self._ledger = ledger

    async def __call__(self, event: IncomingEvent) -> None:
        try:
            recorded = interactions_events.InteractionRecorded.FromString(event.data)
        except DecodeError as exc:
            raise UndecodableEventError(str(exc)) from exc
        if not event.event_id:
            raise UndecodableEventError("the event has no id")
        await self._ledger.record_interaction(CONSUMER, event.event_id, facts_from(recorded))
