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

from followup.domain.calendars import ALWAYS_OPEN, BusinessCalendar
from followup.domain.model import (
    LATEST,
    Action,
    Channel,
    Priority,
    Promise,
    PromiseKind,
    Status,
    shifted,
)
from followup.domain.service_levels import (
    SUPERVISOR,
    EscalationStep,
    Relationship,
    ServiceLevel,
    ServiceLevels,
)


class ReminderKind(enum.StrEnum):
    BEFORE_DUE_24H = "BEFORE_DUE_24H"
    BEFORE_DUE_1H = "BEFORE_DUE_1H"
    AT_DUE = "AT_DUE"
    ESCALATION = "ESCALATION"
    CUSTOMER_NOTICE = "CUSTOMER_NOTICE"
    WARNING = "WARNING"  # to the owner, at the policy's share of the time to keep
    BEFORE_DUE = "BEFORE_DUE"  # to the owner, `lead` before due (leads other than 24 h, 1 h)


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
    PROMISE_KEPT = "PROMISE_KEPT"  # the customer is asked how we did


class NoticeTemplate(enum.StrEnum):
    IN_HAND = "IN_HAND"
    NEW_DUE_DATE = "NEW_DUE_DATE"
    PLEASE_CONTACT_US = "PLEASE_CONTACT_US"
    SATISFACTION_REQUEST = "SATISFACTION_REQUEST"


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
    lead: timedelta | None = None  # set for kind BEFORE_DUE: how long before due it is for
    # The W3C traceparent of the work that planned it (opaque text here): its delivery, however
    # much later, continues that trace.
    trace: str = ""

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


# The default offsets keep the kinds they always had; any other lead is BEFORE_DUE with it.
_LEAD_KINDS = {
    timedelta(hours=24): ReminderKind.BEFORE_DUE_24H,
    timedelta(hours=1): ReminderKind.BEFORE_DUE_1H,
}
_JUST_BEFORE = timedelta(microseconds=1)


@dataclass(frozen=True)
class Terms:
    """A promise's service level with its team's calendar: its time counted as the level says,
    business time on the calendar when `business_time` is set, else wall time."""

    level: ServiceLevel
    calendar: BusinessCalendar

    def add(self, at: datetime, span: timedelta) -> datetime:
        if self.level.business_time:
            return self.calendar.add(at, span)
        return shifted(at, span)

    def between(self, start: datetime, end: datetime) -> timedelta:
        if self.level.business_time:
            return self.calendar.between(start, end)
        return end - start

    def repeated(self, at: datetime, every: timedelta, times: int) -> datetime:
        """`at` plus `times` periods of `every`, held at the calendar's end."""
        if not self.level.business_time:
            return shifted(at, every, times)
        try:
            return self.calendar.add(at, every * times)
        except OverflowError:
            return LATEST


