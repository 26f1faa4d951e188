"""Times as an agent types them, in the profile's zone; and back as a countdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from promesa_cli.when import local, parse_when, relative

MADRID = ZoneInfo("Europe/Madrid")
WEDNESDAY = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)  # 11:00 in Madrid


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("2h", datetime(2026, 12, 2, 12, 0, tzinfo=UTC)),
        ("in 1d4h", datetime(2026, 12, 3, 14, 0, tzinfo=UTC)),
        ("+90m", datetime(2026, 12, 2, 11, 30, tzinfo=UTC)),
        ("today 17:00", datetime(2026, 12, 2, 16, 0, tzinfo=UTC)),
        ("tomorrow", datetime(2026, 12, 3, 8, 0, tzinfo=UTC)),  # 9:00 by default
        ("fri 12:00", datetime(2026, 12, 4, 11, 0, tzinfo=UTC)),
        ("Wednesday 8", datetime(2026, 12, 9, 7, 0, tzinfo=UTC)),  # today's is next week's
        ("2026-12-24 12:00", datetime(2026, 12, 24, 11, 0, tzinfo=UTC)),
        ("2026-12-24T12:00Z", datetime(2026, 12, 24, 12, 0, tzinfo=UTC)),
    ],
)
def test_times_are_read_in_the_agents_zone(typed: str, meant: datetime) -> None:
    assert parse_when(typed, MADRID, WEDNESDAY) == meant


@pytest.mark.parametrize("typed", ["soon", "friyay", "today 25:00", "2h later"])
def test_what_is_not_a_time_says_what_is(typed: str) -> None:
    with pytest.raises(ValueError, match=typed):
        parse_when(typed, MADRID, WEDNESDAY)


def test_a_due_time_reads_as_a_countdown_and_a_local_time() -> None:
    assert relative(WEDNESDAY + timedelta(hours=3, minutes=20), WEDNESDAY) == "in 3h 20m"
    assert relative(WEDNESDAY - timedelta(days=2, hours=1), WEDNESDAY) == "2d 1h ago"
    assert local(WEDNESDAY + timedelta(days=1), MADRID, WEDNESDAY) == "tomorrow 11:00"
