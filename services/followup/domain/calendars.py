"""A team's business calendar: when it is open, and business time counted on that clock.

Open spans are written in the team's local time; every instant in or out is aware, and what
comes out is UTC. Spans are turned into real instants one local day at a time, so a span that
crosses a DST change counts the hours the clock really had open (a night shift 00:00-06:00 is
5 h on the spring-forward day and 7 h on the fall-back one). A local time the clock skips is
moved forward by the gap (02:30 on the spring-forward day opens at 03:30); a repeated one is
taken at its first occurrence. Public holidays come in as a function of the date (`holiday`),
so they stay right across year boundaries however far a due date lies; the domain does no I/O
(the `holidays` library is pure, the adapter passes one in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

ZERO = timedelta(0)
DAY = timedelta(days=1)
MIDNIGHT = time(0)
# The end of a span written as 00:00 is the midnight that ends the day ("24:00" in the file):
# a span never ends before it starts, so the reading is unambiguous.
END_OF_DAY = MIDNIGHT
# Far ahead, whole weeks are counted at the calendar's plain weekly hours (no holidays, no DST
# shift) instead of day by day, so a due date years away costs as much as one a decade away.
EXACT_DAYS = 3660
# A calendar closed this many days in a row is taken to be never open (a holiday function that
# says yes to everything): an error, not an endless walk.
LONGEST_CLOSURE_DAYS = 3660
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)
_FIRST_DAY = date.min + timedelta(days=3)
_LAST_DAY = date.max - timedelta(days=3)

Span = tuple[time, time]


class CalendarError(ValueError):
    """A calendar that cannot be used: never open, a bad span, a naive instant."""


def _never(_: date) -> bool:
    return False


@dataclass(frozen=True)
class BusinessCalendar:
    """When a team works. `hours` maps a weekday (0 = Monday) to its open spans in local time
    (a day not listed is closed); `closed` holds extra closed dates and `holiday` says whether
    a date is a public holiday (any year)."""

    name: str
    zone: ZoneInfo
    hours: Mapping[int, tuple[Span, ...]]
    closed: frozenset[date] = frozenset()
    holiday: Callable[[date], bool] = field(default=_never, compare=False)

    def __post_init__(self) -> None:
        for weekday, spans in self.hours.items():
            if weekday not in range(7):
                raise CalendarError(f"calendar {self.name!r}: weekday {weekday} is not 0-6")
            previous_end: time | None = None
            for start, end in sorted(spans):
                if end != END_OF_DAY and end <= start:
                    raise CalendarError(
                        f"calendar {self.name!r}: span {start}-{end} ends before it starts"
                    )
                if previous_end is not None and (
                    previous_end == END_OF_DAY or start < previous_end
                ):
                    raise CalendarError(f"calendar {self.name!r}: spans overlap on day {weekday}")
                previous_end = end
        if self._weekly_hours <= ZERO:
            raise CalendarError(f"calendar {self.name!r} is never open")

    def is_closed(self, day: date) -> bool:
        """A whole local date off: an extra closed day or a public holiday."""
        return day in self.closed or self.holiday(day)

    def is_open(self, at: datetime) -> bool:
        return self.next_open(at) == _utc(at)

    def next_open(self, at: datetime) -> datetime:
        """The first open instant at or after `at` (`at` itself when open)."""
        at = _utc(at)
        if self._always_open:
            return at
        for start, end in self._forward(at):
            if end > at:
                return max(start, at)
        return LATEST

    def add(self, start: datetime, span: timedelta) -> datetime:
        """The instant `span` of business time after `start` (before it when negative). Work
        that ends as the team closes is due at closing time, not when it next opens."""
        start = _utc(start)
        if span == ZERO:
            return start
        if self._always_open:
            return _shifted(start, span)
        if span > ZERO:
            return self._add_forward(start, span)
        return self._add_backward(start, -span)

    def between(self, start: datetime, end: datetime) -> timedelta:
        """Business time from `start` to `end`; negative when `end` is before `start`."""
        start, end = _utc(start), _utc(end)
        if end < start:
            return -self.between(end, start)
        if self._always_open:
            return end - start
        total = ZERO
        day = self._local_day(start) - DAY
        last = self._local_day(end) + DAY
        exact = 0
        while day <= last:
            if exact >= EXACT_DAYS and (last - day).days > 14:
                weeks = (last - day).days // 7 - 1
                total += self._weekly_hours * weeks
                day += timedelta(weeks=weeks)
                exact = 0
            for opens, closes in self._spans_on(day):
                opens, closes = max(opens, start), min(closes, end)
                if closes > opens:
                    total += closes - opens
            day += DAY
            exact += 1
        return total

    def _add_forward(self, start: datetime, span: timedelta) -> datetime:
        left = span
        day = self._local_day(start) - DAY
        exact = closed_run = 0
        while day <= _LAST_DAY:
            if exact >= EXACT_DAYS and left > self._weekly_hours * 3:
                weeks = left // self._weekly_hours - 1
                left -= self._weekly_hours * weeks
                if (_LAST_DAY - day).days <= 7 * weeks:
                    return LATEST
                day += timedelta(weeks=weeks)
                exact = 0
            spans = self._spans_on(day)
            for opens, closes in spans:
                if closes <= start:
                    continue
                opens = max(opens, start)
                if left <= closes - opens:
                    return opens + left
                left -= closes - opens
            closed_run = 0 if spans else closed_run + 1
            self._check_closure(closed_run)
            day += DAY
            exact += 1
        return LATEST

    def _add_backward(self, start: datetime, span: timedelta) -> datetime:
        left = span
        day = self._local_day(start) + DAY
        exact = closed_run = 0
        while day >= _FIRST_DAY:
            if exact >= EXACT_DAYS and left > self._weekly_hours * 3:
                weeks = left // self._weekly_hours - 1
                left -= self._weekly_hours * weeks
                if (day - _FIRST_DAY).days <= 7 * weeks:
                    return EARLIEST
                day -= timedelta(weeks=weeks)
                exact = 0
            spans = self._spans_on(day)
            for opens, closes in reversed(spans):
                if opens >= start:
                    continue
                closes = min(closes, start)
                if left <= closes - opens:
                    return closes - left
                left -= closes - opens
            closed_run = 0 if spans else closed_run + 1
            self._check_closure(closed_run)
            day -= DAY
            exact += 1
        return EARLIEST

    def _forward(self, at: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals (UTC) from the local day before `at` on, in order."""
        day = self._local_day(at) - DAY
        closed_run = 0
        while day <= _LAST_DAY:
            spans = self._spans_on(day)
            yield from spans
            closed_run = 0 if spans else closed_run + 1
            self._check_closure(closed_run)
            day += DAY

    def _check_closure(self, closed_run: int) -> None:
        if closed_run > LONGEST_CLOSURE_DAYS:
            raise CalendarError(
                f"calendar {self.name!r} is closed {LONGEST_CLOSURE_DAYS} days in a row"
            )

    def _spans_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The real (UTC) open intervals of one local date, in order."""
        spans = self.hours.get(day.weekday(), ())
        if not spans or self.is_closed(day):
            return []
        found: list[tuple[datetime, datetime]] = []
        for start, end in sorted(spans):
            opens = self._instant(day, start)
            closes = (
                self._instant(day + DAY, MIDNIGHT) if end == END_OF_DAY else self._instant(day, end)
            )
            if closes > opens:
                found.append((opens, closes))
        return found

    def _instant(self, day: date, at: time) -> datetime:
        # fold=0: a skipped local time lands after the gap, a repeated one at its first pass.
        return datetime.combine(day, at, tzinfo=self.zone).astimezone(UTC)

    def _local_day(self, at: datetime) -> date:
        """The local date of `at`, kept a few days inside the calendar's ends."""
        try:
            day = at.astimezone(self.zone).date()
        except OverflowError:
            return _LAST_DAY if at.year > 1 else _FIRST_DAY
        return min(max(day, _FIRST_DAY), _LAST_DAY)

    @cached_property
    def _weekly_hours(self) -> timedelta:
        """Open time in a plain week (local clock, no holidays)."""
        total = ZERO
        for spans in self.hours.values():
            for start, end in spans:
                finish = DAY if end == END_OF_DAY else _since_midnight(end)
                total += finish - _since_midnight(start)
        return total

    @cached_property
    def _always_open(self) -> bool:
        """Every day open around the clock and nothing closed: business time is wall time."""
        full = ((MIDNIGHT, END_OF_DAY),)
        return (
            all(tuple(self.hours.get(weekday, ())) == full for weekday in range(7))
            and not self.closed
            and self.holiday is _never
        )


def _since_midnight(at: time) -> timedelta:
    return timedelta(
        hours=at.hour, minutes=at.minute, seconds=at.second, microseconds=at.microsecond
    )


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise CalendarError(f"{at.isoformat()} has no time zone")
    return at.astimezone(UTC)


def _shifted(at: datetime, by: timedelta) -> datetime:
    try:
        return at + by
    except OverflowError:
        return LATEST if by > ZERO else EARLIEST


def always_open(name: str = "*", zone: ZoneInfo | None = None) -> BusinessCalendar:
    """A 24x7 calendar: business time is wall time."""
    return BusinessCalendar(
        name=name,
        zone=zone or ZoneInfo("UTC"),
        hours={weekday: ((MIDNIGHT, END_OF_DAY),) for weekday in range(7)},
    )


ALWAYS_OPEN = always_open()
