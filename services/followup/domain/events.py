"""What happened to promises and reminders, as facts in the past tense."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from followup.domain.model import Promise
from followup.domain.reminders import ReminderDelivery

# The actor of what the service's own policy does, not a caller: a promise noted overdue,
# escalated, reminded, cancelled because its contact was erased. The event contract spells it
# "system"; a background worker's identity (`current_identity()`) is recorded instead wherever
# one acts on behalf of an event.
POLICY_ACTOR = "system"


@dataclass(frozen=True)
class PromiseMade:
    promise: Promise
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class PromiseReassigned:
    promise: Promise
    previous_owner_id: str
    previous_team: str
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class PromiseRenegotiated:
    promise: Promise
    previous_due_at: datetime
    customer_agreed: bool
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class PromiseKept:
    promise: Promise
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class PromiseCancelled:
    promise: Promise
    actor: str
    occurred_at: datetime


@dataclass(frozen=True)
class PromiseOverdue:
    promise: Promise
    occurred_at: datetime


@dataclass(frozen=True)
class PromiseEscalated:
    promise: Promise
    escalated_to_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class ReminderDue:
    """The reminder itself, for the recipient's NATS subject (the notifier that never fails:
    it is committed with the delivery record and published by the outbox relay)."""

    delivery: ReminderDelivery
    promise: Promise
    discreet: bool
    occurred_at: datetime


@dataclass(frozen=True)
class ReminderSent:
    delivery: ReminderDelivery
    notifiers: tuple[str, ...]
    occurred_at: datetime


@dataclass(frozen=True)
class CustomerNoticeSent:
    """A customer was told about a promise; the notice's record names the channel and template."""

    notice: ReminderDelivery
    contact_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class CustomerSatisfactionGiven:
    """The customer rated their kept promise through the request's link (never the comment)."""

    promise: Promise
    score: int
    actor: str  # customer:<contact id>
    occurred_at: datetime


@dataclass(frozen=True)
class ContactErasureConfirmed:
    """The service holds nothing more about an erased contact: its promises' texts are gone,
    the database is scrubbed and its messages are purged from the service's stream (the
    evidence the contacts service keeps in the erasure record)."""

    contact_id: str
    occurred_at: datetime


PromiseEvent = (
    PromiseMade
    | PromiseReassigned
    | PromiseRenegotiated
    | PromiseKept
    | PromiseCancelled
    | PromiseOverdue
    | PromiseEscalated
    | ReminderDue
    | ReminderSent
    | CustomerNoticeSent
    | CustomerSatisfactionGiven
    | ContactErasureConfirmed
)
