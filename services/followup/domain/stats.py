"""Promise-keeping statistics over the promises made in a window, grouped as asked."""

from __future__ import annotations

import enum
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from followup.domain.model import Promise, Status


class Grouping(enum.StrEnum):
    OWNER = "OWNER"
    TEAM = "TEAM"
    CHANNEL = "CHANNEL"
    ALL = "ALL"
    PRIORITY = "PRIORITY"


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


def compute(promises: Iterable[Promise], grouping: Grouping, now: datetime) -> list[PromiseStats]:
    """One row per group, ordered by key; the ALL grouping always has its one row."""
    groups: dict[str, list[Promise]] = defaultdict(list)
    if grouping is Grouping.ALL:
        groups["all"] = []
    for p in promises:
        groups[_key(p, grouping)].append(p)
    return [_row(key, rows, now) for key, rows in sorted(groups.items())]


def _row(key: str, rows: list[Promise], now: datetime) -> PromiseStats:
    kept = [p for p in rows if p.status is Status.KEPT]
    times = sorted(t for p in kept if (t := p.time_to_keep) is not None)
    rated = [p.satisfaction for p in rows if p.customer_confirmed and p.satisfaction]
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
    )


def _median(values: list[timedelta]) -> timedelta | None:
    if not values:
        return None
    mid = len(values) // 2
    if len(values) % 2:
        return values[mid]
    return (values[mid - 1] + values[mid]) / 2
