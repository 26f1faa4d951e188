"""Keeps last touch and last purchase current from `crm.interactions.recorded` events."""

from __future__ import annotations

from google.protobuf.message import DecodeError

from contacts.usecases import ContactBook
from crm.interactions.v1 import events_pb2 as interactions_events
from crm.interactions.v1 import interaction_pb2
from promesa.events import IncomingEvent, UndecodableEventError
from promesa.protos import from_timestamp

CONSUMER = "contacts-interactions"
SUBJECTS = ("crm.interactions.recorded",)
PURCHASE = interaction_pb2.InteractionType.Value("INTERACTION_TYPE_PURCHASE")


class InteractionsHandler:
    def __init__(self, book: ContactBook) -> None:
        self._book = book

    async def __call__(self, event: IncomingEvent) -> None:
        try:
            recorded = interactions_events.InteractionRecorded.FromString(event.data)
        except DecodeError as exc:
            raise UndecodableEventError(str(exc)) from exc
        occurred_at = from_timestamp(recorded, "occurred_at")
        if not event.event_id or not recorded.contact_id or occurred_at is None:
            raise UndecodableEventError("event id, contact_id and occurred_at are required")
        await self._book.record_touch(
            CONSUMER,
            event.event_id,
            recorded.contact_id,
            occurred_at,
            is_purchase=recorded.type == PURCHASE,
        )
