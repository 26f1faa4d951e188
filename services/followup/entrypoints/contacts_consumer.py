"""Keeps the local read model of contact preferences, and reacts to what happens to contacts:
a win-back promise for an inactive customer (kept when they buy again), erasure and merging
carried into promises."""

from __future__ import annotations

from datetime import datetime

from crm.contacts.v1 import events_pb2 as contacts_events
from followup.domain.contacts import ContactPreferences, QuietHours
from followup.entrypoints.proto_mapping import CONTACT_CHANNEL, CONTACT_RELATIONSHIP
from followup.usecases import PromiseReactions
from promesa.bus import CONTACTS_STREAM
from promesa.event_catalog import CONTACTS, require
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import read_timestamp
from promesa.runtime import Subscription
from promesa.storage import InboxKey

CONSUMER = "followup-contacts"
SUBJECTS = CONTACTS.subjects(
    "created", "updated", "became_active", "became_inactive", "erased", "merged"
)


def preferences_from(
    p: contacts_events.ContactProfile, changed_at: datetime | None = None
) -> ContactPreferences:
    """Channels newer than this code are left out: a consent to one of them is not usable.
    `changed_at` is when the contacts service made the change (an older one heard late is
    not kept)."""
    consents = [
        (channel, c.granted)
        for c in p.consents
        if (channel := CONTACT_CHANNEL.read(c.channel)) is not None
    ]
    return ContactPreferences(
        contact_id=p.contact_id,
        owner_id=p.owner_id,
        team=p.team,
        time_zone=p.time_zone,
        preferred_channel=CONTACT_CHANNEL.read(p.preferred_channel),
        consents=tuple(consents),
        quiet_hours=QuietHours(p.quiet_hours.start_minute, p.quiet_hours.end_minute)
        if p.HasField("quiet_hours")
        else None,
        discreet=p.discreet,
        relationship=CONTACT_RELATIONSHIP.read(p.relationship),
        changed_at=changed_at,
    )


class ContactsHandler:
    def __init__(self, reactions: PromiseReactions) -> None:
        self._reactions = reactions

    async def __call__(self, event: IncomingEvent) -> None:
        inbox = InboxKey(CONSUMER, event.event_id)
        reactions = self._reactions
        match CONTACTS.decode(event):
            case contacts_events.ContactCreated() | contacts_events.ContactUpdated() as changed:
                require(**{"profile.contact_id": changed.profile.contact_id})
                changed_at = read_timestamp(changed, "occurred_at")
                await reactions.contact_profile_changed(
                    inbox, preferences_from(changed.profile, changed_at)
                )
            case contacts_events.ContactBecameInactive() as inactive:
                require(contact_id=inactive.contact_id)
                await reactions.contact_became_inactive(
                    inbox,
                    contact_id=inactive.contact_id,
                    owner_id=inactive.owner_id,
                    team=inactive.team,
                    occurred_at=read_timestamp(inactive, "occurred_at"),
                )
            case contacts_events.ContactBecameActive() as active:
                require(contact_id=active.contact_id)
                await reactions.contact_became_active(
                    inbox,
                    contact_id=active.contact_id,
                    purchased_at=read_timestamp(active, "last_purchase_at"),
                    occurred_at=read_timestamp(active, "occurred_at"),
                )
            case contacts_events.ContactErased() as erased:
                require(contact_id=erased.contact_id)
                await reactions.contact_erased(inbox, contact_id=erased.contact_id)
            case contacts_events.ContactsMerged() as merged:
                require(merged_id=merged.merged_id, survivor_id=merged.survivor_id)
                await reactions.contacts_merged(
                    inbox, merged_id=merged.merged_id, survivor_id=merged.survivor_id
                )
            case other:
                raise UndecodableEventError(f"not followed here: {other.DESCRIPTOR.full_name}")


def subscription(reactions: PromiseReactions) -> Subscription:
    """The durable consumer the runtime runs for this module, on the contacts stream."""
    return Subscription(CONSUMER, CONTACTS_STREAM, SUBJECTS, ContactsHandler(reactions))
