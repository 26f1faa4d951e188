"""Wraps a protobuf event payload into the outbox envelope, the same way for every producer."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.message import Message

from promesa.events import OutgoingEvent
from promesa.ids import new_id


def outgoing(
    message: Message,
    *,
    subject: str,
    source: str,
    about: str,
    at: datetime,
    event_id: str | None = None,
) -> OutgoingEvent:
    """`about` is the resource id (CloudEvents subject); `event_id` defaults to a new UUID."""
    return OutgoingEvent(
        event_id=event_id or new_id(),
        subject=subject,
        type=message.DESCRIPTOR.full_name,
        source=source,
        time=at,
        ce_subject=about,
        data=message.SerializeToString(),
    )
