"""The narrow storage port of the contacts service; SQLite and MongoDB adapters implement it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact, ContactKind, Lifecycle, Relationship
from promesa.events import IncomingEvent
from promesa.outbox import OutboxStore
from promesa.pagination import Cursor
from promesa.storage import IdempotencyKey, InboxKey


@dataclass(frozen=True)
class ContactFilter:
    """Filters of ListContacts, normalised (a tag in lower case); None or empty matches
    everything. Erased and merged-away contacts never match."""

    status: Lifecycle | None = None
    owner_id: str = ""
    team: str = ""
    tag: str = ""
    kind: ContactKind | None = None
    relationship: Relationship | None = None
    updated_since: datetime | None = None


@dataclass(frozen=True)
class ContactSearch:
    """Criteria of SearchContacts, normalised (a lower-case name prefix, an email in lower
    case, a phone in E.164); every given one must match."""

    name_prefix: str = ""
    email: str = ""
    phone: str = ""


@dataclass
class Change:
    """Everything one use case writes, committed atomically with its events.

    `saves` pairs each contact with the version it replaces (0 for a new contact), so a
    concurrent writer is detected. `handled` is the inbox row of the event that caused it.
    """

    saves: list[tuple[Contact, int]] = field(default_factory=list)
    events: list[ContactEvent] = field(default_factory=list)
    idempotency: IdempotencyKey | None = None
    handled: InboxKey | None = None


class EmailTakenError(Exception):
    """Another live contact holds this email."""

    def __init__(self, email: str, holder_id: str) -> None:
        self.email = email
        self.holder_id = holder_id
        super().__init__(email)


class ContactStore(OutboxStore, Protocol):
    async def get(self, contact_id: str) -> Contact | None: ...

    async def holder_of_email(self, email: str) -> str | None:
        """Id of the live contact holding this (normalised) email."""
        ...

    async def find_request(self, request_id: str) -> IdempotencyKey | None: ...

    async def list(self, f: ContactFilter, after: Cursor | None, limit: int) -> Sequence[Contact]:
        """Live contacts matching f, ordered by (created_at, id), after the cursor."""
        ...

    async def search(self, q: ContactSearch, after: Cursor | None, limit: int) -> Sequence[Contact]:
        """Live contacts matching every given criterion, ordered by id, after the cursor's id."""
        ...

    async def lapsed(self, purchased_before: datetime, limit: int) -> Sequence[Contact]:
        """Active live contacts whose last purchase is older than the cutoff (indexed)."""
        ...

    async def commit(self, change: Change) -> None:
        """Atomically: saves, email index, events to the outbox, idempotency key, inbox row.

        Raises VersionConflictError, EmailTakenError, DuplicateRequestError or
        AlreadyHandledError (promesa.storage) and writes nothing.
        """
        ...

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None: ...

    async def dead_letters(self) -> Sequence[dict[str, object]]:
        """Events given up on, oldest first, for an operator to inspect and replay."""
        ...

    async def close(self) -> None: ...
