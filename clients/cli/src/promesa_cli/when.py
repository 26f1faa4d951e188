"""Times as an agent types and reads them: "in 2h", "tomorrow 17:00", "2026-12-03 09:30" in the
profile's zone, and back as "today 17:00 (in 3h)". Promesa is UTC on the wire; every instant
that leaves this module is aware."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SPAN = re.compile(r"^\s*(?:in\s+|\+)?((?:\d+\s*[smhdw]\s*)+)$", re.IGNORECASE)
_PART = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_DAY_AND_TIME = re.compile(
    r"^\s*(today|tomorrow|mon(?:day)?|tue(?:sday)?|wed(?:nesday)?|thu(?:rsday)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?)(?:\s+(\d{1,2})(?::(\d{2}))?)?\s*$",
    re.IGNORECASE,
)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

HELP = (
    'a span ("2h", "in 3d", "+90m", "1d4h"), "today 17:00", "tomorrow [9:30]", ISO 8601'
    ' ("2026-12-03 09:30", "2026-12-03T09:30+01:00"), or a weekday ("fri 12:00", the next'
    " one); without an offset, in your time zone"
)


def parse_span(text: str) -> timedelta | None:
    """ "2h", "in 3d", "+1d4h" as a timedelta; None when the text is not a span."""
    found = _SPAN.match(text)
    if not found:
        return None
    span = timedelta()
    for amount, unit in _PART.findall(found.group(1)):
        span += timedelta(**{_UNITS[unit.lower()]: int(amount)})
    return span


def parse_when(text: str, zone: ZoneInfo, now: datetime | None = None) -> datetime:
    """An aware instant from what an agent typed; ValueError says what is accepted."""
    now = (now or datetime.now(UTC)).astimezone(zone)
    span = parse_span(text)
    if span is not None:
        return now + span
    day = _DAY_AND_TIME.match(text)
    if day:
        word = day.group(1).lower()
        if word[:3] in _WEEKDAYS:  # the next one, a week ahead when it is today
            ahead = (_WEEKDAYS.index(word[:3]) - now.weekday() - 1) % 7 + 1
        else:
            ahead = 1 if word == "tomorrow" else 0
        date = now.date() + timedelta(days=ahead)
        hour = int(day.group(2)) if day.group(2) else 9
        minute = int(day.group(3)) if day.group(3) else 0
        if hour > 23 or minute > 59:
            raise ValueError(f"{text!r}: no such time of day")
        return datetime.combine(date, time(hour, minute), zone)
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use {HELP}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def relative(moment: datetime, now: datetime | None = None) -> str:
    """ "in 3h 20m", "2d ago", "now": how far an instant is, to the minute."""
    delta = moment - (now or datetime.now(UTC))
    seconds = int(delta.total_seconds())
    future = seconds >= 0
    seconds = abs(seconds)
    if seconds < 60:
        return "now" if seconds < 30 else ("in 1m" if future else "1m ago")
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        text = f"{days}d {hours}h" if hours and days < 3 else f"{days}d"
    elif hours:
        text = f"{hours}h {minutes}m" if minutes else f"{hours}h"
    else:
        text = f"{minutes}m"
    return f"in {text}" if future else f"{text} ago"


def local(moment: datetime, zone: ZoneInfo, now: datetime | None = None) -> str:
    """ "today 17:00", "tomorrow 09:30", "Thu 4 Dec 09:30", "2027-01-05 09:30" in `zone`."""
    here = moment.astimezone(zone)
    today = (now or datetime.now(UTC)).astimezone(zone).date()
    days = (here.date() - today).days
    clock = here.strftime("%H:%M")
    if days == 0:
        return f"today {clock}"
    if days == 1:
        return f"tomorrow {clock}"
    if days == -1:
        return f"yesterday {clock}"
    if -7 < days < 7:
        return here.strftime("%a %d %b ") + clock
    return here.strftime("%Y-%m-%d ") + clock
