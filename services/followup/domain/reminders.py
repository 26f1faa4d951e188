"""Reminder policy: which reminders a promise gets, to whom and when, and how a delivery stands.

The schedule is recomputed from the promise whenever it changes, so a renegotiated, paused or
reassigned promise never keeps reminders that no longer fit it. What must go out whatever the
promise does next is not part of that schedule: it waits as QUEUED, which a replan leaves
alone. Customer notices are such deliveries (kind CUSTOMER_NOTICE, see `domain/notices.py`),
and so is the escalation of a promise handed over too often (the runaround).

Owner reminders and escalations are not sent, nor retried, for a promise no longer open
(kept, cancelled, erased): the delivery records why (`ReminderDelivery.stopped`). The one
exception is a runaround escalation that fell due: it is sent once, whatever came after.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from followup.domain.model import Channel, Promise, Status, shifted


class ReminderKind(enum.StrEnum):
    BEFORE_DUE_24H = "BEFORE_DUE_24H"
    BEFORE_DUE_1H = "BEFORE_DUE_1H"
    AT_DUE = "AT_DUE"
    ESCALATION = "ESCALATION"
    CUSTOMER_NOTICE = "CUSTOMER_NOTICE"


# The name of the attempt that records why the scheduler sent nothing (more).
SCHEDULER = "scheduler"


class Outcome(enum.StrEnum):
    PENDING = "PENDING"  # an owner reminder not sent yet: the next replan replaces it
    # Not sent yet, and no replan replaces it: a customer notice, a runaround escalation.
    QUEUED = "QUEUED"
    DELIVERED = "DELIVERED"
    FAILED = "FAILED"
    DROPPED = "DROPPED"  # deliberately not sent (no consent, contact erased, superseded, …)


class NoticeReason(enum.StrEnum):
    PROMISE_MADE = "PROMISE_MADE"
    DUE_DATE_RENEGOTIATED = "DUE_DATE_RENEGOTIATED"


class NoticeTemplate(enum.StrEnum):
    IN_HAND = "IN_HAND"
    NEW_DUE_DATE = "NEW_DUE_DATE"
    PLEASE_CONTACT_US = "PLEASE_CONTACT_US"


@dataclass(frozen=True)
class NoticeRecord:
    """What a customer notice is about and, once decided, how it went out. The message itself
    and the address are never kept."""

    reason: NoticeReason
    renegotiation: int  # the promise's renegotiation count when scheduled: later ones supersede
    channel: Channel | None = None
    template: NoticeTemplate | None = None
    due_at: datetime | None = None  # the due time announced
    quiet_hours_end_at: datetime | None = None  # held for the contact's quiet hours until then
    dropped_reason: str = ""


@dataclass(frozen=True)
class DeliveryAttempt:
    notifier: str
    attempted_at: datetime
    success: bool
    error: str = ""


@dataclass(frozen=True)
class ReminderDelivery:
    """A reminder scheduled for a promise and the record of sending it: to a user, or to the
    customer when the kind is CUSTOMER_NOTICE (then `recipient_id` is the contact id).

    `next_attempt_at` is what the scheduler's index is on: None once nothing is left to do.
    `remaining` names the notifiers that have not delivered it yet.
    """

    id: str
    promise_id: str
    contact_id: str
    kind: ReminderKind
    recipient_id: str
    owner_id: str
    scheduled_at: datetime
    next_attempt_at: datetime | None
    remaining: tuple[str, ...]
    attempts: tuple[DeliveryAttempt, ...] = ()
    outcome: Outcome = Outcome.PENDING
    rounds: int = 0  # rounds of attempts made so far
    announced: bool = False  # ReminderSent published
    notice: NoticeRecord | None = None  # set for kind CUSTOMER_NOTICE only

    def after_attempts(
        self, attempts: list[DeliveryAttempt], now: datetime, policy: ReminderPolicy
    ) -> ReminderDelivery:
        """Applies one round of attempts: failed notifiers are retried with back-off until the
        policy's last attempt; the outcome is DELIVERED once any notifier delivered it."""
        delivered = {a.notifier for a in attempts if a.success}
        remaining = tuple(n for n in self.remaining if n not in delivered)
        all_attempts = (*self.attempts, *attempts)
        rounds = self.rounds + 1
        any_success = any(a.success for a in all_attempts)
        next_at = policy.retry_at(rounds, now) if remaining else None
        waiting = Outcome.QUEUED if self.outcome is Outcome.QUEUED else Outcome.PENDING
        outcome = Outcome.DELIVERED if any_success else waiting
        if next_at is None and not any_success:
            outcome = Outcome.FAILED
        return replace(
            self,
            attempts=all_attempts,
            remaining=remaining,
            outcome=outcome,
            next_attempt_at=next_at,
            rounds=rounds,
            announced=self.announced or any_success,
        )

    def progressed(self, attempts: list[DeliveryAttempt]) -> ReminderDelivery:
        """Records attempts made ahead of the rest of a round (the NATS subject goes out while
        a slow webhook is still answering): who delivered leaves `remaining`, a success makes
        it DELIVERED and announced; the round itself, and so any retry, is counted when the
        rest of its attempts are in (`after_attempts`)."""
        delivered = {a.notifier for a in attempts if a.success}
        all_attempts = (*self.attempts, *attempts)
        any_success = any(a.success for a in all_attempts)
        return replace(
            self,
            attempts=all_attempts,
            remaining=tuple(n for n in self.remaining if n not in delivered),
            outcome=Outcome.DELIVERED if any_success else self.outcome,
            announced=self.announced or any_success,
        )

    def put_off(self, until: datetime) -> ReminderDelivery:
        """The remaining notifiers are tried at `until` instead of now (their lane is full):
        not an attempt, so it does not count against the policy's attempts."""
        return replace(self, next_attempt_at=until)

    @property
    def untouched(self) -> bool:
        """Nothing was attempted yet: its first commit carries the promise's consequences
        (overdue, escalated), and no later one may repeat them."""
        return self.rounds == 0 and not self.attempts

    def stopped(self, reason: str, now: datetime) -> ReminderDelivery:
        """Nothing (more) is sent, for `reason`, which the record keeps as an attempt of the
        scheduler's own; delivered stays delivered (by the notifiers that did), else dropped."""
        delivered = any(a.success for a in self.attempts)
        return replace(
            self,
            attempts=(*self.attempts, DeliveryAttempt(SCHEDULER, now, False, reason)),
            remaining=(),
            next_attempt_at=None,
            outcome=Outcome.DELIVERED if delivered else Outcome.DROPPED,
        )

    @property
    def sent_whatever_happens(self) -> bool:
        """A runaround escalation not sent yet: once due, it goes out even if the promise was
        paused, moved, kept or cancelled since (its retries stop like any other's)."""
        return (
            self.kind is ReminderKind.ESCALATION
            and self.outcome is Outcome.QUEUED
            and not self.attempts
        )


