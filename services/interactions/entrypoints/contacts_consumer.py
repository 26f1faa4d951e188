"""Keeps the local model of contacts (each one's owner and team) from `crm.contacts.*` and
cascades erasures and merges."""

from __future__ import annotations

from crm.contacts.v1 import events_pb2 as contacts_events
from interactions.usecases import InteractionReactions
from promesa.auth import current_identity
from promesa.bus import CONTACTS_STREAM
from promesa.event_catalog import CONTACTS, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import read_timestamp
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "interactions-contacts"
SUBJECTS = CONTACTS.subjects("created", "updated", "erased", "merged")


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
                p = created.profile
                require(contact_id=p.contact_id)
                await r.contact_created(
                    inbox,
                    contact_id=p.contact_id,
                    owner_id=p.owner_id,
                    team=p.team,
                    at=read_timestamp(created, "occurred_at"),
                )
            case contacts_events.ContactUpdated() as updated:
                p = updated.profile
                require(contact_id=p.contact_id)
                await r.contact_updated(
                    inbox,
                    contact_id=p.contact_id,
                    owner_id=p.owner_id,
                    team=p.team,
                    at=read_timestamp(updated, "occurred_at"),
                )
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
