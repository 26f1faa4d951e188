"""Translation between contacts protos and the domain. The mappers parse: each one collects
every enum number and timestamp outside the contract and raises once; the rules on values
are validation.py's."""

from __future__ import annotations

from contacts.domain.erasure import ErasureRecord
from contacts.domain.model import (
    Channel,
    Contact,
    ContactDetails,
    ContactDraft,
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
from promesa.protos import EnumMap, from_timestamp, to_timestamp

KIND = EnumMap(contact_pb2.ContactKind, "CONTACT_KIND", ContactKind)
CHANNEL = EnumMap(contact_pb2.Channel, "CHANNEL", Channel)
RELATIONSHIP = EnumMap(contact_pb2.Relationship, "RELATIONSHIP", Relationship)
STATUS = EnumMap(contact_pb2.LifecycleStatus, "LIFECYCLE_STATUS", Lifecycle)


def contact_to_proto(c: Contact) -> contact_pb2.Contact:
    d = c.details
    a = d.postal_address
    return contact_pb2.Contact(
        id=c.id,
        kind=KIND.to_proto(d.kind),
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
        preferred_channel=CHANNEL.to_proto(d.preferred_channel),
        consents=consents_to_proto(d),
        quiet_hours=quiet_hours_to_proto(d),
        discreet=d.discreet,
        referred_by_id=d.referred_by_id,
        relationship=RELATIONSHIP.to_proto(d.relationship),
        status=STATUS.to_proto(c.status),
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


def consents_to_proto(d: ContactDetails) -> list[contact_pb2.ChannelConsent]:
    return [
        contact_pb2.ChannelConsent(channel=CHANNEL.to_proto(ch), granted=granted)
        for ch, granted in d.consents
    ]


def quiet_hours_to_proto(d: ContactDetails) -> contact_pb2.QuietHours | None:
    q = d.quiet_hours
    if q is None:
        return None
    return contact_pb2.QuietHours(start_minute=q.start_minute, end_minute=q.end_minute)


def contact_from_proto(p: contact_pb2.Contact, prefix: str = "contact") -> ContactDraft:
    """Every settable field, as sent; enum numbers outside the contract are violations."""
    v = Violations()
    consents: dict[Channel, bool] = {}
    for i, consent in enumerate(p.consents):
        path = f"{prefix}.consents[{i}].channel"
        channel = CHANNEL.parse(consent.channel, path, v)
        if channel is not None:
            consents[channel] = consent.granted
        elif consent.channel == 0:
            v.add(path, "must name a channel")
    a = p.postal_address
    kind = KIND.parse(p.kind, f"{prefix}.kind", v)
    details = ContactDetails(
        kind=kind or ContactKind.PERSON,
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
        preferred_channel=CHANNEL.parse(p.preferred_channel, f"{prefix}.preferred_channel", v),
        consents=tuple(sorted(consents.items())),
        quiet_hours=QuietHours(p.quiet_hours.start_minute, p.quiet_hours.end_minute)
        if p.HasField("quiet_hours")
        else None,
        discreet=p.discreet,
        referred_by_id=p.referred_by_id,
        relationship=RELATIONSHIP.parse(p.relationship, f"{prefix}.relationship", v)
        or Relationship.EXTERNAL_CUSTOMER,
    )
    v.raise_if_any()
    return ContactDraft(kind, details)


def filter_from_request(r: contacts_pb.ListContactsRequest) -> ContactFilter:
    v = Violations()
    f = ContactFilter(
        status=STATUS.parse(r.status, "status", v),
        owner_id=r.owner_id,
        team=r.team,
        tag=r.tag,
        kind=KIND.parse(r.kind, "kind", v),
        relationship=RELATIONSHIP.parse(r.relationship, "relationship", v),
        updated_since=from_timestamp(r, "updated_since", "updated_since", v),
    )
    v.raise_if_any()
    return f


def erasure_to_proto(r: ErasureRecord) -> contacts_pb.ErasureRecord:
    return contacts_pb.ErasureRecord(
        contact_id=r.contact_id,
        requested_by=r.requested_by,
        reason=r.reason,
        erased_at=to_timestamp(r.erased_at),
        confirmations=[
            contacts_pb.ErasureConfirmation(
                service=c.service, confirmed_at=to_timestamp(c.confirmed_at)
            )
            for c in r.confirmations
        ],
    )
