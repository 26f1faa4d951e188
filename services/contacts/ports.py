"""The narrow storage port of the contacts service; SQLite and MongoDB adapters implement it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from contacts.domain.erasure import ErasureConfirmation, ErasureRecord
from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact, ContactKind, Lifecycle, Relationship
from promesa.events import IncomingEvent
from promesa.outbox import OutboxStore
from promesa.pagination import Cursor
from promesa.storage import IdempotencyKey, InboxKey, PlatformStore


@dataclass(frozen=True)
class ContactFilter:
    """Filters of ListContacts, normalised (a tag in lower case); None or empty matches
    everything. Erased and merged-away contacts never match. `teams` is the reader's scope
    (authorization.visible_teams): only contacts of these teams ("" for unassigned ones)."""

    status: Lifecycle | None = None
    owner_id: str = ""
    team: str = ""
    tag: str = ""
    kind: ContactKind | None = None
    relationship: Relationship | None = None
    updated_since: datetime | None = None
    teams: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ContactSearch:
    """Criteria of SearchContacts, normalised (a lower-case name prefix, an email in lower
    case, a phone in E.164); every given one must match."""

    name_prefix: str = ""
    email: str = ""
    phone: str = ""
    teams: tuple[str, ...] | None = None  # the reader's scope, as in ContactFilter


@dataclass
class Change:
    """Everything one use case writes, committed atomically with its events.

    `saves` pairs each contact with the version it replaces (0 for a new contact), so a
    concurrent writer is detected. `erasure` is the record of an erasure, written with its
    tombstone; `confirmations` are added to erasure records, each service's first one kept
    (a redelivered confirmation changes nothing). `handled` is the inbox row of the event
    that caused it.
    """

    saves: list[tuple[Contact, int]] = field(default_factory=list)
    events: list[ContactEvent] = field(default_factory=list)
    erasure: ErasureRecord | None = None
    confirmations: list[ErasureConfirmation] = field(default_factory=list)
    idempotency: IdempotencyKey | None = None
    handled: InboxKey | None = None


class EmailTakenError(Exception):
    """Another live contact holds this email."""

    def __init__(self, email: str, holder_id: str) -> None:
        self.email = email
        self.holder_id = holder_id
        super().__init__(email)


class ContactStore(OutboxStore, PlatformStore, Protocol):
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

    async def erasure(self, contact_id: str) -> ErasureRecord | None:
        """The record of this contact's erasure, with the confirmations received so far."""
        ...

    async def erasures(self, after: Cursor | None, limit: int) -> Sequence[ErasureRecord]:
        """Erasure records, newest first: ordered by (erased_at, contact_id) descending,
        before the cursor."""
        ...

    async def commit(self, change: Change) -> None:
        """Atomically: saves, email index, erasure record and confirmations, events to the
        outbox, idempotency key, inbox row.

        Raises VersionConflictError (also for a second erasure record of one contact),
        EmailTakenError, DuplicateRequestError or AlreadyHandledError (promesa.storage) and
        writes nothing.
        """
        ...

    async def forget_dead_letters(self, contact_id: str) -> None:
        """Deletes the dead letters whose subject ends with this contact (an erasure)."""
        ...

    async def scrub(self) -> None:
        """Called right after an erasure commits: no copy of the erased data may linger in
        the database's files (SQLite: checkpoint and truncate the WAL)."""
        ...

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None: ...

    async def dead_letters(self) -> Sequence[dict[str, object]]:
        """Events given up on, oldest first, for an operator to inspect and replay."""
        ...

    async def close(self) -> None: ...
