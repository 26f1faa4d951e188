"""How the desk writes times, countdowns and enum values in 80 columns, and how it reads the
due times an agent types: pure functions, so the screens stay thin and these are easy to test."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from google.protobuf.timestamp_pb2 import Timestamp

_RELATIVE = re.compile(r"^\+\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?$", re.IGNORECASE)
_CLOCK = re.compile(r"^(?:(today|tomorrow)\s+)?(\d{1,2}):(\d{2})$", re.IGNORECASE)
DUE_HINT = "+2h, +1d, 18:30, tomorrow 9:00, 2026-12-24 10:00"


class DueTimeError(ValueError):
    """A due time the desk cannot read; the message says which forms it understands."""


def from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def countdown(due: datetime, now: datetime) -> str:
    """Time left as an agent reads it at a glance: seconds only in the last hour, where they
    matter; "late" rather than a minus sign, so overdue stands out without colour too."""
    left = due - now
    late = left < timedelta(0)
    seconds = int(abs(left).total_seconds())
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        text = f"{days}d {hours:02d}h"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    else:
        text = f"{minutes}m {secs:02d}s"
    return f"late {text}" if late else text


def short_time(when: datetime, zone: ZoneInfo, now: datetime) -> str:
    """Today as 14:05, this week as "Thu 14:05", further as "03 Dec 14:05", in `zone`."""
    local = when.astimezone(zone)
    today = now.astimezone(zone).date()
    if local.date() == today:
        return local.strftime("%H:%M")
    if abs((local.date() - today).days) < 7:
        return local.strftime("%a %H:%M")
    return local.strftime("%d %b %H:%M")


def local_clock(zone_name: str, now: datetime) -> str:
    """The customer's wall clock ("Wed 15:04 Europe/Madrid"), or why it cannot be shown."""
    if not zone_name:
        return "time zone unknown"
    try:
        zone = ZoneInfo(zone_name)
    except (ValueError, KeyError):
        return f"unknown zone {zone_name}"
    return f"{now.astimezone(zone).strftime('%a %H:%M')} {zone_name}"


def enum_label(full_name: str, prefix: str) -> str:
    """`PRIORITY_URGENT` -> "urgent", `REMINDER_KIND_BEFORE_DUE_1H` -> "before due 1h"."""
    name = full_name.removeprefix(prefix)
    return name.lower().replace("_", " ") if not name.endswith("UNSPECIFIED") else ""


def clip(text: str, width: int) -> str:
    """One line of at most `width` characters, an ellipsis showing that more was cut."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(width - 1, 0)] + "…"


def parse_due(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    """A due time as an agent types it, read in the agent's zone: "+2h", "+1d4h", "+90m",
    "18:30" (today, or tomorrow when that has passed), "tomorrow 9:00", "2026-12-24 10:00".
    Returns UTC."""
    typed = " ".join(text.split())
    if not typed:
        raise DueTimeError(f"a due time is required ({DUE_HINT})")
    relative = _RELATIVE.match(typed)
    if relative and any(relative.groups()):
        days, hours, minutes = (int(g or 0) for g in relative.groups())
        return now + timedelta(days=days, hours=hours, minutes=minutes)
    local_now = now.astimezone(zone)
    clock = _CLOCK.match(typed)
    if clock:
        day, hour, minute = clock.group(1), int(clock.group(2)), int(clock.group(3))
        if hour > 23 or minute > 59:
            raise DueTimeError(f"no such time of day: {typed}")
        at = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if (day or "").lower() == "tomorrow" or (day is None and at <= local_now):
            at = (at.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=zone)
        return at.astimezone(UTC)
    for form in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.strptime(typed, form).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            continue
    raise DueTimeError(f"cannot read {typed!r} as a due time ({DUE_HINT})")
