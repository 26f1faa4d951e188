"""A promise and the value objects it is made of; overdue and paused time are derived here."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

ZERO = timedelta(0)
# The ends of the calendar. A promise may be due far ahead (an interaction says so), so a time
# derived from it is held at an end rather than overflowing and breaking every later read.
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def shifted(at: datetime, by: timedelta, times: int = 1) -> datetime:
    """`at + by * times`, held at the calendar's ends instead of overflowing."""
    try:
        return at + by * times
    except OverflowError:
        return LATEST if (by > ZERO) == (times > 0) else EARLIEST


class Channel(enum.StrEnum):
    IN_PERSON = "IN_PERSON"
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    POSTAL_MAIL = "POSTAL_MAIL"
    CHAT = "CHAT"
    SOCIAL = "SOCIAL"
    WEB = "WEB"
    OTHER = "OTHER"


class PromiseKind(enum.StrEnum):
    CALL_BACK = "CALL_BACK"
    RESOLVE_COMPLAINT = "RESOLVE_COMPLAINT"
    DELIVER = "DELIVER"
    SEND_INFORMATION = "SEND_INFORMATION"
    VISIT = "VISIT"
    WIN_BACK = "WIN_BACK"
    OTHER = "OTHER"


class Priority(enum.StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"


class Status(enum.StrEnum):
    OPEN = "OPEN"
    WAITING_ON_CUSTOMER = "WAITING_ON_CUSTOMER"
    KEPT = "KEPT"
    CANCELLED = "CANCELLED"


class Action(enum.StrEnum):
    CREATED = "CREATED"
    REASSIGNED = "REASSIGNED"
    RENEGOTIATED = "RENEGOTIATED"
    PAUSED = "PAUSED"
    RESUMED = "RESUMED"
    KEPT = "KEPT"
    CANCELLED = "CANCELLED"
    CONFIRMED_BY_CUSTOMER = "CONFIRMED_BY_CUSTOMER"
    OVERDUE = "OVERDUE"
    ESCALATED = "ESCALATED"
    CONTACT_MERGED = "CONTACT_MERGED"  # moved to the contact the customer was merged into


@dataclass(frozen=True)
class Evidence:
    """How a promise was kept: the interaction that proves it, or a note (at least one)."""

    interaction_id: str = ""
    note: str = ""

    def __bool__(self) -> bool:
        return bool(self.interaction_id or self.note)


@dataclass(frozen=True)
class PromiseDraft:
    """What a caller (or an interaction) says about a new promise, before it is checked."""

    contact_id: str
    text: str
    kind: PromiseKind | None
    owner_id: str
    due_at: datetime | None
    team: str = ""
    channel: Channel | None = None
    priority: Priority | None = None
    source_interaction_id: str = ""
    follows_promise_id: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    actor: str
    occurred_at: datetime
    action: Action
    reason: str = ""
    from_value: str = ""
    to_value: str = ""


@dataclass(frozen=True)
class Promise:
    """A commitment to a contact. `due_at` already includes every finished pause; the current
    pause (since `paused_at`) is added on resume, so the owner is never late for time spent
    waiting on the customer."""

    id: str
    contact_id: str
    text: str
    kind: PromiseKind
    owner_id: str
    team: str
    created_by: str
    due_at: datetime
    created_at: datetime
    channel: Channel | None = None
    priority: Priority = Priority.NORMAL
    source_interaction_id: str = ""
    follows_promise_id: str = ""
    # The service-level policy that applied when the promise was made (its name in the policy
    # file, "default" otherwise): its reminders, warning and escalations follow it.
    service_level: str = ""
    status: Status = Status.OPEN
    cancel_reason: str = ""
    kept_at: datetime | None = None
    kept_on_time: bool = False
    evidence: Evidence = field(default_factory=Evidence)
    customer_confirmed: bool = False
    confirmed_at: datetime | None = None
    satisfaction: int = 0
    # The customer gave `satisfaction` themself, through the satisfaction request's link (else
    # staff entered it for them); their optional comment is personal data, erased with them.
    satisfaction_by_customer: bool = False
    satisfaction_comment: str = ""
    satisfaction_requested_at: datetime | None = None  # when the customer was asked how we did
    handoff_count: int = 0
    renegotiation_count: int = 0
    paused_total: timedelta = ZERO
    paused_at: datetime | None = None
    escalated_at: datetime | None = None
    erased_at: datetime | None = None
    overdue_noted_for: datetime | None = None  # the due time PromiseOverdue was published for
    history: tuple[HistoryEntry, ...] = ()
    version: int = 1
    updated_at: datetime | None = None
    updated_by: str = ""

    @property
    def etag(self) -> str:
        return str(self.version)

    @property
    def is_open(self) -> bool:
        """Open or waiting on the customer: not yet kept or cancelled."""
        return self.status in (Status.OPEN, Status.WAITING_ON_CUSTOMER)

    def current_pause(self, now: datetime) -> timedelta:
        return now - self.paused_at if self.paused_at is not None else ZERO

    def paused_duration(self, now: datetime) -> timedelta:
        """Total time spent waiting on the customer, the current pause included."""
        return self.paused_total + self.current_pause(now)

    def effective_due(self, now: datetime) -> datetime:
        """The due time with the clock stopped during the current pause."""
        return shifted(self.due_at, self.current_pause(now))

    def is_overdue(self, now: datetime) -> bool:
        return self.is_open and now > self.effective_due(now)

    @property
    def time_to_keep(self) -> timedelta | None:
        """From making to keeping, paused time excluded."""
        if self.kept_at is None:
            return None
        return self.kept_at - self.created_at - self.paused_total

    @property
    def made_for(self) -> str:
        """The contact the promise was made for, before any merge moved it to a survivor."""
        for entry in self.history:
            if entry.action is Action.CONTACT_MERGED:
                return entry.from_value
        return self.contact_id

    @property
    def last_escalated_at(self) -> datetime | None:
        for entry in reversed(self.history):
            if entry.action is Action.ESCALATED:
                return entry.occurred_at
        return None
