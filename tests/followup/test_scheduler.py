"""The reminder scheduler as the service runs it: asleep until the next reminder falls due (the
store's index says when), woken early by a commit in this process that plans an earlier one,
and looking again at least every CRM_SCHEDULER_INTERVAL_SECONDS for what other replicas
planned. Time is a manual clock: the scheduler wakes when the test moves it, never by polling.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest

from crm.followup.v1 import followup_service_pb2 as followup_pb
from devtools.natsserver import NatsServer
from promesa.clock import ManualClock
from tests.followup.conftest import (
    RecordingNotifier,
    RunningFollowup,
    followup_env,
    make,
    start_followup,
)
from tests.support import bearer, eventually

# Longer than any step a test takes: only the next due time and the alarm wake the scheduler.
NEVER = str(timedelta(days=30).total_seconds())


def scheduling_env(nats: NatsServer, data: Path, **extra: str) -> dict[str, str]:
    settings = {"CRM_SCHEDULER_ENABLED": "true", "CRM_SCHEDULER_INTERVAL_SECONDS": NEVER}
    return followup_env(nats, data, **{**settings, **extra})


@pytest.fixture
async def scheduled(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[RunningFollowup]:
    svc = await start_followup(nats_server, scheduling_env(nats_server, tmp_path), ManualClock())
    yield svc
    await svc.stop()


def sent(
    recorder: RecordingNotifier, count: int
) -> Callable[[], Awaitable[list[tuple[str, str, str]] | None]]:
    """A probe: the reminders the recorder was handed, once there are `count`."""

    async def probe() -> list[tuple[str, str, str]] | None:
        return recorder.sent if len(recorder.sent) >= count else None

    return probe


async def test_each_reminder_goes_out_when_the_clock_reaches_it(
    scheduled: RunningFollowup,
) -> None:
    svc, clock = scheduled, scheduled.clock
    # Given a promise due in 48 hours (reminders 24 h and 1 h before, and at due),
    await make(svc, due_in=timedelta(hours=48))
    due = clock.now() + timedelta(hours=48)

    for n, (at, kind) in enumerate(
        [
            (due - timedelta(hours=24), "BEFORE_DUE_24H"),
            (due - timedelta(hours=1), "BEFORE_DUE_1H"),
            (due, "AT_DUE"),
        ],
        start=1,
    ):
        # when the clock reaches each one, the sleeping scheduler sends it.
        clock.set(at)
        found = await eventually(sent(svc.recorder, n), timeout=10)
        assert len(found) == n and found[-1][1] == kind


async def test_a_commit_that_plans_an_earlier_reminder_wakes_the_sleeping_scheduler(
    scheduled: RunningFollowup,
) -> None:
    svc, clock = scheduled, scheduled.clock
    # Given a scheduler asleep until a reminder nine days ahead,
    await make(svc, due_in=timedelta(days=10))
    # when a promise due in two hours is made (its first reminder an hour from now)
    soon = await make(svc, due_in=timedelta(hours=2))
    clock.advance(timedelta(hours=1))

    # then that reminder goes out at its time, not nine days later.
    [(_, kind, _)] = await eventually(sent(svc.recorder, 1), timeout=10)
    assert kind == "BEFORE_DUE_1H"
    deliveries = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=soon.id), metadata=bearer()
    )
    assert sum(1 for d in deliveries.reminder_deliveries if d.attempts) == 1


async def test_a_restarted_scheduler_finds_the_next_due_time_in_the_store(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    clock = ManualClock()
    env = scheduling_env(nats_server, tmp_path)
    first = await start_followup(nats_server, env, clock)
    try:
        await make(first, due_in=timedelta(hours=48))
    finally:
        await first.stop()

    # When the service comes back (no commit has told it anything),
    again = await start_followup(nats_server, env, clock)
    try:
        clock.advance(timedelta(hours=24))

        # the first reminder still goes out at its time.
        [(_, kind, _)] = await eventually(sent(again.recorder, 1), timeout=10)
        assert kind == "BEFORE_DUE_24H"
    finally:
        await again.stop()


async def test_a_reminder_another_replica_planned_is_found_within_the_interval(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    clock = ManualClock()
    env = scheduling_env(nats_server, tmp_path, CRM_SCHEDULER_INTERVAL_SECONDS="60")
    scheduling = await start_followup(nats_server, env, clock)
    other = await start_followup(
        nats_server, {**env, "CRM_SCHEDULER_ENABLED": "false"}, clock, recorder=scheduling.recorder
    )
    try:
        # Given a promise due in 30 s made through a replica that does not schedule (no
        # commit in the scheduling replica tells it),
        await make(other, due_in=timedelta(seconds=30))

        # when its fallback interval has passed,
        clock.advance(timedelta(seconds=60))

        # the scheduling replica has sent the reminder at due.
        [(_, kind, _)] = await eventually(sent(scheduling.recorder, 1), timeout=10)
        assert kind == "AT_DUE"
    finally:
        await other.stop()
        await scheduling.stop()


async def test_a_failed_send_is_tried_again_when_its_retry_falls_due(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    clock = ManualClock()
    recorder = RecordingNotifier(failing=True)
    env = scheduling_env(nats_server, tmp_path, CRM_REMINDER_RETRY_SECONDS="30")
    svc = await start_followup(nats_server, env, clock, recorder=recorder)
    try:
        p = await make(svc, due_in=timedelta(hours=48))
        # Given the first reminder failed at its time (the receiver was down),
        clock.advance(timedelta(hours=24))

        async def failed_once() -> bool:
            reply = await svc.stub.ListReminderDeliveries(
                followup_pb.ListReminderDeliveriesRequest(promise_id=p.id), metadata=bearer()
            )
            return any(
                not a.success and a.notifier == recorder.name
                for d in reply.reminder_deliveries
                for a in d.attempts
            )

        await eventually(failed_once, timeout=10)
        recorder.failing = False

        # when its retry falls due, the scheduler (woken by the failure's commit) tries again.
        clock.advance(timedelta(seconds=30))
        [(_, kind, _)] = await eventually(sent(recorder, 1), timeout=10)
        assert kind == "BEFORE_DUE_24H"
    finally:
        await svc.stop()
