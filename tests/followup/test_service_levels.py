"""Service levels in the follow-up service: the policy a promise is made under, its reminders,
warning and escalation ladder, owners reminded in their team's working hours, targets counted in
business time, and what callers see (target, time left, the policy's name, statistics by policy,
breaches). Real gRPC, NATS and SQLite, a policy file in the test's directory, an injected clock.

The team "madrid" works 09:00-18:00 Monday to Thursday and 09:00-14:00 on Friday (Europe/Madrid,
UTC+1 in March 2026, before the change to summer time on the 29th).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from crm.contacts.v1 import contact_pb2
from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from crm.interactions.v1 import interaction_pb2
from devtools.natsserver import NatsServer
from followup.adapters.event_codec import reminders_of
from followup.settings import FollowupSettings
from promesa.bus import CONTACTS_STREAM, FOLLOWUP_STREAM, INTERACTIONS_STREAM
from promesa.clock import ManualClock
from promesa.ids import new_id
from promesa.settings import ConfigError, Env
from tests.followup.conftest import RunningFollowup, followup_env, make, start_followup
from tests.followup.test_events import promises_of, publish, recorded
from tests.support import (
    SUPERVISOR_TOKEN,
    bearer,
    eventually,
    field_violations,
    stream_messages,
)

HOUR = timedelta(hours=1)
POLICY_FILE = """\
teams:
  madrid:
    time_zone: Europe/Madrid
    hours: {mon: "09:00-18:00", tue: "09:00-18:00", wed: "09:00-18:00", thu: "09:00-18:00",
            fri: "09:00-14:00"}
    holidays: {country: ES, subdivision: MD}
    closed: [2026-12-24]
    levels: {supervisor: sup-sam, manager: lead-lou}
  "*":
    time_zone: UTC
    levels: {supervisor: sup-default}
policies:
  - name: urgent-complaints
    match: {kind: [resolve_complaint], priority: [urgent, high],
            relationship: [external_customer]}
    target: 4h
    business_time: true
    reminders: [2h, 30m]
    warn_at: 75%
    escalate: [{after: 4h, to: supervisor}, {after: 24h, to: manager}]
    escalate_every: 24h
  - name: urgent-calls
    match: {kind: [call_back], priority: [urgent]}
    reminders: [3h]
    escalate: [{after: 1h, to: supervisor}, {after: 2h, to: manager}]
    escalate_every: 6h
default:
  reminders: [24h, 1h]
