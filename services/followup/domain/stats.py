"""Promise-keeping statistics over the promises made in a window, grouped as asked."""

from __future__ import annotations

import enum
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from followup.domain.model import Promise, Status
from followup.domain.reminders import ReminderPolicy, breach, business_time_to_keep


class Grouping(enum.StrEnum):
    OWNER = "OWNER"
    TEAM = "TEAM"
    CHANNEL = "CHANNEL"
    ALL = "ALL"
    PRIORITY = "PRIORITY"
    POLICY = "POLICY"  # the service-level policy a promise was made under


@dataclass(frozen=True)
class PromiseStats:
    key: str
    made: int
    kept: int
    kept_on_time_percent: float
    overdue_now: int
    cancelled: int
    renegotiated: int
    median_time_to_keep: timedelta | None
    mean_satisfaction: float
    handoffs_per_promise: float
    escalated: int
    # Time to keep in the team's business hours (its calendar), and the promises that missed
    # their target (kept late, or open past due now).
    median_business_time_to_keep: timedelta | None = None
    breaches: int = 0
    # Satisfaction the customer gave through the request's link, apart from what staff entered
    # for them (ConfirmByCustomer); the response rate is over the requests made.
    customer_ratings: int = 0
    mean_customer_satisfaction: float = 0.0
    staff_ratings: int = 0
    mean_staff_satisfaction: float = 0.0
    satisfaction_requests: int = 0
    response_rate_percent: float = 0.0


def _key(p: Promise, grouping: Grouping) -> str:
    match grouping:
        case Grouping.OWNER:
            return p.owner_id
        case Grouping.TEAM:
            return p.team
        case Grouping.CHANNEL:
            return f"CHANNEL_{p.channel.value}" if p.channel else "CHANNEL_UNSPECIFIED"
        case Grouping.ALL:
            return "all"
        case Grouping.PRIORITY:
            # Every promise has one (an unset priority is stored as NORMAL), so no UNSPECIFIED.
            return f"PRIORITY_{p.priority.value}"
        case Grouping.POLICY:
            return p.service_level or "default"


def compute(
    promises: Iterable[Promise],
    grouping: Grouping,
    now: datetime,
    policy: ReminderPolicy | None = None,
) -> list[PromiseStats]:
    """One row per group, ordered by key; the ALL grouping always has its one row. `policy`
    gives the service levels and calendars that breaches and business hours are counted by
    (without it: wall time)."""
    policy = policy or ReminderPolicy()
    groups: dict[str, list[Promise]] = defaultdict(list)
    if grouping is Grouping.ALL:
        groups["all"] = []
    for p in promises:
        groups[_key(p, grouping)].append(p)
    return [_row(key, rows, now, policy) for key, rows in sorted(groups.items())]


def _row(key: str, rows: list[Promise], now: datetime, policy: ReminderPolicy) -> PromiseStats:
    kept = [p for p in rows if p.status is Status.KEPT]
    times = sorted(t for p in kept if (t := p.time_to_keep) is not None)
    business = sorted(
        t for p in kept if (t := business_time_to_keep(p, policy.calendar_of(p.team))) is not None
    )
    rated = [p.satisfaction for p in rows if p.customer_confirmed and p.satisfaction]
    by_customer = [p.satisfaction for p in rows if p.satisfaction_by_customer and p.satisfaction]
    by_staff = [
        p.satisfaction
        for p in rows
        if p.customer_confirmed and p.satisfaction and not p.satisfaction_by_customer
    ]
    asked = [p for p in rows if p.satisfaction_requested_at is not None]
    answered = sum(p.satisfaction_by_customer for p in asked)
    made = len(rows)
    return PromiseStats(
        key=key,
        made=made,
        kept=len(kept),
        kept_on_time_percent=100.0 * sum(p.kept_on_time for p in kept) / len(kept) if kept else 0.0,
        overdue_now=sum(p.is_overdue(now) for p in rows),
        cancelled=sum(p.status is Status.CANCELLED for p in rows),
        renegotiated=sum(p.renegotiation_count > 0 for p in rows),
        median_time_to_keep=_median(times),
        mean_satisfaction=statistics.fmean(rated) if rated else 0.0,
        handoffs_per_promise=sum(p.handoff_count for p in rows) / made if made else 0.0,
        escalated=sum(p.escalated_at is not None for p in rows),
        median_business_time_to_keep=_median(business),
        breaches=sum(breach(p, now, policy) is not None for p in rows),
        customer_ratings=len(by_customer),
        mean_customer_satisfaction=statistics.fmean(by_customer) if by_customer else 0.0,
        staff_ratings=len(by_staff),
        mean_staff_satisfaction=statistics.fmean(by_staff) if by_staff else 0.0,
        satisfaction_requests=len(asked),
        response_rate_percent=100.0 * answered / len(asked) if asked else 0.0,
    )


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2
