"""Keeps the local read model of contact preferences, and reacts to what happens to contacts:
a win-back promise for an inactive customer, erasure and merging carried into promises."""

from __future__ import annotations

from google.protobuf.message import DecodeError, Message

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from followup.domain.contacts import ContactPreferences, QuietHours
from followup.domain.model import Channel
from followup.usecases import PromiseLedger
from promesa.errors import Violations
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import enum_from_proto

CONSUMER = "followup-contacts"
SUBJECTS = (
    "crm.contacts.created",
    "crm.contacts.updated",
    "crm.contacts.became_inactive",
    "crm.contacts.erased",
    "crm.contacts.merged",
)
CHANNEL = ("CHANNEL", contact_pb2.Channel)


def preferences_from(p: contacts_events.ContactProfile) -> ContactPreferences:
    v = Violations()  # channels newer than this code are left out, not fatal
    consents = []
    for i, c in enumerate(p.consents):
        channel = enum_from_proto(c.channel, *CHANNEL, Channel, f"consents[{i}]", v)
        if channel is not None:
            consents.append((channel, c.granted))
    return ContactPreferences(
        contact_id=p.contact_id,
        owner_id=p.owner_id,
        team=p.team,
        time_zone=p.time_zone,
        preferred_channel=enum_from_proto(
            p.preferred_channel, *CHANNEL, Channel, "preferred_channel", v
        ),
        consents=tuple(consents),
        quiet_hours=QuietHours(p.quiet_hours.start_minute, p.quiet_hours.end_minute)
        if p.HasField("quiet_hours")
        else None,
        discreet=p.discreet,
    )


def _decode(event: IncomingEvent, message: Message) -> None:
    try:
        message.ParseFromString(event.data)
    except DecodeError as exc:
        raise UndecodableEventError(str(exc)) from exc


def _require(*ids: str) -> None:
    if not all(ids):
        raise UndecodableEventError("the contact ids of the event are required")


class ContactsHandler:
    def __init__(self, ledger: PromiseLedger) -> None:
        self._ledger = ledger

    async def __call__(self, event: IncomingEvent) -> None:
        if not event.event_id:
            raise UndecodableEventError("the event has no id")
        ledger, eid = self._ledger, event.event_id
        match event.subject:
            case "crm.contacts.created" | "crm.contacts.updated":
                changed: contacts_events.ContactCreated | contacts_events.ContactUpdated = (
                    contacts_events.ContactCreated()
                    if event.subject.endswith("created")
                    else contacts_events.ContactUpdated()
                )
                _decode(event, changed)
                if not changed.profile.contact_id:
                    raise UndecodableEventError("profile.contact_id is required")
                await ledger.remember_profile(CONSUMER, eid, preferences_from(changed.profile))
            case "crm.contacts.became_inactive":
                inactive = contacts_events.ContactBecameInactive()
                _decode(event, inactive)
                _require(inactive.contact_id)
                await ledger.win_back(
                    CONSUMER, eid, inactive.contact_id, inactive.owner_id, inactive.team
                )
            case "crm.contacts.erased":
                erased = contacts_events.ContactErased()
                _decode(event, erased)
                _require(erased.contact_id)
                await ledger.erase_contact(CONSUMER, eid, erased.contact_id)
            case "crm.contacts.merged":
                merged = contacts_events.ContactsMerged()
                _decode(event, merged)
                _require(merged.survivor_id, merged.merged_id)
                await ledger.merge_contacts(CONSUMER, eid, merged.survivor_id, merged.merged_id)
            case _:
                raise UndecodableEventError(f"no handler for {event.subject}")
