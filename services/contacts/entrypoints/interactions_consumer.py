"""Keeps last touch and last purchase current from `crm.interactions.recorded` events."""

from __future__ import annotations

from contacts.usecases import ContactReactions
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from promesa.bus import INTERACTIONS_STREAM
from promesa.event_catalog import INTERACTIONS, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import read_timestamp
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "contacts-interactions"
SUBJECTS = INTERACTIONS.subjects("recorded")
PURCHASE = interaction_pb2.InteractionType.Value("INTERACTION_TYPE_PURCHASE")


class InteractionsHandler:
    def __init__(self, reactions: ContactReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        match INTERACTIONS.decode(event):
            case interactions_events.InteractionRecorded() as recorded:
                occurred_at = read_timestamp(recorded, "occurred_at")
                require(contact_id=recorded.contact_id, occurred_at=occurred_at)
                assert occurred_at is not None  # required just above
                await self._reactions.interaction_recorded(
                    InboxKey(CONSUMER, event.event_id),
                    contact_id=recorded.contact_id,
                    occurred_at=occurred_at,
                    is_purchase=recorded.type == PURCHASE,
                )
            case _:
                raise UndecodableEventError(f"contacts does not consume {event.subject!r}")


def subscription(reactions: ContactReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the interactions stream."""
    return Subscription(CONSUMER, INTERACTIONS_STREAM, SUBJECTS, InteractionsHandler(reactions))
