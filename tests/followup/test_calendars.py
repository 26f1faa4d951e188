"""Business calendars: open hours in the team's zone, holidays of any year, DST counted as the
clock really ran, and service-level policies picked without overlap."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
import pytest

from followup.domain.calendars import (
    ALWAYS_OPEN,
    EARLIEST,
    END_OF_DAY,
    LATEST,
    BusinessCalendar,
    CalendarError,
)
from followup.domain.model import Channel, Priority, PromiseKind
from followup.domain.service_levels import (
    EscalationStep,
    Relationship,
    ServiceLevel,
    ServiceLevelError,
    ServiceLevels,
    TeamSetup,
)

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
NINE_TO_SIX = ((time(9), time(18)),)


def office(
    closed: frozenset[date] = frozenset(), holiday: Callable[[date], bool] | None = None
) -> BusinessCalendar:
    """Madrid, Monday to Thursday 09:00-18:00, Friday 09:00-14:00."""
    hours = {day: NINE_TO_SIX for day in range(4)} | {4: ((time(9), time(14)),)}
    if holiday is None:
        return BusinessCalendar("team-a", MADRID, hours, closed)
    return BusinessCalendar("team-a", MADRID, hours, closed, holiday)


def local(
    zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=zone)


def test_open_within_the_hours_and_closed_outside_them() -> None:
    cal = office()
    assert cal.is_open(local(MADRID, 2026, 12, 2, 9, 0))
    assert cal.is_open(local(MADRID, 2026, 12, 2, 17, 59))
    assert not cal.is_open(local(MADRID, 2026, 12, 2, 18, 0))
    assert not cal.is_open(local(MADRID, 2026, 12, 5, 12, 0))  # Saturday
    assert not cal.is_open(local(MADRID, 2026, 12, 4, 14, 30))  # Friday afternoon


def test_next_open_is_the_instant_itself_when_open_and_utc_always() -> None:
    cal = office()
    at = local(MADRID, 2026, 12, 2, 10, 0)
    assert cal.next_open(at) == at and cal.next_open(at).tzinfo is UTC
    friday_evening = local(MADRID, 2026, 12, 4, 15, 0)
    assert cal.next_open(friday_evening) == local(MADRID, 2026, 12, 7, 9, 0)


def test_adding_business_time_skips_nights_and_weekends() -> None:
    cal = office()
    # Given a promise made Friday 13:00 with four business hours to keep
    made = local(MADRID, 2026, 12, 4, 13, 0)
    # Then one hour is used on Friday and three on Monday
    assert cal.add(made, 4 * H) == local(MADRID, 2026, 12, 7, 12, 0)
    assert cal.between(made, local(MADRID, 2026, 12, 7, 12, 0)) == 4 * H
    # Work that ends as the team closes is due at closing time
    assert cal.add(local(MADRID, 2026, 12, 2, 17, 0), H) == local(MADRID, 2026, 12, 2, 18, 0)
    # Made while closed: the clock starts when the team opens
    assert cal.add(local(MADRID, 2026, 12, 5, 20, 0), 2 * H) == local(MADRID, 2026, 12, 7, 11)


def test_negative_spans_count_backwards_and_between_is_negative_when_reversed() -> None:
    cal = office()
    due = local(MADRID, 2026, 12, 7, 10, 0)  # Monday 10:00
    before = cal.add(due, -2 * H)
    assert before == local(MADRID, 2026, 12, 4, 13, 0)  # Friday 13:00
    assert cal.between(due, before) == -2 * H
    assert cal.add(due, timedelta(0)) == due


def test_split_days_count_only_their_open_spans() -> None:
    split = ((time(9), time(13)), (time(15), time(19)))
    cal = BusinessCalendar("split", MADRID, {0: split})
    monday = local(MADRID, 2026, 12, 7, 12, 0)
    assert cal.add(monday, 2 * H) == local(MADRID, 2026, 12, 7, 16, 0)
    assert not cal.is_open(local(MADRID, 2026, 12, 7, 14, 0))
    assert cal.between(local(MADRID, 2026, 12, 7), local(MADRID, 2026, 12, 8)) == 8 * H


def test_always_open_is_wall_time() -> None:
    at = datetime(2026, 3, 29, 0, 30, tzinfo=MADRID).astimezone(UTC)  # the night clocks change
    assert ALWAYS_OPEN.add(at, 5 * H) == at + 5 * H
    assert ALWAYS_OPEN.between(at, at + 30 * H) == 30 * H
    assert ALWAYS_OPEN.between(at + H, at) == -H
    assert ALWAYS_OPEN.is_open(at) and ALWAYS_OPEN.next_open(at) == at


@pytest.mark.parametrize(
    ("zone", "sunday", "real_hours"),
    [
        (MADRID, date(2026, 3, 29), 23),  # 02:00 -> 03:00
        (MADRID, date(2026, 10, 25), 25),  # 03:00 -> 02:00
        (NEW_YORK, date(2026, 3, 8), 23),  # 02:00 -> 03:00
        (NEW_YORK, date(2026, 11, 1), 25),  # 02:00 -> 01:00
    ],
)
def test_a_span_across_a_dst_change_counts_the_hours_the_clock_really_had_open(
    zone: ZoneInfo, sunday: date, real_hours: int
) -> None:
    # Given a team open all Sunday and a night shift on Sundays 00:00-06:00 elsewhere
    all_day = BusinessCalendar("sundays", zone, {6: ((time(0), END_OF_DAY),)})
    # (instants in UTC: arithmetic on zoned datetimes is wall-clock arithmetic)
    start = datetime.combine(sunday, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(sunday + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    assert all_day.between(start - 5 * H, end + 5 * H) == real_hours * H
    assert all_day.add(start, real_hours * H) == end
    assert all_day.add(end, -real_hours * H) == start
    night = BusinessCalendar("night", zone, {6: ((time(0), time(6)),)})
    assert night.between(start, end) == (6 + real_hours - 24) * H
    # When 3 business hours are added at 00:30, the result is three real hours later
    assert night.add(start + H / 2, 3 * H) == start + H / 2 + 3 * H


def test_business_time_across_dst_in_an_office_week() -> None:
    # The Friday before and the Monday after the change are whole 9-hour days either way.
    cal = BusinessCalendar("ny", NEW_YORK, {day: NINE_TO_SIX for day in range(5)})
    friday = local(NEW_YORK, 2026, 3, 6, 9, 0)
    monday_close = local(NEW_YORK, 2026, 3, 9, 18, 0)
    assert cal.between(friday, monday_close) == 18 * H
    assert cal.add(friday, 10 * H) == local(NEW_YORK, 2026, 3, 9, 10, 0)
    assert cal.add(friday, 10 * H).astimezone(NEW_YORK).utcoffset() == timedelta(hours=-4)


def test_holidays_of_the_next_year_are_closed_too() -> None:
    spain = holidays.country_holidays("ES", subdiv="MD")
    cal = office(
        closed=frozenset({date(2026, 12, 24), date(2026, 12, 31)}), holiday=spain.__contains__
    )
    # Given a promise made on Wednesday 23 December 2026 at 17:00 with 4 business hours
    made = local(MADRID, 2026, 12, 23, 17, 0)
    # 24 Dec closed (extra), 25 Dec Christmas, 28-30 open, 31 closed, 1 Jan 2027 New Year's Day
    assert cal.add(made, 4 * H) == local(MADRID, 2026, 12, 28, 12, 0)
    # 30 Dec 17:00 + 4 h: Thursday 31 Dec and Friday 1 Jan are closed, then the weekend
    assert cal.add(local(MADRID, 2026, 12, 30, 17, 0), 4 * H) == local(MADRID, 2027, 1, 4, 12, 0)
    # Wednesday 6 January 2027 (Epiphany) is closed as well, a year the file never named
    assert not cal.is_open(local(MADRID, 2027, 1, 6, 10, 0))
    assert cal.between(local(MADRID, 2027, 1, 5, 9), local(MADRID, 2027, 1, 8, 9)) == 18 * H
    # And backwards across the boundary
    assert cal.add(local(MADRID, 2027, 1, 4, 10, 0), -2 * H) == local(MADRID, 2026, 12, 30, 17)


def test_a_due_time_far_ahead_is_answered_quickly_and_held_at_the_calendars_end() -> None:
    cal = office()
    now = local(MADRID, 2026, 12, 2, 10, 0)
    far = cal.add(now, timedelta(days=365 * 500))
    assert far > now.replace(year=3000)
    assert cal.add(now, timedelta.max) == LATEST
    assert cal.between(now, LATEST) > timedelta(days=700_000)  # 41 h a week for 7,973 years
    assert cal.next_open(LATEST) == LATEST
    assert cal.add(LATEST, H) == LATEST
    assert cal.add(EARLIEST, -H) == EARLIEST
    assert EARLIEST < cal.add(LATEST, -H) < LATEST
    assert cal.between(EARLIEST, now) > timedelta(days=180_000)  # 41 h a week since year 1
    new_york = BusinessCalendar("ny", NEW_YORK, {0: NINE_TO_SIX})
    assert new_york.add(EARLIEST, H) > EARLIEST and new_york.add(now, timedelta.max) == LATEST


def test_calendars_that_cannot_work_are_refused() -> None:
    with pytest.raises(CalendarError, match="never open"):
        BusinessCalendar("none", MADRID, {})
    with pytest.raises(CalendarError, match="ends before"):
        BusinessCalendar("x", MADRID, {0: ((time(18), time(9)),)})
    with pytest.raises(CalendarError, match="overlap"):
        BusinessCalendar("x", MADRID, {0: ((time(9), time(13)), (time(12), time(19)))})
    with pytest.raises(CalendarError, match="no time zone"):
        office().is_open(datetime(2026, 12, 2, 10))
    always_closed = office(holiday=lambda _: True)
    with pytest.raises(CalendarError, match="in a row"):
        always_closed.next_open(local(MADRID, 2026, 12, 2, 10))


# -- the policy model ---------------------------------------------------------------------------

URGENT = ServiceLevel(
    "urgent",
    kinds=frozenset({PromiseKind.RESOLVE_COMPLAINT}),
    priorities=frozenset({Priority.URGENT, Priority.HIGH}),
    relationships=frozenset({Relationship.EXTERNAL_CUSTOMER}),
    line=3,
)


def test_a_promise_gets_the_policy_that_matches_or_the_default() -> None:
    levels = ServiceLevels(policies=(URGENT,), default=ServiceLevel("default"))
    complaint = (PromiseKind.RESOLVE_COMPLAINT, Priority.HIGH, Channel.PHONE)
    assert levels.for_promise(*complaint, Relationship.EXTERNAL_CUSTOMER).name == "urgent"
    assert levels.for_promise(*complaint, Relationship.INTERNAL_COLLEAGUE).name == "default"
    assert levels.for_promise(*complaint, None).name == "default"  # relationship unknown
    assert levels.named("urgent") is URGENT and levels.named("gone").name == "default"


def test_overlapping_policies_are_refused_naming_both_lines() -> None:
    phone = ServiceLevel("phone", channels=frozenset({Channel.PHONE}), line=9)
    with pytest.raises(ServiceLevelError, match=r"'urgent' \(line 3\).*'phone' \(line 9\)"):
        ServiceLevels(policies=(URGENT, phone), default=ServiceLevel("default"))
    internal = ServiceLevel(
        "internal", relationships=frozenset({Relationship.INTERNAL_COLLEAGUE}), line=9
    )
    assert ServiceLevels(policies=(URGENT, internal), default=ServiceLevel("default"))


def test_defaults_are_todays_behaviour() -> None:
    levels = ServiceLevels.defaults(
        escalate_after=2 * H, escalate_every=12 * H, supervisors={"a": "sup-a", "*": "lead"}
    )
    policy = levels.for_promise(PromiseKind.CALL_BACK, Priority.LOW, None, None)
    assert policy.name == "default" and not policy.business_time and policy.warn_at is None
    assert policy.reminders == (24 * H, H)
    assert policy.escalations == (EscalationStep(2 * H, "supervisor"),)
    assert policy.escalate_every == 12 * H
    assert levels.recipient("a", "supervisor") == "sup-a"
    assert levels.recipient("b", "supervisor") == "lead"
    assert levels.recipient("a", "manager") == ""
    assert levels.team("b").calendar is ALWAYS_OPEN
    nobody = ServiceLevels.defaults(escalate_after=H, escalate_every=H, supervisors={})
    assert nobody.recipient("a", "supervisor") == ""


def test_a_team_without_a_level_borrows_the_default_teams() -> None:
    levels = ServiceLevels(
        policies=(),
        default=ServiceLevel("default"),
        teams={"a": TeamSetup("a", levels={"manager": "m-a"})},
        default_team=TeamSetup("*", levels={"supervisor": "s", "manager": "m"}),
    )
    assert levels.recipient("a", "manager") == "m-a"
    assert levels.recipient("a", "supervisor") == "s"


def test_policy_terms_that_make_no_sense_are_refused() -> None:
    with pytest.raises(ServiceLevelError, match="warn_at"):
        ServiceLevel("x", warn_at=1.0)
    with pytest.raises(ServiceLevelError, match="rising"):
        ServiceLevel("x", escalations=(EscalationStep(4 * H, "a"), EscalationStep(H, "b")))
    with pytest.raises(ServiceLevelError, match="reminders"):
        ServiceLevel("x", reminders=(timedelta(0),))
