"""The follow-up service's domain metrics, beside the platform's (promesa.metrics).

Labels are bounded sets: a team, a priority (lower case), a reminder kind, a notifier; never a
contact, promise or agent id, which would make a series per customer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from followup.domain.events import PromiseKept
from followup.domain.model import Priority
from followup.domain.reminders import SCHEDULER, ReminderDelivery
from followup.ports import Change, PromiseStore
from promesa.clock import Clock

EVENTS_ABOUT_ERASED_CONTACTS = Counter(
    "promesa_followup_events_about_erased_contacts_total",
    "Events about a contact erased before they arrived (an interaction, a change of status or"
    " of profile): acknowledged, and nothing recorded.",
    ["event"],
)
PROMISES_OPEN = Gauge(
    "promesa_followup_promises_open",
    "Promises open or waiting on the customer, counted in the store every"
    " CRM_METRICS_REFRESH_SECONDS.",
    ["team", "priority"],
)
PROMISES_OVERDUE = Gauge(
    "promesa_followup_promises_overdue",
    "Open promises past their due time (a waiting one if it was paused after it), counted with"
    " the open ones.",
    ["team", "priority"],
)
PROMISES_KEPT = Counter(
    "promesa_followup_promises_kept_total",
    'Promises kept, on time or late (`on_time` "true"/"false", as the statistics count it).',
    ["team", "priority", "on_time"],
)
REMINDER_LAG = Histogram(
    "promesa_followup_reminder_lag_seconds",
    "From a reminder's due time to its first successful delivery (ReminderSent): how late"
    " reminders go out.",
    ["kind"],
    buckets=(0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0),
)
DELIVERIES_FAILED = Counter(
    "promesa_followup_deliveries_failed_total",
    "Delivery attempts that failed, by notifier (webhook, email, a customer channel...), each"
    " retry counted.",
    ["notifier"],
)


def priority_label(priority: Priority) -> str:
    return priority.value.lower()


def committed(change: Change) -> None:
    """After any commit of the service (its one write path, `reminding.WakingWrites`): the
    promises it kept, whichever use case or reaction kept them."""
    for event in change.events:
        if isinstance(event, PromiseKept):
            p = event.promise
            on_time = "true" if p.kept_on_time else "false"
            PROMISES_KEPT.labels(p.team, priority_label(p.priority), on_time).inc()


def delivery_recorded(before: ReminderDelivery, after: ReminderDelivery) -> None:
    """After the commit that took a reminder from `before` to `after`: its new failed attempts
    (not the scheduler's notes of why nothing was sent), and the lag when this step is the
    first to deliver it."""
    attempts = after.attempts[len(before.attempts) :]
    for attempt in attempts:
        if not attempt.success and attempt.notifier != SCHEDULER:
            DELIVERIES_FAILED.labels(attempt.notifier).inc()
    if after.announced and not before.announced:
        sent = min((a.attempted_at for a in attempts if a.success), default=None)
        if sent is not None:
            lag = max(0.0, (sent - before.scheduled_at).total_seconds())
            REMINDER_LAG.labels(after.kind.value.lower()).observe(lag)


class PromiseGauges:
    """Sets the promise gauges from the store's counts (the runtime's metrics refresher); a
    group that had promises and has none now is set to 0 rather than left at its last value."""

    def __init__(self, store: PromiseStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._shown: set[tuple[str, str]] = set()

    async def __call__(self) -> None:
        counts = await self._store.count_open(self._clock.now())
        shown = set()
        for c in counts:
            labels = (c.team, priority_label(c.priority))
            PROMISES_OPEN.labels(*labels).set(c.open)
            PROMISES_OVERDUE.labels(*labels).set(c.overdue)
            shown.add(labels)
        for labels in self._shown - shown:
            PROMISES_OPEN.labels(*labels).set(0)
            PROMISES_OVERDUE.labels(*labels).set(0)
        self._shown = shown
