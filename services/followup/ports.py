"""The ports of the follow-up service: its narrow storage port (SQLite and MongoDB adapters),
its own event stream (for erasure), the owner-facing notifiers, what customer notices need (the
contacts service, a channel), and the feed of a user's reminders that StreamReminders
follows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from crm.followup.v1 import reminder_pb2
from followup.domain.contacts import ContactCard, ContactFate, ContactPreferences
from followup.domain.events import PromiseEvent
from followup.domain.model import Channel, Priority, Promise, PromiseKind, Status
from followup.domain.notices import NoticeMessage
from followup.domain.reminders import ReminderDelivery
from promesa.events import IncomingEvent
from promesa.outbox import OutboxStore
from promesa.pagination import Cursor
from promesa.storage import IdempotencyKey, InboxKey, PlatformStore


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
class OpenCount:
    """How many promises of one team and priority are open (or waiting on the customer), and
    how many of those are overdue: what the promise gauges show."""

    team: str
    priority: Priority
    open: int
    overdue: int


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
    `progressed` updates claimed reminders that stay claimed (lease and token kept): part of
    a round recorded early, so the NATS reminder is not held behind a slow webhook; refused
    like `completed` unless the token still holds.
    `profiles` replace the stored ones unless older (`ContactPreferences.supersedes`).
    `fates` are combined with what is stored (`ContactFate.combined`), never replace it.
    `live_contact` names a contact the change puts something on: the commit is refused
    (ContactGoneError) if its stored fate says it was erased or merged away meanwhile.
    """

    saves: list[tuple[Promise, int]] = field(default_factory=list)
    events: list[PromiseEvent] = field(default_factory=list)
    replans: dict[str, list[ReminderDelivery]] = field(default_factory=dict)
    completed: list[Claim] = field(default_factory=list)
    progressed: list[Claim] = field(default_factory=list)
    added: list[ReminderDelivery] = field(default_factory=list)
    profiles: list[ContactPreferences] = field(default_factory=list)
    forgotten_profiles: list[str] = field(default_factory=list)
    fates: list[ContactFate] = field(default_factory=list)
    live_contact: str = ""
    idempotency: IdempotencyKey | None = None
    handled: InboxKey | None = None


class LeaseLostError(Exception):
    """A claimed reminder was taken over (lease expired) or dropped (promise changed)."""


class ContactGoneError(Exception):
    """The contact a change puts something on was erased or merged away since its fate was
    read: nothing was written; read its fate again and decide afresh."""

    def __init__(self, contact_id: str) -> None:
        self.contact_id = contact_id
        super().__init__(contact_id)


class PromiseStore(OutboxStore, PlatformStore, Protocol):
    async def get(self, promise_id: str) -> Promise | None: ...

    async def get_many(self, promise_ids: Sequence[str]) -> list[Promise]: ...

    async def find_request(self, request_id: str) -> IdempotencyKey | None: ...

    async def list(self, f: PromiseFilter, after: Cursor | None, limit: int) -> Sequence[Promise]:
        """Matching promises ordered by (due_at, id), after the cursor (its `at` a due time)."""
        ...

    async def of_contact(self, contact_id: str) -> Sequence[Promise]:
        """Every promise to the contact, whatever its status (erased ones included)."""
        ...

    async def open_of_kind(self, contact_id: str, kind: PromiseKind) -> Sequence[Promise]:
        """The contact's promises of this kind that are open or waiting on the customer."""
        ...

    async def made_between(self, start: datetime | None, end: datetime | None) -> Sequence[Promise]:
        """Promises made at or after start and before end; None leaves that side open."""
        ...

    async def count_open(self, now: datetime) -> Sequence[OpenCount]:
        """Open promises by team and priority, counted in the store (the metrics refresher),
        overdue as PromiseFilter.overdue_at says; groups with none open are left out."""
        ...

    async def profile(self, contact_id: str) -> ContactPreferences | None:
        """The contact's preferences as the contacts stream last told them; None when
        unknown or forgotten."""
        ...

    async def fate(self, contact_id: str) -> ContactFate | None:
        """What became of the contact; None when the service never heard of it."""
        ...

    async def duplicates_of(self, contact_id: str) -> Sequence[str]:
        """The contacts merged into this one (one merge away)."""
        ...

    async def deliveries(
        self, promise_id: str, owner_id: str, before: Cursor | None, limit: int
    ) -> Sequence[ReminderDelivery]:
        """Reminder deliveries, latest scheduled first, before the cursor (its `at` a
        scheduled time); an empty id matches every promise or owner."""
        ...

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> Sequence[Claim]:
        """Atomically leases up to `limit` reminders whose next attempt is due (an expired
        lease counts as due): found through the index on the next attempt time."""
        ...

    async def next_due(self) -> datetime | None:
        """The earliest next attempt of any reminder, through the same index as `claim_due`
        (a lease's end counts: a claim that lapses falls due then); None when nothing is
        planned. The scheduler sleeps until then."""
        ...

    async def renew_claims(self, claims: Sequence[Claim], until: datetime) -> set[str]:
        """Extends the lease of these claims to `until` where their token still holds (no
        other replica took them over); returns the ids still held, renewed. A claim not
        returned is lost: completing it raises LeaseLostError."""
        ...

    async def commit(self, change: Change) -> None:
        """Atomically: saves, reminders, profiles, fates, outbox, idempotency key, inbox row.

        Raises VersionConflictError, LeaseLostError, ContactGoneError, DuplicateRequestError
        or AlreadyHandledError (promesa.storage) and writes nothing.
        """
        ...

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None: ...

    async def forget_dead_letters(self, contact_id: str) -> None:
        """Deletes the dead letters whose subject ends with this contact (an erasure)."""
        ...

    async def scrub(self) -> None:
        """Right after an erasure commits: no earlier version of what it removed is left in
        the store's files (SQLite: a WAL checkpoint; MongoDB: nothing, see the README)."""
        ...

    async def close(self) -> None: ...


class EventStreams(Protocol):
    """The service's own event stream, as an erasure needs it."""

    async def erase(self, contact_id: str) -> None:
        """Publishes what is committed, then removes every message about the contact from
        the stream. Idempotent."""
        ...


class Notifier(Protocol):
    """Delivers an owner-facing reminder outside the service (webhook, email); raises when it
    could not. The NATS subject is not one of these: it is committed with the delivery. The
    scheduler drives each notifier in a lane of its own (`followup.lanes`): bounded
    concurrency, a deadline on each send (its own retries included), a circuit breaker."""

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


@dataclass(frozen=True)
class FedReminder:
    """A reminder as the feed hands it out, with its position in the feed: a subscription that
    starts after that position resumes just after this reminder."""

    reminder: reminder_pb2.Reminder
    position: int


class ReminderSubscription(Protocol):
    """Reminders to one user, each once, in the order they were sent; iterate, then close."""

    @property
    def started_after(self) -> int:
        """The position it starts after: a subscription after it misses nothing this one
        would have sent, even if this one sent nothing yet."""
        ...

    def __aiter__(self) -> AsyncIterator[FedReminder]: ...

    async def close(self) -> None: ...


class ReminderFeed(Protocol):
    """Reminders addressed to one user, as they are sent: from the moment of subscribing, or
    from just after `after` (a position the feed gave; one older than the feed keeps starts at
    the oldest it kept)."""

    async def subscribe(self, user_id: str, after: int | None = None) -> ReminderSubscription: ...
