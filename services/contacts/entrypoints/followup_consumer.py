"""Contacts' consumer of the follow-up stream: the follow-up service's confirmation that it
erased a contact goes to the erasure record (`crm.followup.contact_erasure_confirmed.>`).

One durable per stream consumed (`contacts-followup`), as the NATS permissions allow. The
confirming service is the domain of the subject, not a name in the payload: each service
may publish only its own subjects, so the subject is the proof."""

from __future__ import annotations

from contacts.usecases import ContactReactions
from crm.followup.v1 import events_pb2 as followup_events
from promesa.bus import FOLLOWUP_STREAM
from promesa.event_catalog import FOLLOWUP, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import read_timestamp
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "contacts-followup"
SUBJECTS = FOLLOWUP.subjects("contact_erasure_confirmed")


class FollowupHandler:
    def __init__(self, reactions: ContactReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        match FOLLOWUP.decode(event):
            case followup_events.ContactErasureConfirmed() as confirmed:
                confirmed_at = read_timestamp(confirmed, "occurred_at")
                require(contact_id=confirmed.contact_id, occurred_at=confirmed_at)
                assert confirmed_at is not None  # required just above
                await self._reactions.contact_erasure_confirmed(
                    InboxKey(CONSUMER, event.event_id),
                    contact_id=confirmed.contact_id,
                    service=FOLLOWUP.domain,
                    confirmed_at=confirmed_at,
                )
            case _:
                raise UndecodableEventError(f"contacts does not consume {event.subject!r}")


def subscription(reactions: ContactReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the follow-up stream."""
    return Subscription(CONSUMER, FOLLOWUP_STREAM, SUBJECTS, FollowupHandler(reactions))
