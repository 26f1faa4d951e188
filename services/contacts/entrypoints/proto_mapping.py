"""Translation between contacts protos and the domain; unknown enum numbers become violations."""

from __future__ import annotations

from contacts.domain.model import (
    Channel,
    Contact,
    ContactDetails,
    ContactKind,
    Lifecycle,
    PostalAddress,
    QuietHours,
    Relationship,
)
from contacts.ports import ContactFilter
from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from promesa.errors import Violations
from promesa.protos import enum_from_proto, enum_to_proto, from_timestamp, to_timestamp

KIND = ("CONTACT_KIND", contact_pb2.ContactKind)
CHANNEL = ("CHANNEL", contact_pb2.Channel)
RELATIONSHIP = ("RELATIONSHIP", contact_pb2.Relationship)
STATUS = ("LIFECYCLE_STATUS", contact_pb2.LifecycleStatus)


def contact_to_proto(c: Contact) -> contact_pb2.Contact:
    d = c.details
    a = d.postal_address
    return contact_pb2.Contact(
        id=c.id,
        kind=enum_to_proto(d.kind, *KIND),
        display_name=d.display_name,
        preferred_name=d.preferred_name,
        emails=d.emails,
        phones=d.phones,
        postal_address=None
        if a.is_empty()
        else contact_pb2.PostalAddress(
            lines=a.lines,
            locality=a.locality,
            region=a.region,
            postal_code=a.postal_code,
            country_code=a.country_code,
        ),
        organisation_id=d.organisation_id,
        owner_id=d.owner_id,
        team=d.team,
        tags=d.tags,
        time_zone=d.time_zone,
        preferred_channel=enum_to_proto(d.preferred_channel, *CHANNEL),
        consents=[
            contact_pb2.ChannelConsent(channel=enum_to_proto(ch, *CHANNEL), granted=granted)
            for ch, granted in d.consents
        ],
        quiet_hours=contact_pb2.QuietHours(
            start_minute=d.quiet_hours.start_minute, end_minute=d.quiet_hours.end_minute
        )
        if d.quiet_hours
        else None,
        discreet=d.discreet,
        referred_by_id=d.referred_by_id,
        relationship=enum_to_proto(d.relationship, *RELATIONSHIP),
        status=enum_to_proto(c.status, *STATUS),
        last_purchase_at=to_timestamp(c.last_purchase_at),
        last_interaction_at=to_timestamp(c.last_interaction_at),
        created_at=to_timestamp(c.created_at),
        updated_at=to_timestamp(c.updated_at),
        etag=c.etag,
        created_by=c.created_by,
        updated_by=c.updated_by,
        merged_into_id=c.merged_into_id,
        erased_at=to_timestamp(c.erased_at),
    )


def details_from_proto(
    p: contact_pb2.Contact, v: Violations, prefix: str = "contact"
) -> ContactDetails:
    """Every settable field, as sent; enum numbers outside the contract are violations."""
    consents: dict[Channel, bool] = {}
    for i, consent in enumerate(p.consents):
        channel = enum_from_proto(
            consent.channel, *CHANNEL, Channel, f"{prefix}.consents[{i}].channel", v
        )
        if channel is not None:
            consents[channel] = consent.granted
        elif consent.channel == 0:
            v.add(f"{prefix}.consents[{i}].channel", "must name a channel")
    a = p.postal_address
    return ContactDetails(
        kind=enum_from_proto(p.kind, *KIND, ContactKind, f"{prefix}.kind", v) or ContactKind.PERSON,
        display_name=p.display_name,
        preferred_name=p.preferred_name,
        emails=tuple(p.emails),
        phones=tuple(p.phones),
        postal_address=PostalAddress(
            lines=tuple(a.lines),
            locality=a.locality,
            region=a.region,
            postal_code=a.postal_code,
            country_code=a.country_code,
        ),
        organisation_id=p.organisation_id,
        owner_id=p.owner_id,
        team=p.team,
        tags=tuple(p.tags),
        time_zone=p.time_zone,
        preferred_channel=enum_from_proto(
            p.preferred_channel, *CHANNEL, Channel, f"{prefix}.preferred_channel", v
        ),
        consents=tuple(sorted(consents.items())),
        quiet_hours=QuietHours(p.quiet_hours.start_minute, p.quiet_hours.end_minute)
        if p.HasField("quiet_hours")
        else None,
        discreet=p.discreet,
        referred_by_id=p.referred_by_id,
        relationship=enum_from_proto(
            p.relationship, *RELATIONSHIP, Relationship, f"{prefix}.relationship", v
        )
        or Relationship.EXTERNAL_CUSTOMER,
    )


def filter_from_request(r: contacts_pb.ListContactsRequest, v: Violations) -> ContactFilter:
    return ContactFilter(
        status=enum_from_proto(r.status, *STATUS, Lifecycle, "status", v),
        owner_id=r.owner_id,
        team=r.team,
        tag=r.tag,
        kind=enum_from_proto(r.kind, *KIND, ContactKind, "kind", v),
        relationship=enum_from_proto(
            r.relationship, *RELATIONSHIP, Relationship, "relationship", v
        ),
        updated_since=from_timestamp(r, "updated_since"),
    )
