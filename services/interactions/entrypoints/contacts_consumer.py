"""Keeps the local model of contacts from `crm.contacts.*` and cascades erasures and merges."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from crm.contacts.v1 import events_pb2 as contacts_events
from interactions.usecases import Timeline
from promesa.auth import SYSTEM
from promesa.events import IncomingEvent, UndecodableEventError

CONSUMER = "interactions-contacts"
CREATED = "crm.contacts.created"
ERASED = "crm.contacts.erased"
MERGED = "crm.contacts.merged"
SUBJECTS = (CREATED, ERASED, MERGED)

M = TypeVar("M", bound=Message)


def _decode(message_type: type[M], event: IncomingEvent, *required: str) -> M:
    """The payload, with the fields the effect needs; anything less goes to the dead letters."""
    try:
        message = message_type.FromString(event.data)
    except DecodeError as exc:
        raise UndecodableEventError(str(exc)) from exc
    missing = [name for name in required if not _field(message, name)]
    if missing or not event.event_id:
        raise UndecodableEventError(f"event id and {', '.join(required)} are required")
    return message


def _field(message: Message, dotted: str) -> object:
    value: object = message
    for name in dotted.split("."):
        value = getattr(value, name)
    return value


class ContactsHandler:
    def __init__(self, timeline: Timeline) -> None:
        self._timeline = timeline

    async def __call__(self, event: IncomingEvent) -> None:
        t = self._timeline
        if event.subject == CREATED:
            created = _decode(contacts_events.ContactCreated, event, "profile.contact_id")
            await t.contact_created(CONSUMER, event.event_id, created.profile.contact_id)
        elif event.subject == ERASED:
            erased = _decode(contacts_events.ContactErased, event, "contact_id")
            actor = erased.actor or SYSTEM.subject
            await t.contact_erased(CONSUMER, event.event_id, erased.contact_id, actor)
        elif event.subject == MERGED:
            merged = _decode(contacts_events.ContactsMerged, event, "survivor_id", "merged_id")
            if merged.merged_id == merged.survivor_id:
                raise UndecodableEventError("a contact cannot be merged into itself")
            actor = merged.actor or SYSTEM.subject
            await t.contacts_merged(
                CONSUMER, event.event_id, merged.merged_id, merged.survivor_id, actor
            )
        else:
            raise UndecodableEventError(f"no handler for subject {event.subject!r}")