@dataclass(frozen=True)
class ReminderPolicy:
    """How reminders are planned and retried. What a promise gets comes from its service level
    (`levels`: the policy it was made under, its team's calendar and people by level); without
    them, the fields below for every promise on wall time: 24 h and 1 h before due and at due to
    the owner, to the supervisor 4 h after due, then daily while overdue. Failed deliveries are
    retried with exponential back-off."""

    before_due: tuple[tuple[ReminderKind, timedelta], ...] = (
        (ReminderKind.BEFORE_DUE_24H, timedelta(hours=24)),
        (ReminderKind.BEFORE_DUE_1H, timedelta(hours=1)),
    )
    escalate_after: timedelta = timedelta(hours=4)
    escalate_every: timedelta = timedelta(hours=24)
    max_attempts: int = 5
    retry_base: timedelta = timedelta(seconds=30)
    notifiers: tuple[str, ...] = field(default=("nats",))
    # CRM_SERVICE_LEVELS (or ServiceLevels.defaults from the settings); None: the fields above.
    levels: ServiceLevels | None = None

    def retry_at(self, rounds: int, now: datetime) -> datetime | None:
        """When to try again after `rounds` failed rounds: exponential back-off, None after
        the last round the policy allows."""
        if rounds >= self.max_attempts:
            return None
        return shifted(now, self.retry_base, 2 ** (rounds - 1))

    def level_for(
        self,
        kind: PromiseKind,
        priority: Priority,
        channel: Channel | None,
        relationship: Relationship | None,
    ) -> ServiceLevel:
        """The policy a new promise is made under: the one that matches it, else the default."""
        if self.levels is None:
            return self._fields_as_level()
        return self.levels.for_promise(kind, priority, channel, relationship)

    def level_of(self, p: Promise) -> ServiceLevel:
        """The policy the promise was made under, by the name it carries (one made before
        service levels: the one that matches it, its contact's relationship unknown)."""
        if self.levels is None:
            return self._fields_as_level()
        if p.service_level:
            return self.levels.named(p.service_level)
        return self.levels.for_promise(p.kind, p.priority, p.channel, None)

    def calendar_of(self, team: str) -> BusinessCalendar:
        return self.levels.team(team).calendar if self.levels is not None else ALWAYS_OPEN

    def terms(self, p: Promise) -> Terms:
        return Terms(self.level_of(p), self.calendar_of(p.team))

    def recipient(self, team: str, level: str, supervisor_id: str = "") -> str:
        """Who holds `level` in the team; `supervisor_id` stands in for a supervisor the
        levels do not name. Empty when nobody does: that step of the ladder is skipped."""
        held = self.levels.recipient(team, level) if self.levels is not None else ""
        return held or (supervisor_id if level == SUPERVISOR else "")

    def next_escalation(self, p: Promise, after: datetime) -> datetime:
        """The first escalation slot later than `after` (the ladder's steps after due, then
        the last one every `escalate_every`); for a promise due at the calendar's end, that
        end (never reached)."""
        terms = self.terms(p)
        steps = [(at, step.level, "") for at, step in _steps(p, terms)]
        return _next_slot(steps, after, terms)[0]

    def ladder(self, p: Promise, supervisor_id: str = "") -> list[tuple[datetime, str, str]]:
        """The escalation steps of the promise as it stands: (when, level, user), the steps
        whose level nobody holds in its team left out."""
        terms = self.terms(p)
        return [
            (at, step.level, who)
            for at, step in _steps(p, terms)
            if (who := self.recipient(p.team, step.level, supervisor_id))
        ]

    def following(
        self, p: Promise, sent: ReminderDelivery, reminder_id: str
    ) -> ReminderDelivery | None:
        """The escalation after one sent while the promise is overdue: the ladder's next step
        (or the last one again), to the user of its level; None when the ladder is empty."""
        ladder = self.ladder(p, sent.recipient_id)
        if not ladder:
            return None
        at, _, who = _next_slot(ladder, sent.scheduled_at, self.terms(p))
        return delivery(p, ReminderKind.ESCALATION, at, who, self, reminder_id)

    def _fields_as_level(self) -> ServiceLevel:
        return ServiceLevel(
            "default",
            reminders=tuple(lead for _, lead in self.before_due),
            escalations=(EscalationStep(self.escalate_after, SUPERVISOR),),
            escalate_every=self.escalate_every,
        )


def _steps(p: Promise, terms: Terms) -> list[tuple[datetime, EscalationStep]]:
    return [(terms.add(p.due_at, step.after), step) for step in terms.level.escalations]


def _next_slot(
    ladder: list[tuple[datetime, str, str]], after: datetime, terms: Terms
) -> tuple[datetime, str, str]:
    """The first slot later than `after`: a step of the ladder, else the last step again
    `escalate_every` after it (counted as the level counts time) as often as needed."""
    for slot in ladder:
        if slot[0] > after:
            return slot
    last, level, who = ladder[-1]
    every = terms.level.escalate_every
    periods = terms.between(last, after) // every + 1
    return terms.repeated(last, every, periods), level, who


def plan(
    p: Promise,
    now: datetime,
    policy: ReminderPolicy,
    supervisor_id: str,
    new_id: Callable[[], str],
) -> list[ReminderDelivery]:
    """The reminders still to come for a promise as it stands now, as its service level says.
    Paused, kept and cancelled promises have none; reminders whose moment has passed are not
    sent late, except the one at due, which also marks the promise overdue. The owner's are
    moved into the team's working hours unless that would be at or after due.

    Escalations follow the ladder: one planned at a time (the scheduler plans the next as it
    sends one); a promise overdue past a step and never escalated is escalated at once, to the
    highest level reached. `supervisor_id` stands in for a supervisor the levels do not name."""
    if p.status is not Status.OPEN:
        return []
    terms = policy.terms(p)
    planned = [
        (kind, at, p.owner_id, lead if kind is ReminderKind.BEFORE_DUE else None)
        for kind, at, lead in _owner_reminders(p, now, terms)
    ]
    if p.overdue_noted_for != p.due_at:
        planned.append((ReminderKind.AT_DUE, max(p.due_at, now), p.owner_id, None))
    ladder = policy.ladder(p, supervisor_id)
    if ladder:
        last = p.last_escalated_at
        if last is None and now >= ladder[0][0]:
            # Overdue long enough and never escalated: at once, to the highest level reached.
            who = [w for at, _, w in ladder if at <= now][-1]
            planned.append((ReminderKind.ESCALATION, now, who, None))
        else:
            at, _, who = _next_slot(ladder, max(last or now, now - _JUST_BEFORE), terms)
            planned.append((ReminderKind.ESCALATION, at, who, None))
    return [
        delivery(p, kind, at, recipient, policy, new_id(), lead=lead)
        for kind, at, recipient, lead in planned
    ]


