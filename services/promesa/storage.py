"""Port-level facts every service's storage adapter reports the same way, whatever the backend."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from promesa.events import IncomingEvent, Row


@dataclass(frozen=True)
class IdempotencyKey:
    """A create's request id, what it was for, and the resource it produced."""

    request_id: str
    operation: str
    fingerprint: str
    resource_id: str


@dataclass(frozen=True)
class InboxKey:
    """The inbox row of an event a consumer handled: written with the effect, so a redelivered
    event is recognised and changes nothing."""

    consumer: str
    event_id: str


class VersionConflictError(Exception):
    """The resource changed since it was read (or, for a new one, its id exists already)."""

    def __init__(self, resource_id: str) -> None:
        self.resource_id = resource_id
        super().__init__(resource_id)


class DuplicateRequestError(Exception):
    """The request id was committed before (a concurrent retry won the race)."""


class AlreadyHandledError(Exception):
    """The inbox already holds this event id: the effect was applied before."""


@dataclass(frozen=True)
class DeadLetter:
    """An event a consumer gave up on, kept whole so that it can be read and re-driven after a
    fix; `replayed_at` says when it was first sent back (None: never)."""

    id: str  # str(rowid) in SQLite, str(ObjectId) in MongoDB
    consumer: str
    event: IncomingEvent  # as it was delivered, `delivery` the attempts it took
    error: str
    recorded_at: datetime
    replayed_at: datetime | None

    @classmethod
    def from_row(cls, letter_id: str, row: Row) -> DeadLetter:
        """The letter again, from what either backend stored under the same names."""
        replayed = row["replayed_at"]
        return cls(
            id=letter_id,
            consumer=row["consumer"],
            event=IncomingEvent(
                event_id=row["event_id"],
                type=row["type"],
                subject=row["subject"],
                source=row["source"],
                ce_subject=row["ce_subject"],
                time=row["time"],
                data=bytes(row["data"]),
                delivery=row["deliveries"],
            ),
            error=row["error"],
            recorded_at=datetime.fromisoformat(row["recorded_at"]),
            replayed_at=datetime.fromisoformat(replayed) if replayed else None,
        )


class DeadLetterStore(Protocol):
    """The dead-letter methods every service's store inherits from its backend's base."""

    async def list_dead_letters(
        self, consumer: str | None, after_id: str | None, limit: int
    ) -> Sequence[DeadLetter]:
        """Oldest first, after `after_id` (exclusive), at most `limit`."""
        ...

    async def dead_letter(self, letter_id: str) -> DeadLetter | None:
        """None for an unknown id, and for one that is not even an id of this backend."""
        ...

    async def mark_dead_letter_replayed(self, letter_id: str, at: datetime) -> None:
        """Idempotent: the first replay's instant stays."""
        ...


class PlatformStore(DeadLetterStore, Protocol):
    """What the runtime itself asks of every service's store (the store bases provide it, and
    each service's store port extends it): dead letters to show and replay, and inbox rows to
    prune."""

    async def prune_inbox(self, before: datetime, limit: int) -> int:
        """Deletes up to `limit` inbox rows handled before `before`; returns how many."""
        ...
