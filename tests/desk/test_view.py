"""How the desk writes countdowns and reads the due times an agent types."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from promesa_cli.desk import view

MADRID = ZoneInfo("Europe/Madrid")
# 10:30 in Madrid (UTC+1 in December)
NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "shown"),
    [
        (timedelta(minutes=4, seconds=7), "4m 07s"),
        (timedelta(hours=2, minutes=5, seconds=59), "2h 05m"),
        (timedelta(days=3, hours=4), "3d 04h"),
        (timedelta(seconds=-30), "late 0m 30s"),
        (timedelta(hours=-26), "late 1d 02h"),
    ],
)
def test_a_countdown_shows_seconds_only_in_the_last_hour_and_says_late(
    left: timedelta, shown: str
) -> None:
    assert view.countdown(NOW + left, NOW) == shown


@pytest.mark.parametrize(
    ("typed", "due"),
    [
        ("+2h", NOW + timedelta(hours=2)),
        ("+1d4h", NOW + timedelta(days=1, hours=4)),
        ("+ 90m", NOW + timedelta(minutes=90)),
        ("18:30", datetime(2026, 12, 2, 17, 30, tzinfo=UTC)),  # later today, Madrid time
        ("9:00", datetime(2026, 12, 3, 8, 0, tzinfo=UTC)),  # passed today: tomorrow
        ("tomorrow 10:30", datetime(2026, 12, 3, 9, 30, tzinfo=UTC)),
        ("2026-12-24 10:00", datetime(2026, 12, 24, 9, 0, tzinfo=UTC)),
        ("2027-07-01T10:00", datetime(2027, 7, 1, 8, 0, tzinfo=UTC)),  # summer time
    ],
)
def test_a_due_time_is_read_as_typed_in_the_agents_zone(typed: str, due: datetime) -> None:
    assert view.parse_due(typed, MADRID, NOW) == due


@pytest.mark.parametrize("typed", ["", "soon", "25:00", "+", "2026-13-01 10:00"])
def test_a_due_time_the_desk_cannot_read_says_which_forms_it_knows(typed: str) -> None:
    with pytest.raises(view.DueTimeError) as caught:
        view.parse_due(typed, MADRID, NOW)
    assert "+2h" in str(caught.value) or "no such time" in str(caught.value)


def test_times_are_short_near_today_and_dated_further_away() -> None:
    assert view.short_time(NOW + timedelta(hours=1), MADRID, NOW) == "11:30"
    assert view.short_time(NOW + timedelta(days=1), MADRID, NOW) == "Thu 10:30"
    assert view.short_time(NOW + timedelta(days=30), MADRID, NOW) == "01 Jan 10:30"
    assert view.local_clock("America/New_York", NOW) == "Wed 04:30 America/New_York"
    assert view.local_clock("", NOW) == "time zone unknown"
    assert view.local_clock("Nowhere/Atlantis", NOW) == "unknown zone Nowhere/Atlantis"
    assert view.clip("a  long\ntext", 8) == "a long …"
    assert view.clip("short", 8) == "short"
