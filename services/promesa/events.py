"""The envelope of an event between services: a protobuf payload with CloudEvents NATS headers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

CONTENT_TYPE = "application/protobuf"
NATS_MSG_ID = "Nats-Msg-Id"
# The CloudEvents distributed-tracing extension's attributes, bound like the others (`ce-`).
TRACEPARENT = "ce-traceparent"
TRACESTATE = "ce-tracestate"


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
    # W3C trace context of the work that wrote the event (CloudEvents distributed-tracing
    # extension), "" when none was traced: kept in the outbox, so a late relay continues it.
    traceparent: str = ""
    tracestate: str = ""

    def headers(self) -> dict[str, str]:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": self.event_id,
            "ce-source": self.source,
            "ce-type": self.type,
            "ce-time": self.time.isoformat().replace("+00:00", "Z"),
            "ce-subject": self.ce_subject,
            "content-type": CONTENT_TYPE,
            NATS_MSG_ID: self.event_id,
        }
        if self.traceparent:
            headers[TRACEPARENT] = self.traceparent
            if self.tracestate:
                headers[TRACESTATE] = self.tracestate
        return headers

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
            "traceparent": self.traceparent or None,
            "tracestate": self.tracestate or None,
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
            traceparent=_optional(row, "traceparent"),
            tracestate=_optional(row, "tracestate"),
        )


def _optional(row: Row, key: str) -> str:
    """A column added later: NULL in SQLite, absent from an older MongoDB document."""
    try:
        return str(row[key] or "")
    except (KeyError, IndexError):
        return ""


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
