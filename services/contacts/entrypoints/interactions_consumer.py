"""Contacts' consumer of the interactions stream: a recorded interaction keeps last touch and
last purchase current (`crm.interactions.recorded.>`); the interactions service's
confirmation that it erased a contact goes to the erasure record
(`crm.interactions.contact_erasure_confirmed.>`).

One durable per stream consumed (`contacts-interactions`), as the NATS permissions allow.
The confirming service is the domain of the subject, not a name in the payload: each
service may publish only its own subjects, so the subject is the proof."""

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
SUBJECTS = INTERACTIONS.subjects("recorded", "contact_erasure_confirmed")
PURCHASE = interaction_pb2.InteractionType.Value("INTERACTION_TYPE_PURCHASE")


class InteractionsHandler:
    def __init__(self, reactions: ContactReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        inbox = InboxKey(CONSUMER, event.event_id)
        match INTERACTIONS.decode(event):
            case interactions_events.InteractionRecorded() as recorded:
                occurred_at = read_timestamp(recorded, "occurred_at")
                require(contact_id=recorded.contact_id, occurred_at=occurred_at)
                assert occurred_at is not None  # required just above
                await self._reactions.interaction_recorded(
                    inbox,
                    contact_id=recorded.contact_id,
                    occurred_at=occurred_at,
                    is_purchase=recorded.type == PURCHASE,
                )
            case interactions_events.ContactErasureConfirmed() as confirmed:
                confirmed_at = read_timestamp(confirmed, "occurred_at")
                require(contact_id=confirmed.contact_id, occurred_at=confirmed_at)
                assert confirmed_at is not None  # required just above
                await self._reactions.contact_erasure_confirmed(
                    inbox,
                    contact_id=confirmed.contact_id,
                    service=INTERACTIONS.domain,
                    confirmed_at=confirmed_at,
                )
            case _:
                raise UndecodableEventError(f"contacts does not consume {event.subject!r}")


def subscription(reactions: ContactReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the interactions stream."""
    return Subscription(CONSUMER, INTERACTIONS_STREAM, SUBJECTS, InteractionsHandler(reactions))