@dataclass(frozen=True)
class ReminderPolicy:
    """Defaults: 24 h and 1 h before due and at due to the owner; to the supervisor 4 h after
    due, then daily while overdue. Failed deliveries are retried with exponential back-off."""

    before_due: tuple[tuple[ReminderKind, timedelta], ...] = (
        (ReminderKind.BEFORE_DUE_24H, timedelta(hours=24)),
        (ReminderKind.BEFORE_DUE_1H, timedelta(hours=1)),
    )
    escalate_after: timedelta = timedelta(hours=4)
    escalate_every: timedelta = timedelta(hours=24)
    max_attempts: int = 5
    retry_base: timedelta = timedelta(seconds=30)
    notifiers: tuple[str, ...] = field(default=("nats",))

    def retry_at(self, rounds: int, now: datetime) -> datetime | None:
        """When to try again after `rounds` failed rounds: exponential back-off, None after
        the last round the policy allows."""
        if rounds >= self.max_attempts:
            return None
        return shifted(now, self.retry_base, 2 ** (rounds - 1))

    def next_escalation(self, p: Promise, after: datetime) -> datetime:
        """The first escalation slot (due + 4 h + n days) later than `after`; for a promise due
        at the calendar's end, that end (never reached)."""
        first = shifted(p.due_at, self.escalate_after)
        if after < first:
            return first
        periods = (after - first) // self.escalate_every + 1
        return shifted(first, self.escalate_every, periods)


def plan(
    p: Promise,
    now: datetime,
    policy: ReminderPolicy,
    supervisor_id: str,
    new_id: Callable[[], str],
) -> list[ReminderDelivery]:
    """The reminders still to come for a promise as it stands now. Paused, kept and cancelled
    promises have none; reminders whose moment has passed are not sent late, except the one
    at due, which also marks the promise overdue."""
    if p.status is not Status.OPEN:
        return []
    planned: list[tuple[ReminderKind, datetime, str]] = [
        (kind, at, p.owner_id)
        for kind, lead in policy.before_due
        if (at := shifted(p.due_at, -lead)) >= now
    ]
    if p.overdue_noted_for != p.due_at:
        planned.append((ReminderKind.AT_DUE, max(p.due_at, now), p.owner_id))
    if supervisor_id:
        last = p.last_escalated_at
        if last is None and now >= shifted(p.due_at, policy.escalate_after):
            at = now  # overdue long enough and never escalated: at once
        else:
            at = policy.next_escalation(p, max(last or now, now - timedelta(microseconds=1)))
        planned.append((ReminderKind.ESCALATION, at, supervisor_id))
    return [delivery(p, kind, at, recipient, policy, new_id()) for kind, at, recipient in planned]


def delivery(
    p: Promise,
    kind: ReminderKind,
    at: datetime,
    recipient_id: str,
    policy: ReminderPolicy,
    reminder_id: str,
) -> ReminderDelivery:
    return ReminderDelivery(
        id=reminder_id,
        promise_id=p.id,
        contact_id=p.contact_id,
        kind=kind,
        recipient_id=recipient_id,
        owner_id=p.owner_id,
        scheduled_at=at,
        next_attempt_at=at,
        remaining=policy.notifiers,
    )