def _owner_reminders(
    p: Promise, now: datetime, terms: Terms
) -> list[tuple[ReminderKind, datetime, timedelta]]:
    """Before-due reminders and the warning still to come, in the team's working hours when
    that is still before due; two that land on one moment are sent once (the nearer to due)."""
    due = p.due_at
    found: list[tuple[ReminderKind, datetime, timedelta]] = [
        (_LEAD_KINDS.get(lead, ReminderKind.BEFORE_DUE), at, lead)
        for lead in terms.level.reminders
        if (at := terms.add(due, -lead)) >= now
    ]
    share = terms.level.warn_at
    if share is not None:
        at = terms.add(p.created_at, terms.between(p.created_at, due) * share)
        if now <= at < due:
            found.append((ReminderKind.WARNING, at, due - at))
    moved: dict[datetime, tuple[int, ReminderKind, timedelta]] = {}
    for index, (kind, at, lead) in sorted(enumerate(found), key=lambda f: f[1][1], reverse=True):
        opens = terms.calendar.next_open(at)
        moved.setdefault(opens if opens < due else at, (index, kind, lead))
    return [
        (kind, when, lead) for when, (_, kind, lead) in sorted(moved.items(), key=lambda m: m[1][0])
    ]


@dataclass(frozen=True)
class Standing:
    """Where a promise stands against its service level: its target (the due time, the clock
    stopped while paused), the time left to it (business time when the level counts it;
    negative when overdue; None once kept or cancelled) and the level's name."""

    target_at: datetime
    time_left: timedelta | None
    service_level: str


def standing(p: Promise, now: datetime, policy: ReminderPolicy) -> Standing:
    terms = policy.terms(p)
    left: timedelta | None = None
    if p.is_open:
        # Paused: the clock stopped when the pause began.
        left = terms.between(p.paused_at or now, p.due_at)
    return Standing(p.effective_due(now), left, p.service_level or terms.level.name)


@dataclass(frozen=True)
class Breach:
    """A promise that missed its target: kept late, or open past due now; `late_by` is counted
    as its level counts time."""

    promise: Promise
    late_by: timedelta
    service_level: str


def breach(p: Promise, now: datetime, policy: ReminderPolicy) -> Breach | None:
    terms = policy.terms(p)
    name = p.service_level or terms.level.name
    if p.kept_at is not None and p.status is Status.KEPT and not p.kept_on_time:
        # Judged by the due time it was kept against (every pause included).
        return Breach(p, terms.between(p.due_at, p.kept_at), name)
    if p.is_overdue(now):
        return Breach(p, terms.between(p.effective_due(now), now), name)
    return None


def business_time_to_keep(p: Promise, calendar: BusinessCalendar) -> timedelta | None:
    """From making to keeping in the team's business hours, time waiting on the customer
    excluded (each pause counted on the same calendar)."""
    if p.kept_at is None:
        return None
    total = calendar.between(p.created_at, p.kept_at)
    paused_since: datetime | None = None
    for entry in p.history:
        if entry.action is Action.PAUSED:
            paused_since = entry.occurred_at
        elif paused_since is not None and entry.action in _PAUSE_ENDS:
            total -= calendar.between(paused_since, entry.occurred_at)
            paused_since = None
    return total


_PAUSE_ENDS = frozenset({Action.RESUMED, Action.KEPT, Action.CANCELLED})


def delivery(
    p: Promise,
    kind: ReminderKind,
    at: datetime,
    recipient_id: str,
    policy: ReminderPolicy,
    reminder_id: str,
    *,
    lead: timedelta | None = None,
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
        lead=lead,
    )
