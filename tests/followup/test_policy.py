"""Nothing the policy promised gets lost: the runaround escalation survives later changes, a
purchase keeps the win-back, nothing more goes out for a promise no longer open, and a
customer confirms once. The real service: gRPC, SQLite, NATS, an injected clock."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from crm.contacts.v1 import events_pb2 as contacts_events
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2, reminder_pb2
from promesa.bus import CONTACTS_STREAM
from promesa.ids import new_id
from promesa.protos import to_timestamp
from tests.followup.conftest import RunningFollowup, make
from tests.followup.test_events import promises_of, publish
from tests.support import SUPERVISOR_TOKEN, bearer, eventually

ESCALATED = promise_pb2.HISTORY_ACTION_ESCALATED
SUPERVISOR = bearer(SUPERVISOR_TOKEN)


async def get(svc: RunningFollowup, promise_id: str) -> promise_pb2.Promise:
    reply = await svc.stub.GetPromise(
        followup_pb.GetPromiseRequest(id=promise_id), metadata=SUPERVISOR
    )
    return reply.promise


async def deliveries(svc: RunningFollowup, promise_id: str) -> list[reminder_pb2.ReminderDelivery]:
    listed = await svc.stub.ListReminderDeliveries(
        followup_pb.ListReminderDeliveriesRequest(promise_id=promise_id), metadata=SUPERVISOR
    )
    return list(listed.reminder_deliveries)


async def hand_over(svc: RunningFollowup, promise_id: str, *owners: str) -> None:
    for owner in owners:
        await svc.stub.ReassignPromise(
            followup_pb.ReassignPromiseRequest(id=promise_id, new_owner_id=owner, reason="shift"),
            metadata=SUPERVISOR,
        )


# --- the runaround escalation ---------------------------------------------------------------


async def test_a_runaround_escalation_is_sent_though_the_promise_was_paused_and_moved_since(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    p = await make(svc, due_in=timedelta(days=5))
    await hand_over(svc, p.id, "agent-bea", "agent-cid", "agent-dan")  # CRM_MAX_HANDOFFS=2

    # Before the scheduler runs, the promise is paused and its due time moved: both replan it.
    await svc.stub.PausePromise(
        followup_pb.PausePromiseRequest(id=p.id, reason="waiting for photos"), metadata=SUPERVISOR
    )
    await svc.stub.RenegotiateDueDate(
        followup_pb.RenegotiateDueDateRequest(
            id=p.id,
            new_due_at=to_timestamp(svc.clock.now() + timedelta(days=6)),
            reason="photos take longer",
            customer_agreed=True,
        ),
        metadata=SUPERVISOR,
    )

    await svc.scheduler.drain()  # the escalation, and the customer's notice of the new date
    assert [sent[1:] for sent in svc.recorder.sent] == [("ESCALATION", "sup-sam")]
    escalated = await get(svc, p.id)
    assert [h.action for h in escalated.history].count(ESCALATED) == 1
    assert escalated.history[-1].reason == "handed over 3 times"
    assert await svc.scheduler.tick() == 0


async def test_a_runaround_escalation_once_due_is_sent_even_when_the_promise_is_kept_first(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    p = await make(svc, due_in=timedelta(days=5))
    await hand_over(svc, p.id, "agent-bea", "agent-cid", "agent-dan")
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
        metadata=SUPERVISOR,
    )

    assert await svc.scheduler.tick() == 1

    assert [kind for _, kind, _ in svc.recorder.sent] == ["ESCALATION"]
    [escalation] = [d for d in await deliveries(svc, p.id) if d.attempts]
    assert escalation.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED
    assert (await get(svc, p.id)).status == promise_pb2.PROMISE_STATUS_KEPT


# --- a purchase keeps the win-back ------------------------------------------------------------


async def test_a_customer_who_buys_again_has_their_win_back_kept_by_the_purchase(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    contact = new_id()
    lapsed = contacts_events.ContactBecameInactive(
        contact_id=contact, owner_id="agent-ana", team="madrid"
    )
    await publish(svc, CONTACTS_STREAM, "crm.contacts.became_inactive", lapsed)
    [win_back] = await eventually(lambda: promises_of(svc, contact))
    purchase_at = svc.clock.now() + timedelta(days=1)
    svc.clock.set(purchase_at + timedelta(minutes=5))

    bought = contacts_events.ContactBecameActive(
        contact_id=contact,
        owner_id="agent-ana",
        team="madrid",
        last_purchase_at=to_timestamp(purchase_at),
        occurred_at=to_timestamp(svc.clock.now()),
    )
    await publish(svc, CONTACTS_STREAM, "crm.contacts.became_active", bought)

    async def kept() -> promise_pb2.Promise | None:
        [p] = await promises_of(svc, contact)
        return p if p.status == promise_pb2.PROMISE_STATUS_KEPT else None

    closed = await eventually(kept)
    assert closed.id == win_back.id and closed.kept_on_time
    assert "bought again" in closed.evidence.note
    assert closed.history[-1].actor == "followup/followup-contacts"
    # Nothing left to escalate.
    svc.clock.advance(timedelta(days=30))
    assert await svc.scheduler.tick() == 0
    assert svc.recorder.sent == []


# --- nothing more for a promise no longer open ------------------------------------------------


@pytest.mark.parametrize("closing", ["keep", "cancel"])
async def test_retries_stop_once_the_promise_is_closed_and_the_delivery_says_why(
    followup_service: RunningFollowup, closing: str
) -> None:
    svc, clock = followup_service, followup_service.clock
    p = await make(svc, due_in=timedelta(minutes=30))
    svc.recorder.failing = True  # the webhook-like notifier is down at due time
    clock.advance(timedelta(minutes=30))
    assert await svc.scheduler.tick() == 1
    svc.recorder.failing = False

    if closing == "keep":
        await svc.stub.KeepPromise(
            followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
            metadata=SUPERVISOR,
        )
    else:
        await svc.stub.CancelPromise(
            followup_pb.CancelPromiseRequest(id=p.id, reason="no longer needed"),
            metadata=SUPERVISOR,
        )
    clock.advance(timedelta(minutes=5))  # past the retry's time
    assert await svc.scheduler.tick() == 1
    assert await svc.scheduler.tick() == 0

    assert svc.recorder.sent == []  # the due-now reminder never went out again
    [at_due] = [d for d in await deliveries(svc, p.id) if d.attempts]
    assert at_due.kind == reminder_pb2.REMINDER_KIND_AT_DUE
    assert at_due.outcome == reminder_pb2.DELIVERY_OUTCOME_DELIVERED  # on NATS, at due time
    assert not at_due.HasField("next_attempt_at")
    stop = at_due.attempts[-1]
    status = "kept" if closing == "keep" else "cancelled"
    assert (stop.notifier, stop.success) == ("scheduler", False)
    assert stop.error == f"not sent: the promise is {status}"


async def test_a_due_now_reminder_never_goes_out_for_a_kept_promise(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    p = await make(svc, due_in=timedelta(minutes=30))
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
        metadata=SUPERVISOR,
    )

    clock.advance(timedelta(days=2))

    assert await svc.scheduler.drain() == 0
    assert svc.recorder.sent == []
    assert await deliveries(svc, p.id) == []


# --- the customer's confirmation ----------------------------------------------------------------


async def test_a_customer_confirms_a_kept_promise_once(followup_service: RunningFollowup) -> None:
    svc = followup_service
    p = await make(svc)
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
        metadata=SUPERVISOR,
    )
    first = await svc.stub.ConfirmByCustomer(
        followup_pb.ConfirmByCustomerRequest(id=p.id, satisfaction=5), metadata=SUPERVISOR
    )
    assert first.promise.customer_confirmed and first.promise.satisfaction == 5

    with pytest.raises(grpc.aio.AioRpcError) as second:
        await svc.stub.ConfirmByCustomer(
            followup_pb.ConfirmByCustomerRequest(id=p.id, satisfaction=1), metadata=SUPERVISOR
        )

    assert second.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "confirmed by the customer already" in (second.value.details() or "")
    after = await get(svc, p.id)
    assert after.satisfaction == 5 and after.etag == first.promise.etag
