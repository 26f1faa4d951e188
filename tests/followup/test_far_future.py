"""A promise due at the end of the calendar (an interaction may say so: its due times are not
bound by this service's horizon) is tracked like any other: paused, read, listed, counted,
resumed and cancelled, with its escalation planned, and never an internal error or a dead
letter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from google.protobuf import duration_pb2

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from crm.interactions.v1 import interaction_pb2
from followup.domain.model import LATEST
from promesa.bus import INTERACTIONS_STREAM
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.followup.conftest import RunningFollowup
from tests.followup.test_events import promises_of, publish, recorded
from tests.support import bearer, eventually

END_OF_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
# The longest Duration there is: ten thousand years.
LONGEST = duration_pb2.Duration(seconds=315_576_000_000)


async def test_a_promise_due_at_the_end_of_the_calendar_can_be_paused_read_and_closed(
    followup_service: RunningFollowup,
) -> None:
    svc, stub, meta = followup_service, followup_service.stub, bearer()
    contact = new_id()
    # Given an interaction that records a promise due on 9999-12-31 and one due within the
    # longest span a Duration holds (the supervisors of CRM_TEAM_SUPERVISORS escalate both),
    due_at_the_end = interaction_pb2.PromiseMade(
        id=new_id(), text="Keep the warranty", due_at=to_timestamp(END_OF_TIME)
    )
    within_forever = interaction_pb2.PromiseMade(
        id=new_id(), text="Keep the spare parts", due_within=LONGEST
    )
    event = recorded(
        svc,
        contact,
        interaction_pb2.INTERACTION_TYPE_REQUEST,
        [due_at_the_end, within_forever],
    )
    await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", event)
    found = await eventually(lambda: promises_of(svc, contact))
    assert {p.id for p in found} == {due_at_the_end.id, within_forever.id}
    forever = next(p for p in found if p.id == within_forever.id)
    assert forever.due_at.ToDatetime(tzinfo=UTC) == LATEST

    # When it is paused and time passes,
    paused = (
        await stub.PausePromise(
            followup_pb.PausePromiseRequest(id=due_at_the_end.id, reason="waiting for parts"),
            metadata=meta,
        )
    ).promise
    assert paused.status == promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER
    svc.clock.advance(timedelta(days=3))

    # then every read answers,
    got = await stub.GetPromise(followup_pb.GetPromiseRequest(id=paused.id), metadata=meta)
    assert not got.promise.overdue
    assert got.promise.paused_duration.ToTimedelta() == timedelta(days=3)
    listed = await stub.ListPromises(followup_pb.ListPromisesRequest(), metadata=meta)
    assert paused.id in [p.id for p in listed.promises]
    overdue = await stub.ListPromises(
        followup_pb.ListPromisesRequest(overdue_only=True), metadata=meta
    )
    assert list(overdue.promises) == []
    [stats] = (
        await stub.GetPromiseStats(followup_pb.GetPromiseStatsRequest(), metadata=meta)
    ).stats
    assert (stats.made, stats.overdue_now) == (2, 0)

    # and it resumes at the end of the calendar, and is cancelled.
    resumed = (
        await stub.ResumePromise(
            followup_pb.ResumePromiseRequest(id=paused.id, reason="parts arrived"), metadata=meta
        )
    ).promise
    assert resumed.status == promise_pb2.PROMISE_STATUS_OPEN
    assert resumed.due_at.ToDatetime(tzinfo=UTC) == LATEST
    deliveries = await stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=resumed.id), metadata=meta
    )
    escalation = reminder_pb2.REMINDER_KIND_ESCALATION
    assert escalation in {d.kind for d in deliveries.reminder_deliveries}
    assert await svc.scheduler.tick() == 0  # nothing of it falls due this side of year 10000
    cancelled = (
        await stub.CancelPromise(
            followup_pb.CancelPromiseRequest(id=resumed.id, reason="warranty void"),
            metadata=meta,
        )
    ).promise
    assert cancelled.status == promise_pb2.PROMISE_STATUS_CANCELLED
    assert await svc.store.dead_letters() == []


async def test_a_complaint_recorded_at_the_end_of_the_calendar_gets_its_resolution_promise(
    followup_service: RunningFollowup,
) -> None:
    """Due 48 h after the interaction: held at the calendar's end, not dead-lettered."""
    svc = followup_service
    contact = new_id()
    complaint = recorded(svc, contact, interaction_pb2.INTERACTION_TYPE_COMPLAINT)
    complaint.occurred_at.FromDatetime(END_OF_TIME)
    complaint.agent_id, complaint.actor = "agent-ana", ""
    await publish(svc, INTERACTIONS_STREAM, "crm.interactions.recorded", complaint)

    [promise] = await eventually(lambda: promises_of(svc, contact))

    assert promise.kind == promise_pb2.PROMISE_KIND_RESOLVE_COMPLAINT
    assert promise.due_at.ToDatetime(tzinfo=UTC) == LATEST
    assert promise.created_by == "agent-ana"  # no actor in the event: its agent
    assert await svc.store.dead_letters() == []
