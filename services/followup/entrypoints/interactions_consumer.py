"""Turns promises made in an interaction (and complaints made without one) into promises."""

from __future__ import annotations

from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from followup.domain.model import shifted
from followup.entrypoints.proto_mapping import INTERACTION_CHANNEL, INTERACTION_PROMISE_KIND
from followup.usecases import PromiseReactions
from followup.usecases.reactions import InteractionFacts, PromiseInInteraction
from promesa.bus import INTERACTIONS_STREAM
from promesa.event_catalog import INTERACTIONS, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import read_timestamp
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "followup-interactions"
SUBJECTS = INTERACTIONS.subjects("recorded")
COMPLAINT = interaction_pb2.INTERACTION_TYPE_COMPLAINT


def facts_from(recorded: interactions_events.InteractionRecorded) -> InteractionFacts:
    """The event as the reaction needs it. Enum values newer than this code read as unset;
    a promise without text or a readable due time can never be tracked (dead letters)."""
    occurred_at = read_timestamp(recorded, "occurred_at")
    require(
        interaction_id=recorded.interaction_id,
        contact_id=recorded.contact_id,
        occurred_at=occurred_at,
    )
    assert occurred_at is not None
    promised = []
    for i, p in enumerate(recorded.promises):
        due_at = read_timestamp(p, "due_at")
        if due_at is None and p.HasField("due_within"):
            try:
                due_at = shifted(occurred_at, p.due_within.ToTimedelta())
            except (ValueError, OverflowError):
                due_at = None  # not a Duration: the promise has no due time
        require(**{f"promises[{i}].text": p.text, f"promises[{i}].due_at": due_at})
        assert due_at is not None
        kind = INTERACTION_PROMISE_KIND.read(p.kind)
        promised.append(PromiseInInteraction(p.id, p.text, due_at, p.owner_id, kind))
    return InteractionFacts(
        interaction_id=recorded.interaction_id,
        contact_id=recorded.contact_id,
        is_complaint=recorded.type == COMPLAINT,
        channel=INTERACTION_CHANNEL.read(recorded.channel),
        occurred_at=occurred_at,
        agent_id=recorded.agent_id,
        team=recorded.team,
        actor=recorded.actor,
        promises=tuple(promised),
    )


class InteractionsHandler:
    def __init__(self, reactions: PromiseReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        match INTERACTIONS.decode(event):
            case interactions_events.InteractionRecorded() as recorded:
                inbox = InboxKey(CONSUMER, event.event_id)
                await self._reactions.interaction_recorded(inbox, facts_from(recorded))
            case other:
                raise UndecodableEventError(f"not followed here: {other.DESCRIPTOR.full_name}")


def subscription(reactions: PromiseReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the interactions stream."""
    return Subscription(CONSUMER, INTERACTIONS_STREAM, SUBJECTS, InteractionsHandler(reactions))
