"""The reminder plan under service levels, on the domain alone: today's defaults unchanged, the
escalation ladder step by step, and business time across DST changes and a year's end."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from followup.adapters.policy_file import parse_service_levels
from followup.domain.calendars import BusinessCalendar
from followup.domain.model import Priority, Promise, PromiseKind
from followup.domain.reminders import ReminderKind, ReminderPolicy, plan
from followup.domain.service_levels import (
    EscalationStep,
    ServiceLevel,
    ServiceLevels,
    TeamSetup,
)
from followup.usecases.planning import PromisePlanner

HOUR = timedelta(hours=1)
T0 = datetime(2026, 3, 10, 8, tzinfo=UTC)


def ids() -> str:
    return "r"


def a_promise(due_at: datetime, **fields: object) -> Promise:
    values: dict[str, object] = {
        "id": "p-1",
        "contact_id": "c-1",
        "text": "Call back",
        "kind": PromiseKind.CALL_BACK,
        "owner_id": "ana",
        "team": "night",
        "created_by": "ana",
        "due_at": due_at,
        "created_at": T0,
    }
    values.update(fields)
    return Promise(**values)  # type: ignore[arg-type]


def shape(p: Promise, now: datetime, policy: ReminderPolicy, supervisor: str) -> set[object]:
    return {
        (r.kind, r.scheduled_at, r.recipient_id, r.lead)
        for r in plan(p, now, policy, supervisor, ids)
    }


@pytest.mark.parametrize("due_in", [30 * timedelta(minutes=1), 2 * HOUR, 30 * HOUR, 400 * HOUR])
@pytest.mark.parametrize("now_after", [timedelta(0), 5 * HOUR, 60 * HOUR])
def test_the_defaults_plan_what_was_planned_before_service_levels(
    due_in: timedelta, now_after: timedelta
) -> None:
    before = ReminderPolicy()
    levels = ServiceLevels.defaults(
        escalate_after=4 * HOUR, escalate_every=24 * HOUR, supervisors={"*": "sup"}
    )
    after = ReminderPolicy(levels=levels)
    p = a_promise(T0 + due_in)
    now = T0 + now_after
    assert shape(p, now, after, "") == shape(p, now, before, "sup")


LADDER = ServiceLevel(
    "ladder",
    reminders=(3 * HOUR,),
    escalations=(EscalationStep(HOUR, "supervisor"), EscalationStep(2 * HOUR, "manager")),
    escalate_every=6 * HOUR,
)


def night_shift(zone: str) -> BusinessCalendar:
    """Open 00:00-06:00 local every day: on a DST change that span is 5 or 7 real hours."""
    return BusinessCalendar("night", ZoneInfo(zone), {d: ((time(0), time(6)),) for d in range(7)})


def with_levels(level: ServiceLevel, calendar: BusinessCalendar | None = None) -> ReminderPolicy:
    team = TeamSetup("night", levels={"supervisor": "sup", "manager": "boss"})
    if calendar is not None:
        team = TeamSetup("night", calendar, team.levels)
    return ReminderPolicy(levels=ServiceLevels((level,), ServiceLevel("default"), {"night": team}))


def test_each_step_of_the_ladder_once_then_the_last_again_to_its_level() -> None:
    policy = with_levels(LADDER)
    due = T0 + 8 * HOUR
    p = a_promise(due, service_level="ladder")
    assert shape(p, T0, policy, "") == {
        (ReminderKind.BEFORE_DUE, due - 3 * HOUR, "ana", 3 * HOUR),
        (ReminderKind.AT_DUE, due, "ana", None),
        (ReminderKind.ESCALATION, due + HOUR, "sup", None),
    }
    [first] = [r for r in plan(p, T0, policy, "", ids) if r.kind is ReminderKind.ESCALATION]
    steps = [first]
    for _ in range(3):
        following = policy.following(p, steps[-1], "r")
        assert following is not None
        steps.append(following)
    assert [(r.scheduled_at - due, r.recipient_id) for r in steps] == [
        (HOUR, "sup"),
        (2 * HOUR, "boss"),
        (8 * HOUR, "boss"),
        (14 * HOUR, "boss"),
    ]


def test_a_step_whose_level_nobody_holds_is_skipped() -> None:
    level = ServiceLevel(
        "ladder",
        escalations=(EscalationStep(HOUR, "supervisor"), EscalationStep(2 * HOUR, "director")),
    )
    p = a_promise(T0 + HOUR, service_level="ladder")
    escalations = [
        (r.scheduled_at, r.recipient_id)
        for r in plan(p, T0, with_levels(level), "", ids)
        if r.kind is ReminderKind.ESCALATION
    ]
    assert escalations == [(T0 + 2 * HOUR, "sup")]


@pytest.mark.parametrize(
    ("zone", "due", "expected"),
    [
        # Europe/Madrid falls back on Sunday 25 October 2026: 00:00-06:00 is 7 real hours,
        # so 6 h of business time after 00:00 (22:00 UTC the day before) end at 04:00 UTC.
        (
            "Europe/Madrid",
            datetime(2026, 10, 24, 22, tzinfo=UTC),
            datetime(2026, 10, 25, 4, tzinfo=UTC),
        ),
        # Madrid springs forward on Sunday 29 March: 5 real hours, the sixth is Monday's first.
        (
            "Europe/Madrid",
            datetime(2026, 3, 28, 23, tzinfo=UTC),
            datetime(2026, 3, 29, 23, tzinfo=UTC),
        ),
        # New York springs forward on Sunday 8 March: 00:00-06:00 EST/EDT is 05:00-10:00 UTC;
        # the sixth hour is Monday 00:00-01:00 EDT.
        (
            "America/New_York",
            datetime(2026, 3, 8, 5, tzinfo=UTC),
            datetime(2026, 3, 9, 5, tzinfo=UTC),
        ),
        # New York falls back on Sunday 1 November: 7 real hours from 04:00 UTC.
        (
            "America/New_York",
            datetime(2026, 11, 1, 4, tzinfo=UTC),
            datetime(2026, 11, 1, 10, tzinfo=UTC),
        ),
    ],
)
def test_a_business_time_escalation_across_a_dst_change_counts_the_hours_really_open(
    zone: str, due: datetime, expected: datetime
) -> None:
    level = ServiceLevel(
        "night-ops",
        business_time=True,
        reminders=(),
        escalations=(EscalationStep(6 * HOUR, "supervisor"),),
    )
    policy = with_levels(level, night_shift(zone))
    p = a_promise(due, service_level="night-ops", created_at=due - HOUR)
    [escalation] = [
        r for r in plan(p, due - HOUR, policy, "", ids) if r.kind is ReminderKind.ESCALATION
    ]
    assert escalation.scheduled_at == expected


def test_a_target_in_business_time_skips_the_new_years_holiday_and_the_weekend() -> None:
    levels = parse_service_levels(
        """\
