"""Bounds on the instants a caller gives: a time something happened lies between 1970 and now
(plus a device's drift), a due time between now and the horizon, so nothing stored can later
overflow the calendar when a time is derived from it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from promesa.errors import FieldViolation, InvalidArgumentError, Violations
from promesa.instants import DEFAULT_HORIZON, EARLIEST, check_due, check_past

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
HORIZON = DEFAULT_HORIZON


def violations(v: Violations) -> tuple[FieldViolation, ...]:
    try:
        v.raise_if_any()
    except InvalidArgumentError as error:
        return error.violations
    return ()


# --- a time something happened ---------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [EARLIEST, NOW - timedelta(days=365 * 50), NOW, NOW + SKEW],
    ids=["1970", "decades-ago", "now", "within-the-skew"],
)
def test_a_past_instant_from_1970_to_now_plus_the_skew_is_accepted(at: datetime) -> None:
    v = Violations()

    check_past(v, "interaction.occurred_at", at, NOW, SKEW)

    assert not v


@pytest.mark.parametrize(
    "at",
    [EARLIEST - timedelta(microseconds=1), datetime(1, 1, 1, tzinfo=UTC)],
    ids=["just-before-1970", "year-1"],
)
def test_a_past_instant_before_1970_is_refused(at: datetime) -> None:
    v = Violations()

    check_past(v, "interaction.occurred_at", at, NOW, SKEW)

    assert violations(v) == (
        FieldViolation("interaction.occurred_at", "must not be before 1970-01-01"),
    )


@pytest.mark.parametrize(
    "at",
    [NOW + SKEW + timedelta(microseconds=1), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)],
    ids=["just-past-the-skew", "calendar-end"],
)
def test_a_past_instant_beyond_the_skew_is_refused_with_the_skew_in_words(at: datetime) -> None:
    v = Violations()

    check_past(v, "interaction.occurred_at", at, NOW, SKEW)

    assert violations(v) == (
        FieldViolation("interaction.occurred_at", "must not be more than 5 minutes in the future"),
    )


def test_a_skew_of_days_is_said_in_days() -> None:
    v = Violations()

    check_past(v, "occurred_at", NOW + timedelta(days=3), NOW, timedelta(days=2))

    assert violations(v) == (
        FieldViolation("occurred_at", "must not be more than 2 days in the future"),
    )


# --- a due time -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "due",
    [NOW + timedelta(microseconds=1), NOW + timedelta(days=30), NOW + HORIZON],
    ids=["just-after-now", "next-month", "at-the-horizon"],
)
def test_a_due_time_after_now_and_within_the_horizon_is_accepted(due: datetime) -> None:
    v = Violations()

    check_due(v, "promise.due_at", due, NOW, HORIZON)

    assert not v


@pytest.mark.parametrize(
    "due",
    [NOW, NOW - timedelta(hours=1), datetime(1, 1, 1, tzinfo=UTC)],
    ids=["now", "an-hour-ago", "year-1"],
)
def test_a_due_time_not_after_now_is_refused_as_past(due: datetime) -> None:
    v = Violations()

    check_due(v, "promise.due_at", due, NOW, HORIZON)

    assert violations(v) == (
        FieldViolation("promise.due_at", "is in the past: a promise must be due later"),
    )


@pytest.mark.parametrize(
    "due",
    [NOW + HORIZON + timedelta(microseconds=1), datetime(9999, 12, 31, tzinfo=UTC)],
    ids=["just-past-the-horizon", "calendar-end"],
)
def test_a_due_time_past_the_horizon_is_refused_with_the_horizon_in_words(due: datetime) -> None:
    v = Violations()

    check_due(v, "promise.due_at", due, NOW, HORIZON)

    assert violations(v) == (FieldViolation("promise.due_at", "must be within 1826 days from now"),)


def test_the_default_horizon_is_five_years() -> None:
    assert HORIZON.days == 1826
