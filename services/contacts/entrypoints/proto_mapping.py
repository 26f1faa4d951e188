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
from promesa.protos import EnumMap, from_timestamp, set_timestamp, to_timestamp

KIND = EnumMap(contact_pb2.ContactKind, "CONTACT_KIND", ContactKind)
CHANNEL = EnumMap(contact_pb2.Channel, "CHANNEL", Channel)
RELATIONSHIP = EnumMap(contact_pb2.Relationship, "RELATIONSHIP", Relationship)
STATUS = EnumMap(contact_pb2.LifecycleStatus, "LIFECYCLE_STATUS", Lifecycle)


def contact_to_proto(c: Contact, into: contact_pb2.Contact | None = None) -> contact_pb2.Contact:
    """The contact as callers see it, written into `into` (an empty message, such as a
    response's `contact`, which spares building one and copying it) or a new message.
    Fields are set one by one and empty ones left alone: proto3 does not send them anyway,
    and a constructor call with every field costs twice as much."""
    m = contact_pb2.Contact() if into is None else into
    d = c.details
    m.id = c.id
    m.kind = KIND.to_proto(d.kind)
    m.display_name = d.display_name
    if d.preferred_name:
        m.preferred_name = d.preferred_name
    if d.emails:
        m.emails.extend(d.emails)
    if d.phones:
        m.phones.extend(d.phones)
    a = d.postal_address
    if not a.is_empty():
        m.postal_address.CopyFrom(
            contact_pb2.PostalAddress(
                lines=a.lines,
                locality=a.locality,
                region=a.region,
                postal_code=a.postal_code,
                country_code=a.country_code,
            )
        )
    if d.organisation_id:
        m.organisation_id = d.organisation_id
    if d.owner_id:
        m.owner_id = d.owner_id
    if d.team:
        m.team = d.team
    if d.tags:
        m.tags.extend(d.tags)
    if d.time_zone:
        m.time_zone = d.time_zone
    if d.preferred_channel is not None:
        m.preferred_channel = CHANNEL.to_proto(d.preferred_channel)
    if d.consents:
        m.consents.extend(consents_to_proto(d))
    if d.quiet_hours is not None:
        m.quiet_hours.start_minute = d.quiet_hours.start_minute
        m.quiet_hours.end_minute = d.quiet_hours.end_minute
    if d.discreet:
        m.discreet = True
    if d.referred_by_id:
        m.referred_by_id = d.referred_by_id
    m.relationship = RELATIONSHIP.to_proto(d.relationship)
    m.status = STATUS.to_proto(c.status)
    set_timestamp(m.created_at, c.created_at)
    set_timestamp(m.updated_at, c.updated_at)
    if c.last_purchase_at is not None:
        set_timestamp(m.last_purchase_at, c.last_purchase_at)
    if c.last_interaction_at is not None:
        set_timestamp(m.last_interaction_at, c.last_interaction_at)
    m.etag = c.etag
    m.created_by = c.created_by
    m.updated_by = c.updated_by
    if c.merged_into_id:
        m.merged_into_id = c.merged_into_id
    if c.erased_at is not None:
        set_timestamp(m.erased_at, c.erased_at)
    return m


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
    kind = KIND.parse(p.kind, f"{prefix}.kind", v)
    details = ContactDetails(
        kind=kind or ContactKind.PERSON,
        display_name=p.display_name,
        preferred_name=p.preferred_name,
        emails=tuple(p.emails),
        phones=tuple(p.phones),
        postal_address=_address_from_proto(p.postal_address)
        if p.HasField("postal_address")
        else NO_ADDRESS,
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


NO_ADDRESS = PostalAddress()  # frozen: one instance serves every contact sent without one


def _address_from_proto(a: contact_pb2.PostalAddress) -> PostalAddress:
    return PostalAddress(
        lines=tuple(a.lines),
        locality=a.locality,
        region=a.region,
        postal_code=a.postal_code,
        country_code=a.country_code,
    )


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
