"""Keeps the local model of contacts from `crm.contacts.*` and cascades erasures and merges."""

from __future__ import annotations

from crm.contacts.v1 import events_pb2 as contacts_events
from interactions.usecases import InteractionReactions
from promesa.auth import current_identity
from promesa.bus import CONTACTS_STREAM
from promesa.event_catalog import CONTACTS, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "interactions-contacts"
SUBJECTS = CONTACTS.subjects("created", "erased", "merged")


class ContactsHandler:
    """Decodes an event once and hands its ids to the reaction named after it. An event
    without an actor is recorded as this consumer's own identity."""

    def __init__(self, reactions: InteractionReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        r = self._reactions
        inbox = InboxKey(CONSUMER, event.event_id)
        match CONTACTS.decode(event):
            case contacts_events.ContactCreated() as created:
                contact_id = created.profile.contact_id
                require(contact_id=contact_id)
                await r.contact_created(inbox, contact_id=contact_id)
            case contacts_events.ContactErased() as erased:
                require(contact_id=erased.contact_id)
                actor = erased.actor or current_identity().subject
                await r.contact_erased(inbox, contact_id=erased.contact_id, actor=actor)
            case contacts_events.ContactsMerged() as merged:
                require(survivor_id=merged.survivor_id, merged_id=merged.merged_id)
                if merged.merged_id == merged.survivor_id:
                    raise UndecodableEventError("a contact cannot be merged into itself")
                await r.contacts_merged(
                    inbox,
                    merged_id=merged.merged_id,
                    survivor_id=merged.survivor_id,
                    actor=merged.actor or current_identity().subject,
                )
            case _:
                raise UndecodableEventError(f"no reaction to {event.subject!r}")


def subscription(reactions: InteractionReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the contacts stream."""
    return Subscription(CONSUMER, CONTACTS_STREAM, SUBJECTS, ContactsHandler(reactions))