"""


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


TUESDAY_9 = utc(2026, 3, 10, 8)  # Tuesday 10 March 2026, 09:00 in Madrid
FRIDAY_13 = utc(2026, 3, 13, 12)  # Friday 13 March 2026, 13:00 in Madrid (an hour to closing)


@pytest.fixture
async def levelled(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RunningFollowup]:
    policy = tmp_path / "service-levels.yaml"
    policy.write_text(POLICY_FILE, encoding="utf-8")
    env = followup_env(nats_server, tmp_path, CRM_SERVICE_LEVELS=str(policy))
    svc = await start_followup(nats_server, env, ManualClock(TUESDAY_9))
    yield svc
    await svc.stop()


async def get(svc: RunningFollowup, promise_id: str) -> promise_pb2.Promise:
    reply = await svc.stub.GetPromise(
        followup_pb.GetPromiseRequest(id=promise_id), metadata=bearer(SUPERVISOR_TOKEN)
    )
    return reply.promise


async def planned(svc: RunningFollowup, promise_id: str) -> set[tuple[str, datetime, str]]:
    """The reminders planned and not sent yet: (kind, when, to whom)."""
    page = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=promise_id), metadata=bearer()
    )
    return {
        (
            reminder_pb2.ReminderKind.Name(d.kind).removeprefix("REMINDER_KIND_"),
            d.scheduled_at.ToDatetime(UTC),
            d.recipient_id,
        )
        for d in page.reminder_deliveries
        if not d.attempts
    }


async def sent_at(svc: RunningFollowup, at: datetime) -> list[tuple[str, str]]:
    """Moves the clock to `at` and sends what falls due: (kind, recipient) of each."""
    before = len(svc.recorder.sent)
    svc.clock.set(at - timedelta(seconds=1))
    assert await svc.scheduler.tick() == 0, f"something went out before {at}"
    svc.clock.set(at)
    await svc.scheduler.tick()
    return [(kind, who) for _, kind, who in svc.recorder.sent[before:]]


async def test_a_promise_is_made_under_the_policy_that_matches_it_and_shows_where_it_stands(
    levelled: RunningFollowup,
) -> None:
    svc = levelled
    urgent = await make(svc, due_in=8 * HOUR, priority=promise_pb2.PRIORITY_URGENT)
    normal = await make(svc, due_in=8 * HOUR, priority=promise_pb2.PRIORITY_NORMAL)
    assert urgent.service_level == "urgent-calls"
    assert normal.service_level == "default"

    stored = await get(svc, urgent.id)
    assert stored.service_level == "urgent-calls"
    assert stored.target_at == stored.due_at
    # Wall time: that policy does not count business time.
    assert stored.business_time_left.ToTimedelta() == 8 * HOUR

    # Paused, the clock stops: the time left stays as it was when the pause began.
    svc.clock.advance(2 * HOUR)
    await svc.stub.PausePromise(
        followup_pb.PausePromiseRequest(id=urgent.id, reason="waiting for the invoice"),
        metadata=bearer(),
    )
    svc.clock.advance(5 * HOUR)
    paused = await get(svc, urgent.id)
    assert paused.business_time_left.ToTimedelta() == 6 * HOUR
    assert paused.target_at.ToDatetime(UTC) == TUESDAY_9 + 13 * HOUR

    # Overdue: negative. Kept: no time left to show.
    svc.clock.advance(20 * HOUR)
    late = await get(svc, normal.id)
    assert late.overdue and late.business_time_left.ToTimedelta() == -19 * HOUR
    kept = await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(id=normal.id, evidence=promise_pb2.Evidence(note="done")),
        metadata=bearer(),
    )
    assert not kept.promise.HasField("business_time_left")
    assert kept.promise.service_level == "default"


async def test_reminder_offsets_and_the_escalation_ladder_follow_the_policy(
    levelled: RunningFollowup,
) -> None:
    svc = levelled
    due = TUESDAY_9 + 8 * HOUR  # 17:00 in Madrid, the team is open
    p = await make(svc, due_in=8 * HOUR, priority=promise_pb2.PRIORITY_URGENT)

    assert await planned(svc, p.id) == {
        ("BEFORE_DUE", due - 3 * HOUR, "agent-ana"),
        ("AT_DUE", due, "agent-ana"),
        ("ESCALATION", due + HOUR, "sup-sam"),
    }
    page = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=p.id), metadata=bearer()
    )
    [before] = [
        d for d in page.reminder_deliveries if d.kind == reminder_pb2.REMINDER_KIND_BEFORE_DUE
    ]
    assert before.lead.ToTimedelta() == 3 * HOUR

    # Each step once, to the user who holds its level in the team; then the last step again
    # every 6 hours while the promise is overdue.
    assert await sent_at(svc, due - 3 * HOUR) == [("BEFORE_DUE", "agent-ana")]
    # The reminder itself says how long before due it is for, and under which policy.
    await svc.runtime.parts.relay.flush()

    async def on_nats() -> list[reminder_pb2.Reminder]:
        msgs = await stream_messages(svc.bus.js, FOLLOWUP_STREAM.name, reminders_of("agent-ana"))
        return [reminder_pb2.Reminder.FromString(m.data) for m in msgs]

    [reminder] = await eventually(on_nats)
    assert reminder.kind == reminder_pb2.REMINDER_KIND_BEFORE_DUE
    assert (reminder.lead.ToTimedelta(), reminder.service_level) == (3 * HOUR, "urgent-calls")

    assert await sent_at(svc, due) == [("AT_DUE", "agent-ana")]
    assert await sent_at(svc, due + HOUR) == [("ESCALATION", "sup-sam")]
    assert await sent_at(svc, due + 2 * HOUR) == [("ESCALATION", "lead-lou")]
    assert await sent_at(svc, due + 8 * HOUR) == [("ESCALATION", "lead-lou")]
    assert await sent_at(svc, due + 14 * HOUR) == [("ESCALATION", "lead-lou")]

    escalated = [h for h in (await get(svc, p.id)).history if h.reason == "overdue"]
    assert [h.to_value for h in escalated] == ["sup-sam", "lead-lou", "lead-lou", "lead-lou"]


async def test_a_promise_overdue_past_two_steps_and_never_escalated_goes_to_the_higher_level(
    levelled: RunningFollowup,
) -> None:
    svc = levelled
    p = await make(svc, due_in=HOUR, priority=promise_pb2.PRIORITY_URGENT)
    # The service was down past both steps: the at-due reminder notes it overdue, and the
    # escalation goes once, at once, to the highest level reached.
    svc.clock.advance(4 * HOUR)
    await svc.stub.ReassignPromise(
        followup_pb.ReassignPromiseRequest(
            id=p.id, new_owner_id="agent-bea", new_team="madrid", reason="holiday"
        ),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    now = svc.clock.now()
    assert ("ESCALATION", now, "lead-lou") in await planned(svc, p.id)


async def test_owners_are_reminded_in_their_teams_working_hours_unless_that_is_too_late(
    levelled: RunningFollowup,
) -> None:
    svc = levelled
    svc.clock.set(utc(2026, 3, 13, 9))  # Friday 10:00 in Madrid
    monday_10 = utc(2026, 3, 16, 9)
    p = await make(svc, due_in=monday_10 - svc.clock.now())
    # A day before is Sunday: moved to Monday's opening, where the hour-before reminder is
    # already: the owner gets one, the one nearer to due. Escalations are not moved.
    assert await planned(svc, p.id) == {
        ("BEFORE_DUE_1H", utc(2026, 3, 16, 8), "agent-ana"),
        ("AT_DUE", monday_10, "agent-ana"),
        ("ESCALATION", monday_10 + 4 * HOUR, "sup-sam"),
    }
    # Due on Saturday noon: the hour before is Saturday, and the next opening (Monday) would be
    # after due, so it stays; the day before is Friday noon, open, and stays too.
    saturday_noon = utc(2026, 3, 14, 11)
    q = await make(svc, due_in=saturday_noon - svc.clock.now())
    assert await planned(svc, q.id) == {
        ("BEFORE_DUE_24H", saturday_noon - 24 * HOUR, "agent-ana"),
        ("BEFORE_DUE_1H", saturday_noon - HOUR, "agent-ana"),
        ("AT_DUE", saturday_noon, "agent-ana"),
        ("ESCALATION", saturday_noon + 4 * HOUR, "sup-sam"),
    }


async def a_contact(svc: RunningFollowup, relationship: contact_pb2.Relationship.ValueType) -> str:
    contact = new_id()
    profile = contacts_events.ContactProfile(
        contact_id=contact, owner_id="agent-ana", team="madrid", relationship=relationship
    )
    await publish(
        svc,
        CONTACTS_STREAM,
        "crm.contacts.created",
        contacts_events.ContactCreated(profile=profile),
    )
    await eventually(lambda: svc.store.profile(contact))
    return contact


async def test_a_complaints_target_warning_and_ladder_count_the_teams_business_time(
    levelled: RunningFollowup,
) -> None:
    svc = levelled
    svc.clock.set(FRIDAY_13)
    customer = await a_contact(svc, contact_pb2.RELATIONSHIP_EXTERNAL_CUSTOMER)
    colleague = await a_contact(svc, contact_pb2.RELATIONSHIP_INTERNAL_COLLEAGUE)
    for contact in (customer, colleague):
        event = recorded(svc, contact, interaction_pb2.INTERACTION_TYPE_COMPLAINT)
        await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", event)
    [complaint] = await eventually(lambda: promises_of(svc, customer))
    [internal] = await eventually(lambda: promises_of(svc, colleague))

    # An internal colleague's complaint is not the customers' policy: 48 h of wall time.
    assert internal.service_level == "default"
    assert internal.due_at.ToDatetime(UTC) == FRIDAY_13 + 48 * HOUR
    await svc.stub.CancelPromise(
        followup_pb.CancelPromiseRequest(id=internal.id, reason="handled by their manager"),
        metadata=bearer(SUPERVISOR_TOKEN),
    )

    # 4 h of business time: Friday 13:00-14:00, then Monday 09:00-12:00 (11:00 UTC).
    due = utc(2026, 3, 16, 11)
    assert complaint.service_level == "urgent-complaints"
    assert complaint.due_at.ToDatetime(UTC) == due
    assert complaint.business_time_left.ToTimedelta() == 4 * HOUR
    svc.clock.set(utc(2026, 3, 14, 10))  # Saturday: closed, the time left does not run
    assert (await get(svc, complaint.id)).business_time_left.ToTimedelta() == 3 * HOUR

    # Reminders 2 h and 30 min of business time before due, the warning at 75% of the time
    # (3 h in: Monday 11:00 in Madrid); escalations 4 h of business time after due (Monday
    # 16:00), then 24 h (Monday 6 h, Tuesday 9 h, Wednesday 9 h: closing time Wednesday).
    assert await planned(svc, complaint.id) == {
        ("BEFORE_DUE", utc(2026, 3, 16, 9), "agent-ana"),
        ("WARNING", utc(2026, 3, 16, 10), "agent-ana"),
        ("BEFORE_DUE", utc(2026, 3, 16, 10, 30), "agent-ana"),
        ("AT_DUE", due, "agent-ana"),
        ("ESCALATION", utc(2026, 3, 16, 15), "sup-sam"),
    }
    assert await sent_at(svc, utc(2026, 3, 16, 9)) == [("BEFORE_DUE", "agent-ana")]
    assert await sent_at(svc, utc(2026, 3, 16, 10)) == [("WARNING", "agent-ana")]
    assert await sent_at(svc, utc(2026, 3, 16, 10, 30)) == [("BEFORE_DUE", "agent-ana")]
    assert await sent_at(svc, due) == [("AT_DUE", "agent-ana")]
    assert await sent_at(svc, utc(2026, 3, 16, 15)) == [("ESCALATION", "sup-sam")]
    assert await sent_at(svc, utc(2026, 3, 18, 17)) == [("ESCALATION", "lead-lou")]
    # The last step again after 24 h of business time: Thursday 9 h, Friday 5 h, Monday 9 h,
    # Tuesday 09:00-10:00 in Madrid.
    assert await sent_at(svc, utc(2026, 3, 24, 9)) == [("ESCALATION", "lead-lou")]

    late = await get(svc, complaint.id)
    # Overdue since Monday 12:00: 6 + 9 + 9 + 9 + 5 + 9 + 1 h of business time.
    assert late.business_time_left.ToTimedelta() == -48 * HOUR


async def test_statistics_by_policy_and_the_breaches_of_a_window(
    levelled: RunningFollowup,
) -> None:
    svc = levelled
    sup = bearer(SUPERVISOR_TOKEN)
    overdue = await make(svc, due_in=HOUR, priority=promise_pb2.PRIORITY_URGENT)
    late = await make(svc, due_in=2 * HOUR, priority=promise_pb2.PRIORITY_NORMAL)
    on_time = await make(svc, due_in=10 * HOUR, priority=promise_pb2.PRIORITY_NORMAL)
    svc.clock.advance(3 * HOUR)
    for p in (late, on_time):
        await svc.stub.KeepPromise(
            followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
            metadata=bearer(),
        )

    stats = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_POLICY),
        metadata=sup,
    )
    rows = {s.key: s for s in stats.stats}
    assert set(rows) == {"default", "urgent-calls"}
    assert (rows["default"].made, rows["default"].kept, rows["default"].breaches) == (2, 2, 1)
    assert rows["default"].kept_on_time_percent == 50.0
    # Tuesday 09:00 to 12:00 in Madrid, all of it working hours.
    assert rows["default"].median_business_time_to_keep.ToTimedelta() == 3 * HOUR
    assert (rows["urgent-calls"].overdue_now, rows["urgent-calls"].breaches) == (1, 1)

    first = await svc.stub.ListServiceLevelBreaches(
        followup_pb.ListServiceLevelBreachesRequest(page_size=1), metadata=sup
    )
    assert [b.promise_id for b in first.breaches] == [overdue.id]
    [b] = first.breaches
    assert (b.service_level, b.late_by.ToTimedelta(), b.HasField("kept_at")) == (
        "urgent-calls",
        2 * HOUR,
        False,
    )
    second = await svc.stub.ListServiceLevelBreaches(
        followup_pb.ListServiceLevelBreachesRequest(page_size=1, page_token=first.next_page_token),
        metadata=sup,
    )
    assert [(b.promise_id, b.late_by.ToTimedelta()) for b in second.breaches] == [(late.id, HOUR)]
    assert second.next_page_token == ""

    # A window of due times that holds only the promise kept on time: no breach.
    window = await svc.stub.ListServiceLevelBreaches(
        followup_pb.ListServiceLevelBreachesRequest(window_start_at=on_time.due_at), metadata=sup
    )
    assert list(window.breaches) == []


async def test_bad_breach_queries_are_invalid_arguments(levelled: RunningFollowup) -> None:
    svc = levelled
    p = await make(svc)
    for request, field in [
        (
            followup_pb.ListServiceLevelBreachesRequest(
                window_start_at=p.due_at, window_end_at=p.created_at
            ),
            "window_end_at",
        ),
        (followup_pb.ListServiceLevelBreachesRequest(page_token="not-a-token"), "page_token"),
        (followup_pb.ListServiceLevelBreachesRequest(page_size=-1), "page_size"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await svc.stub.ListServiceLevelBreaches(request, metadata=bearer(SUPERVISOR_TOKEN))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(refused.value)


def test_a_wrong_policy_file_refuses_to_boot_naming_its_line(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    policy = tmp_path / "service-levels.yaml"
    policy.write_text(POLICY_FILE.replace("[resolve_complaint]", "[resolve_complaints]"))
    env = followup_env(nats_server, tmp_path, CRM_SERVICE_LEVELS=str(policy))
    with pytest.raises(ConfigError, match=r"service-levels.yaml.*line 14"):
        FollowupSettings.from_env(Env(env))
