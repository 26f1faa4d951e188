"""The envelope of an event between services: a protobuf payload with CloudEvents NATS headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

CONTENT_TYPE = "application/protobuf"
NATS_MSG_ID = "Nats-Msg-Id"


@dataclass(frozen=True)
class OutgoingEvent:
    """An event as the outbox stores it: everything the relay needs to publish it again."""

    event_id: str
    subject: str  # NATS subject, e.g. crm.contacts.created
    type: str  # CloudEvents type: the full proto message name
    source: str  # CloudEvents source: the producing service
    time: datetime
    ce_subject: str  # the resource the event is about (a contact id, a promise id)
    data: bytes

    def headers(self) -> dict[str, str]:
        return {
            "ce-specversion": "1.0",
            "ce-id": self.event_id,
            "ce-source": self.source,
            "ce-type": self.type,
            "ce-time": self.time.isoformat().replace("+00:00", "Z"),
            "ce-subject": self.ce_subject,
            "content-type": CONTENT_TYPE,
            NATS_MSG_ID: self.event_id,
        }

    def row(self) -> dict[str, Any]:
        """The outbox row (SQLite) or document (MongoDB) that keeps this event until sent."""
        return {
            "event_id": self.event_id,
            "subject": self.subject,
            "type": self.type,
            "source": self.source,
            "time": self.time.isoformat(),
            "ce_subject": self.ce_subject,
            "data": self.data,
        }

    @classmethod
    def from_row(cls, row: Row) -> OutgoingEvent:
        """The event again, from what `row()` stored, whatever the backend."""
        return cls(
            event_id=row["event_id"],
            subject=row["subject"],
            type=row["type"],
            source=row["source"],
            time=datetime.fromisoformat(row["time"]),
            ce_subject=row["ce_subject"],
            data=bytes(row["data"]),
        )


class Row(Protocol):
    """A stored row read by column name: sqlite3.Row or a MongoDB document."""

    def __getitem__(self, key: str) -> Any: ...


@dataclass(frozen=True)
class IncomingEvent:
    """An event as a consumer receives it; `delivery` counts from 1."""

    event_id: str
    type: str
    subject: str
    source: str
    ce_subject: str
    time: str
    data: bytes
    delivery: int

    @classmethod
    def from_message(
        cls, subject: str, headers: Mapping[str, str] | None, data: bytes, delivery: int
    ) -> IncomingEvent:
        h = headers or {}
        return cls(
            event_id=h.get("ce-id") or h.get(NATS_MSG_ID, ""),
            type=h.get("ce-type", ""),
            subject=subject,
            source=h.get("ce-source", ""),
            ce_subject=h.get("ce-subject", ""),
            time=h.get("ce-time", ""),
            data=data,
            delivery=delivery,
        )


class PermanentEventError(Exception):
    """A handler's way to say that this event can never succeed, whatever the retries (a rule
    it breaks, a fact it contradicts): it goes to the dead letters at its first delivery."""


class UndecodableEventError(PermanentEventError):
    """The payload cannot be read: retrying will not help, so it goes to the dead letters."""