teams:
  madrid:
    time_zone: Europe/Madrid
    hours: {mon: "09:00-18:00", tue: "09:00-18:00", wed: "09:00-18:00", thu: "09:00-18:00",
            fri: "09:00-14:00"}
    holidays: {country: ES, subdivision: MD}
    levels: {supervisor: sup}
policies:
  - name: complaints
    match: {kind: [resolve_complaint]}
    target: 4h
    business_time: true
""",
        source="service-levels.yaml",
    )
    planner = PromisePlanner(ReminderPolicy(levels=levels), lambda team: "")
    # Thursday 31 December 2026, 17:00 in Madrid: an hour that day; Friday 1 January is a
    # holiday, then the weekend; three hours on Monday 4 January.
    start = datetime(2026, 12, 31, 16, tzinfo=UTC)
    due = planner.target(
        PromiseKind.RESOLVE_COMPLAINT, Priority.HIGH, None, None, "madrid", start, 48 * HOUR
    )
    assert due == datetime(2027, 1, 4, 11, tzinfo=UTC)
    # A kind no policy covers: the default policy, on wall time, with the default target.
    assert (
        planner.target(
            PromiseKind.WIN_BACK, Priority.NORMAL, None, None, "madrid", start, 48 * HOUR
        )
        == start + 48 * HOUR
    )


def test_the_level_the_lead_and_the_relationship_survive_both_stores_documents() -> None:
    from followup.adapters import documents
    from followup.domain.contacts import ContactPreferences
    from followup.domain.reminders import delivery
    from followup.domain.service_levels import Relationship

    p = a_promise(T0 + HOUR, service_level="ladder")
    assert documents.promise_from(documents.promise_doc(p)) == p  # MongoDB
    row = {**documents.promise_row(p), "id": p.id, "contact_id": p.contact_id}
    assert documents.promise_from_row(row).service_level == "ladder"  # SQLite
    r = delivery(p, ReminderKind.BEFORE_DUE, T0, "ana", ReminderPolicy(), "r-1", lead=3 * HOUR)
    assert documents.delivery_from(documents.delivery_doc(r)) == r
    assert documents.delivery_from_row(documents.delivery_row(r)).lead == 3 * HOUR
    prefs = ContactPreferences("c-1", relationship=Relationship.INTERNAL_COLLEAGUE)
    assert documents.profile_from(documents.profile_doc(prefs)) == prefs
