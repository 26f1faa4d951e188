"""Bounds on the instants a caller gives, checked where they enter, so that nothing stored
can later overflow the calendar (years 1 to 9999) when a time is derived from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from promesa.errors import Violations

# Nothing a customer did happened before this; a year-1 "occurred at" is a mistake.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_HORIZON = timedelta(days=1826)  # five years


def check_past(v: Violations, path: str, at: datetime, now: datetime, skew: timedelta) -> None:
    """A time something happened: from 1970 to now (plus a device clock's drift)."""
    if at < EARLIEST:
        v.add(path, "must not be before 1970-01-01")
    elif at > now + skew:
        v.add(path, f"must not be more than {_span(skew)} in the future")


def check_due(v: Violations, path: str, due: datetime, now: datetime, horizon: timedelta) -> None:
    """A due time: later than now (one already past is broken at birth) and within the horizon."""
    if due <= now:
        v.add(path, "is in the past: a promise must be due later")
    elif due > now + horizon:
        v.add(path, f"must be within {_span(horizon)} from now")


def _span(delta: timedelta) -> str:
    if delta >= timedelta(days=1):
        return _count(delta.days, "day")
    if delta >= timedelta(minutes=1):
        return _count(int(delta.total_seconds() // 60), "minute")
    return _count(int(delta.total_seconds()), "second")


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
