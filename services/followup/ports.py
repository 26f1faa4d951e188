"""The ports of the follow-up service: its narrow storage port (SQLite and MongoDB adapters),
the owner-facing notifiers, and what customer notices need (the contacts service, a channel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from followup.domain.contacts import ContactCard, ContactPreferences
from followup.domain.events import PromiseEvent
from followup.domain.model import Channel, Promise, PromiseKind, Status
from followup.domain.notices import NoticeMessage
from followup.domain.reminders import ReminderDelivery
from promesa.events import IncomingEvent
from promesa.outbox import OutboxStore
from promesa.storage import IdempotencyKey


@dataclass(frozen=True)
class PromiseFilter:
    """Filters of ListPromises; empty or None matches everything."""

    owner_id: str = ""
    team: str = ""
    contact_id: str = ""
    status: Status | None = None
    due_after: datetime | None = None
    due_before: datetime | None = None
    overdue_at: datetime | None = None  # only promises overdue at this instant


@dataclass(frozen=True)
class Claim:
    """A reminder this replica holds until `lease_until`; only the holder of `token` may
    complete it, so a replica whose lease expired cannot record a second delivery."""

    delivery: ReminderDelivery
    token: str


@dataclass
class Change:
    """Everything one use case writes, committed atomically with its events.

    `saves` pairs each promise with the version it replaces (0 for a new promise).
    `replans` replaces the PENDING reminders of a promise with a new schedule; customer
    notices wait as QUEUED and are not part of it, so a replan leaves them alone.
    `added` inserts deliveries besides (an escalation's next round, a customer notice).
    `completed` updates claimed reminders, refused unless their claim token still holds.
    """

    saves: list[tuple[Promise, int]] = field(default_factory=list)
    events: list[PromiseEvent] = field(default_factory=list)
    replans: dict[str, list[ReminderDelivery]] = field(default_factory=dict)
    completed: list[Claim] = field(default_factory=list)
    added: list[ReminderDelivery] = field(default_factory=list)
    profiles: list[ContactPreferences] = field(default_factory=list)
    forgotten_profiles: list[str] = field(default_factory=list)
    idempotency: IdempotencyKey | None = None
    handled: tuple[str, str] | None = None  # (consumer, event id)


class LeaseLostError(Exception):
    """A claimed reminder was taken over (lease expired) or dropped (promise changed)."""


class PromiseStore(OutboxStore, Protocol):
    async def get(self, promise_id: str) -> Promise | None: ...

    async def get_many(self, promise_ids: Sequence[str]) -> list[Promise]: ...

    async def find_request(self, request_id: str) -> IdempotencyKey | None: ...

    async def list(
        self, f: PromiseFilter, after: tuple[datetime, str] | None, limit: int
    ) -> Sequence[Promise]:
        """Matching promises ordered by (due_at, id), after the cursor."""
        ...

    async def of_contact(self, contact_id: str) -> Sequence[Promise]: ...

    async def open_of_kind(self, contact_id: str, kind: PromiseKind) -> Sequence[Promise]: ...

    async def made_between(self, start: datetime | None, end: datetime | None) -> Sequence[Promise]:
        """Promises made at or after start and before end; None leaves that side open."""
        ...

    async def profile(self, contact_id: str) -> ContactPreferences | None: ...

    async def deliveries(
        self, promise_id: str, owner_id: str, before: tuple[datetime, str] | None, limit: int
    ) -> Sequence[ReminderDelivery]:
        """Reminder deliveries, latest scheduled first, before the cursor."""
        ...

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> Sequence[Claim]:
        """Atomically leases up to `limit` reminders whose next attempt is due (an expired
        lease counts as due): found through the index on the next attempt time."""
        ...

    async def commit(self, change: Change) -> None:
        """Atomically: saves, reminders, profiles, outbox, idempotency key, inbox row.

        Raises VersionConflictError, LeaseLostError, DuplicateRequestError or
        AlreadyHandledError (promesa.storage) and writes nothing.
        """
        ...

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None: ...

    async def close(self) -> None: ...


class Notifier(Protocol):
    """Delivers an owner-facing reminder outside the service (webhook, email); raises when it
    could not. The NATS subject is not one of these: it is committed with the delivery."""

    name: str

    async def send(self, delivery: ReminderDelivery, promise: Promise, discreet: bool) -> None: ...


class ContactsUnavailableError(Exception):
    """The contacts service could not answer (down, overloaded, refused our token): retry later."""


class ContactDirectory(Protocol):
    """The contacts service, asked at the moment a notice is sent: events carry no addresses."""

    async def card(self, contact_id: str) -> ContactCard | None:
        """The contact (followed to the survivor of a merge), a card with `erased` set for an
        erased one, or None when there is no such contact. Raises ContactsUnavailableError."""
        ...


class NoticeChannel(Protocol):
    """Delivers a customer notice on one channel (email); raises when it could not, with a
    message that names no address (it is recorded with the attempt). Separate from `Notifier`:
    owner reminders and customer notices share no template and no channel."""

    name: str
    channel: Channel

    async def send(self, notice_id: str, message: NoticeMessage, address: str) -> None: ...
