"""Records the customer's own answers from `crm.followup.customer_satisfaction_given`: the score
a customer gave a kept promise becomes the rating of the interaction the promise was made in."""

from __future__ import annotations

from crm.followup.v1 import events_pb2 as followup_events
from interactions.usecases import InteractionReactions
from promesa.bus import FOLLOWUP_STREAM
from promesa.event_catalog import FOLLOWUP, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import read_timestamp
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "interactions-followup"
SUBJECTS = FOLLOWUP.subjects("customer_satisfaction_given")


class FollowupHandler:
    """Decodes an event once and hands its ids to the reaction named after it. A rating is
    the customer's: an event whose actor is not `customer:<its contact>` is refused."""

    def __init__(self, reactions: InteractionReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        inbox = InboxKey(CONSUMER, event.event_id)
        match FOLLOWUP.decode(event):
            case followup_events.CustomerSatisfactionGiven() as given:
                require(promise_id=given.promise_id, contact_id=given.contact_id)
                if not 1 <= given.score <= 5:
                    raise UndecodableEventError(f"score {given.score} is not 1 to 5")
                if given.actor != f"customer:{given.contact_id}":
                    raise UndecodableEventError("the actor is not the customer who answered")
                if not given.source_interaction_id:
                    return  # a promise made outside an interaction: nothing here to rate
                await self._reactions.customer_satisfaction_given(
                    inbox,
                    interaction_id=given.source_interaction_id,
                    contact_id=given.contact_id,
                    score=given.score,
                    actor=given.actor,
                    at=read_timestamp(given, "occurred_at"),
                )
            case _:
                raise UndecodableEventError(f"no reaction to {event.subject!r}")


def subscription(reactions: InteractionReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the follow-up stream."""
    return Subscription(CONSUMER, FOLLOWUP_STREAM, SUBJECTS, FollowupHandler(reactions))
