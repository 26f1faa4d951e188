"""Domain events of contacts → protobuf payloads on `crm.contacts.*` (no personal data)."""

from __future__ import annotations

from google.protobuf.message import Message

from contacts.domain.events import (
    ContactBecameActive,
    ContactBecameInactive,
    ContactCreated,
    ContactErased,
    ContactEvent,
    ContactsMerged,
    ContactUpdated,
)
from contacts.domain.model import Contact
from contacts.entrypoints import proto_mapping as mapping
from crm.contacts.v1 import events_pb2 as events_pb
from promesa.codec import outgoing
from promesa.events import OutgoingEvent
from promesa.protos import to_timestamp

SOURCE = "promesa/contacts"


def profile(c: Contact) -> events_pb.ContactProfile:
    """The facts other services act on: ids, ownership, status and how to reach out respectfully."""
    p = mapping.contact_to_proto(c)
    return events_pb.ContactProfile(
        contact_id=c.id,
        kind=p.kind,
        owner_id=c.details.owner_id,
        team=c.details.team,
        relationship=p.relationship,
        status=p.status,
        time_zone=c.details.time_zone,
        preferred_channel=p.preferred_channel,
        consents=p.consents,
        quiet_hours=p.quiet_hours if c.details.quiet_hours else None,
        discreet=c.details.discreet,
        organisation_id=c.details.organisation_id,
        referred_by_id=c.details.referred_by_id,
    )


def encode(event: ContactEvent) -> OutgoingEvent:
    message: Message
    match event:
        case ContactCreated(contact, actor, at):
            subject, about = "crm.contacts.created", contact.id
            message = events_pb.ContactCreated(
                profile=profile(contact), actor=actor, occurred_at=to_timestamp(at)
            )
        case ContactUpdated(contact, changed, actor, at):
            subject, about = "crm.contacts.updated", contact.id
            message = events_pb.ContactUpdated(
                profile=profile(contact),
                changed_fields=changed,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case ContactBecameActive(contact, at):
            subject, about = "crm.contacts.became_active", contact.id
            message = events_pb.ContactBecameActive(
                contact_id=contact.id,
                owner_id=contact.details.owner_id,
                team=contact.details.team,
                last_purchase_at=to_timestamp(contact.last_purchase_at),
                occurred_at=to_timestamp(at),
            )
        case ContactBecameInactive(contact, at):
            subject, about = "crm.contacts.became_inactive", contact.id
            message = events_pb.ContactBecameInactive(
                contact_id=contact.id,
                owner_id=contact.details.owner_id,
                team=contact.details.team,
                last_purchase_at=to_timestamp(contact.last_purchase_at),
                occurred_at=to_timestamp(at),
            )
        case ContactsMerged(survivor_id, merged_id, actor, at):
            subject, about = "crm.contacts.merged", survivor_id
            message = events_pb.ContactsMerged(
                survivor_id=survivor_id,
                merged_id=merged_id,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
        case ContactErased(contact_id, actor, at):
            subject, about = "crm.contacts.erased", contact_id
            message = events_pb.ContactErased(
                contact_id=contact_id, actor=actor, occurred_at=to_timestamp(at)
            )
    return outgoing(message, subject=subject, source=SOURCE, about=about, at=event.occurred_at)
