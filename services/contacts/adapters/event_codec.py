"""Domain events of contacts → protobuf payloads on `crm.contacts.<event>.<contact_id>` (no
personal data: these facts stay in the stream after an erasure)."""

from __future__ import annotations

from typing import assert_never

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
from contacts.entrypoints.proto_mapping import (
    CHANNEL,
    KIND,
    RELATIONSHIP,
    STATUS,
    consents_to_proto,
    quiet_hours_to_proto,
)
from crm.contacts.v1 import events_pb2 as events_pb
from promesa.codec import outgoing
from promesa.event_catalog import CONTACTS
from promesa.events import OutgoingEvent
from promesa.protos import to_timestamp

SOURCE = "promesa/contacts"


def profile(c: Contact) -> events_pb.ContactProfile:
    """The facts other services act on: ids, ownership, status and how to reach out respectfully."""
    d = c.details
    return events_pb.ContactProfile(
        contact_id=c.id,
        kind=KIND.to_proto(d.kind),
        owner_id=d.owner_id,
        team=d.team,
        relationship=RELATIONSHIP.to_proto(d.relationship),
        status=STATUS.to_proto(c.status),
        time_zone=d.time_zone,
        preferred_channel=CHANNEL.to_proto(d.preferred_channel),
        consents=consents_to_proto(d),
        quiet_hours=quiet_hours_to_proto(d),
        discreet=d.discreet,
        organisation_id=d.organisation_id,
        referred_by_id=d.referred_by_id,
    )


def encode(event: ContactEvent) -> OutgoingEvent:
    message, about = _payload(event)
    subject = CONTACTS.subject(message, about)
    return outgoing(message, subject=subject, source=SOURCE, about=about, at=event.occurred_at)


def _payload(event: ContactEvent) -> tuple[Message, str]:
    """The proto payload of a domain event, and the contact it is about."""
    match event:
        case ContactCreated(contact, actor, at):
            created = events_pb.ContactCreated(
                profile=profile(contact), actor=actor, occurred_at=to_timestamp(at)
            )
            return created, contact.id
        case ContactUpdated(contact, changed, actor, at):
            updated = events_pb.ContactUpdated(
                profile=profile(contact),
                changed_fields=changed,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
            return updated, contact.id
        case ContactBecameActive(contact, at):
            active = events_pb.ContactBecameActive(
                contact_id=contact.id,
                owner_id=contact.details.owner_id,
                team=contact.details.team,
                last_purchase_at=to_timestamp(contact.last_purchase_at),
                occurred_at=to_timestamp(at),
            )
            return active, contact.id
        case ContactBecameInactive(contact, at):
            inactive = events_pb.ContactBecameInactive(
                contact_id=contact.id,
                owner_id=contact.details.owner_id,
                team=contact.details.team,
                last_purchase_at=to_timestamp(contact.last_purchase_at),
                occurred_at=to_timestamp(at),
            )
            return inactive, contact.id
        case ContactsMerged(survivor_id, merged_id, actor, at):
            merged = events_pb.ContactsMerged(
                survivor_id=survivor_id,
                merged_id=merged_id,
                actor=actor,
                occurred_at=to_timestamp(at),
            )
            return merged, survivor_id
        case ContactErased(contact_id, actor, at):
            erased = events_pb.ContactErased(
                contact_id=contact_id, actor=actor, occurred_at=to_timestamp(at)
            )
            return erased, contact_id
        case _:
            assert_never(event)
