"""The ports of the interactions service: the narrow storage port each storage adapter
implements, and the service's own event stream as erasure sees it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from interactions.domain.events import InteractionEvent
from interactions.domain.model import Channel, Interaction, InteractionType, KnownContact
from promesa.events import IncomingEvent
from promesa.outbox import OutboxStore
from promesa.pagination import Cursor
from promesa.storage import (
    AlreadyHandledError,
    DuplicateRequestError,
    IdempotencyKey,
    InboxKey,
    PlatformStore,
    VersionConflictError,
)


@dataclass(frozen=True)
class TimelineFilter:
    """One contact's timeline, narrowed; occurred_after is inclusive, occurred_before not."""

    contact_id: str
    type: InteractionType | None = None
    channel: Channel | None = None
    agent_id: str = ""
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None


@dataclass(frozen=True)
class Scope:
    """The touches one caller may see on a timeline: those of `team`, unassigned ones (no
    team), and those `agent_id` handled. No scope (None) means every touch."""

    team: str
    agent_id: str


@dataclass
class Change:
    """Everything one use case writes, committed atomically with its events.

    `saves` pairs each interaction with the version it replaces (0 for a new one), so a
    concurrent writer is detected. `contacts` are rows of the contacts read model to upsert.
    `live_contact`, when set, makes the commit fail with ContactGoneError unless that contact is
    still known, not erased and not merged: an erasure or merge landing between the read and
    the write must not leave a new touch behind it. `handled` is the inbox row of the event
    that caused the change.
    """

    saves: list[tuple[Interaction, int]] = field(default_factory=list)
    contacts: list[KnownContact] = field(default_factory=list)
    events: list[InteractionEvent] = field(default_factory=list)
    idempotency: IdempotencyKey | None = None
    handled: InboxKey | None = None
    live_contact: str = ""


class ContactGoneError(Exception):
    """The contact was erased or merged away after the use case looked it up."""


class InteractionStore(OutboxStore, PlatformStore, Protocol):
    async def get(self, interaction_id: str) -> Interaction | None: ...

    async def find_request(self, request_id: str) -> IdempotencyKey | None: ...

    async def timeline(
        self, f: TimelineFilter, after: Cursor | None, limit: int, scope: Scope | None = None
    ) -> Sequence[Interaction]:
        """A contact's interactions matching f and within the scope, newest first: ordered by
        (occurred_at, id) descending, strictly after the cursor (which has an instant)."""
        ...

    async def of_contact(
        self, contact_id: str, limit: int, *, unerased_only: bool = False
    ) -> Sequence[Interaction]:
        """Some interactions of a contact, in no particular order: cascades work in batches."""
        ...

    async def contact(self, contact_id: str) -> KnownContact | None:
        """The read model of contacts, as the contacts stream described them."""
        ...

    async def merged_into(self, contact_id: str) -> Sequence[str]:
        """The ids of the contacts merged directly into this one."""
        ...

    async def commit(self, change: Change) -> None:
        """Atomically: inbox row, idempotency key, saves, read-model rows, events to the outbox.

        Raises VersionConflictError, DuplicateRequestError, AlreadyHandledError or
        ContactGoneError and writes nothing.
        """
        ...

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None: ...

    async def dead_letters(self) -> Sequence[dict[str, object]]:
        """What consumers gave up on, oldest first, for operators."""
        ...

    async def forget_dead_letters(self, contact_id: str) -> None:
        """Deletes the dead letters whose subject ends with this contact (an erasure)."""
        ...

    async def scrub(self) -> None:
        """After an erasure commits: no earlier version of the erased data stays on disk
        (SQLite: a WAL checkpoint; its deletes are secure already)."""
        ...

    async def close(self) -> None: ...


class EventStreams(Protocol):
    """The service's own event stream, as an erasure reaches it."""

    async def erase(self, contact_id: str) -> None:
        """Publishes what the outbox still holds, then removes every message about the
        contact from the stream. Idempotent."""
        ...


__all__ = [
    "AlreadyHandledError",
    "Change",
    "ContactGoneError",
    "DuplicateRequestError",
    "EventStreams",
    "IdempotencyKey",
    "InboxKey",
    "InteractionStore",
    "Scope",
    "TimelineFilter",
    "VersionConflictError",
]
