"""The promise ledger over real gRPC, with its events on a real JetStream."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from nats.aio.msg import Msg

from crm.followup.v1 import events_pb2 as followup_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from promesa.bus import FOLLOWUP_STREAM
from promesa.protos import to_timestamp
from tests.followup.conftest import RunningFollowup, make
from tests.support import SUPERVISOR_TOKEN, bearer, events_about, eventually

OPEN = promise_pb2.PROMISE_STATUS_OPEN
WAITING = promise_pb2.PROMISE_STATUS_WAITING_ON_CUSTOMER
KEPT = promise_pb2.PROMISE_STATUS_KEPT
CANCELLED = promise_pb2.PROMISE_STATUS_CANCELLED


async def keep(
    svc: RunningFollowup, p: promise_pb2.Promise, note: str = "refund sent"
) -> promise_pb2.Promise:
    reply = await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(
            id=p.id, etag=p.etag, evidence=promise_pb2.Evidence(note=note)
        ),
        metadata=bearer(),
    )
    return reply.promise


async def test_a_promise_is_made_with_owner_due_time_and_history_and_announced(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    made = await make(svc)

    assert made.id and made.etag == "1"
    assert made.status == OPEN and not made.overdue
    assert made.created_by == "agent-ana"
    assert [h.action for h in made.history] == [promise_pb2.HISTORY_ACTION_CREATED]

    async def announced() -> list[Msg]:
        return await events_about(svc.bus.js, FOLLOWUP_STREAM.name, made.id)

    [msg] = await eventually(announced)
    assert msg.subject == "crm.followup.promise_made.contact-1"  # ends with the contact
    headers = msg.headers or {}
    assert headers["ce-source"] == "promesa/followup"
    assert headers["ce-type"] == "crm.followup.v1.PromiseMade"
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    event = followup_events.PromiseMade.FromString(msg.data)
    assert event.owner_id == "agent-ana" and event.due_at == made.due_at


async def test_a_retried_create_makes_no_second_promise(followup_service: RunningFollowup) -> None:
    first = await make(followup_service, request_id="req-1")
    again = await make(followup_service, request_id="req-1")
    assert again.id == first.id
    page = await followup_service.stub.ListPromises(
        followup_pb.ListPromisesRequest(contact_id="contact-1"), metadata=bearer()
    )
    assert [p.id for p in page.promises] == [first.id]


async def test_a_promise_kept_before_due_is_on_time_and_after_due_is_late(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    early = await make(svc, due_in=timedelta(hours=2))
    late = await make(svc, due_in=timedelta(hours=1))
    svc.clock.advance(timedelta(minutes=90))

    kept_early = await keep(svc, early)
    kept_late = await keep(svc, late)

    assert kept_early.status == KEPT and kept_early.kept_on_time
    assert kept_early.evidence.note == "refund sent"
    assert kept_late.status == KEPT and not kept_late.kept_on_time
    assert kept_late.history[-1].action == promise_pb2.HISTORY_ACTION_KEPT
    # a retry of the same keep returns the kept promise
    assert (await keep(svc, kept_early)).etag == kept_early.etag


async def test_pausing_stops_the_clock_and_resuming_moves_the_due_time_by_the_pause(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    made = await make(svc, due_in=timedelta(hours=4))
    svc.clock.advance(timedelta(hours=1))
    paused = (
        await svc.stub.PausePromise(
            followup_pb.PausePromiseRequest(id=made.id, reason="waiting for the invoice"),
            metadata=bearer(),
        )
    ).promise
    assert paused.status == WAITING and paused.HasField("paused_at")

    svc.clock.advance(timedelta(hours=10))  # past the original due time, but paused
    during = (
        await svc.stub.GetPromise(followup_pb.GetPromiseRequest(id=made.id), metadata=bearer())
    ).promise
    assert not during.overdue
    assert during.paused_duration.ToTimedelta() == timedelta(hours=10)

    resumed = (
        await svc.stub.ResumePromise(
            followup_pb.ResumePromiseRequest(id=made.id, reason="invoice arrived"),
            metadata=bearer(),
        )
    ).promise
    assert resumed.status == OPEN
    assert resumed.due_at.ToDatetime() - made.due_at.ToDatetime() == timedelta(hours=10)
    assert not resumed.overdue

    svc.clock.advance(timedelta(hours=1))
    kept = await keep(svc, resumed)
    assert kept.kept_on_time
    stats = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_ALL),
        metadata=bearer(),
    )
    # made → kept took 12 h on the wall clock, 10 h of which were waiting on the customer
    assert stats.stats[0].median_time_to_keep.ToTimedelta() == timedelta(hours=2)


async def test_a_handoff_names_both_owners_and_is_counted(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    made = await make(svc)
    reply = await svc.stub.ReassignPromise(
        followup_pb.ReassignPromiseRequest(
            id=made.id, etag=made.etag, new_owner_id="agent-bea", reason="Ana is on leave"
        ),
        metadata=bearer(),
    )
    moved = reply.promise
    assert moved.owner_id == "agent-bea" and moved.team == "madrid"
    assert moved.handoff_count == 1
    entry = moved.history[-1]
    assert (entry.from_value, entry.to_value, entry.reason) == (
        "agent-ana",
        "agent-bea",
        "Ana is on leave",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the old etag is stale now
        await svc.stub.ReassignPromise(
            followup_pb.ReassignPromiseRequest(
                id=made.id, etag=made.etag, new_owner_id="agent-cid", reason="again"
            ),
            metadata=bearer(SUPERVISOR_TOKEN),  # Ana no longer owns it; her supervisor acts
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED


async def test_renegotiation_moves_the_due_time_and_is_counted(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    made = await make(svc, due_in=timedelta(hours=3))
    new_due = svc.clock.now() + timedelta(days=2)
    moved = (
        await svc.stub.RenegotiateDueDate(
            followup_pb.RenegotiateDueDateRequest(
                id=made.id,
                new_due_at=to_timestamp(new_due),
                reason="parts arrive on Thursday",
                customer_agreed=True,
            ),
            metadata=bearer(),
        )
    ).promise
    assert moved.due_at.ToDatetime().replace(tzinfo=new_due.tzinfo) == new_due
    assert moved.renegotiation_count == 1
    stats = await svc.stub.GetPromiseStats(followup_pb.GetPromiseStatsRequest(), metadata=bearer())
    assert stats.stats[0].key == "all" and stats.stats[0].renegotiated == 1


async def test_cancel_and_customer_confirmation(followup_service: RunningFollowup) -> None:
    svc = followup_service
    dropped = await make(svc)
    cancelled = (
        await svc.stub.CancelPromise(
            followup_pb.CancelPromiseRequest(id=dropped.id, reason="customer withdrew"),
            metadata=bearer(),
        )
    ).promise
    assert cancelled.status == CANCELLED and cancelled.cancel_reason == "customer withdrew"

    kept = await keep(svc, await make(svc))
    confirmed = (
        await svc.stub.ConfirmByCustomer(
            followup_pb.ConfirmByCustomerRequest(id=kept.id, satisfaction=4), metadata=bearer()
        )
    ).promise
    assert confirmed.customer_confirmed and confirmed.satisfaction == 4
    [row] = (
        await svc.stub.GetPromiseStats(followup_pb.GetPromiseStatsRequest(), metadata=bearer())
    ).stats
    assert (row.made, row.kept, row.cancelled) == (2, 1, 1)
    assert row.kept_on_time_percent == 100.0 and row.mean_satisfaction == 4.0


async def test_list_filters_and_pages_earliest_due_first(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    made = [await make(svc, due_in=timedelta(hours=h)) for h in (5, 1, 3, 2, 4)]
    other = await make(svc, owner_id="agent-bea", due_in=timedelta(hours=6))
    ids: list[str] = []
    token = ""
    while True:
        page = await svc.stub.ListPromises(
            followup_pb.ListPromisesRequest(owner_id="agent-ana", page_size=2, page_token=token),
            metadata=bearer(),
        )
        ids += [p.id for p in page.promises]
        token = page.next_page_token
        if not token:
            break
    by_due = sorted(made, key=lambda p: p.due_at.ToDatetime())
    assert ids == [p.id for p in by_due]

    svc.clock.advance(timedelta(hours=2, minutes=30))
    overdue = await svc.stub.ListPromises(
        followup_pb.ListPromisesRequest(overdue_only=True), metadata=bearer()
    )
    assert [p.id for p in overdue.promises] == [p.id for p in by_due[:2]]
    assert all(p.overdue for p in overdue.promises)
    team = await svc.stub.ListPromises(
        followup_pb.ListPromisesRequest(owner_id="agent-bea", team="madrid"), metadata=bearer()
    )
    assert [p.id for p in team.promises] == [other.id]


async def test_stats_are_grouped_by_owner_team_and_channel(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    await make(svc)
    await make(
        svc,
        owner_id="agent-bea",
        team="lisbon",
        channel=promise_pb2.CHANNEL_EMAIL,
        token=SUPERVISOR_TOKEN,  # another team's promise: made by a supervisor of every team
    )
    reply = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_CHANNEL),
        metadata=bearer(SUPERVISOR_TOKEN),
    )
    assert [(r.key, r.made) for r in reply.stats] == [("CHANNEL_EMAIL", 1), ("CHANNEL_PHONE", 1)]
    by_team = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_TEAM),
        metadata=bearer(SUPERVISOR_TOKEN),  # across teams
    )
    assert [r.key for r in by_team.stats] == ["lisbon", "madrid"]
    by_owner = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(
            grouping=followup_pb.STATS_GROUPING_OWNER,
            window_start_at=to_timestamp(svc.clock.now() + timedelta(minutes=1)),
        ),
        metadata=bearer(),
    )
    assert list(by_owner.stats) == []
