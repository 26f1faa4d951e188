"""Bad input gets INVALID_ARGUMENT with a field violation naming the field, and writes nothing;
unknown ids get NOT_FOUND."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
import pytest

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from promesa.protos import to_timestamp
from tests.followup.conftest import RunningFollowup, a_promise, make
from tests.support import bearer, field_violations

Call = Callable[[RunningFollowup, promise_pb2.Promise], Awaitable[object]]


async def _create(svc: RunningFollowup, promise: promise_pb2.Promise) -> object:
    return await svc.stub.CreatePromise(
        followup_pb.CreatePromiseRequest(promise=promise), metadata=bearer()
    )


CREATE_CASES: dict[str, tuple[dict[str, object], str]] = {
    "due time in the past": ({"due_in_minutes": -1}, "promise.due_at"),
    "no due time": ({}, "promise.due_at"),
    "no text": ({"text": "  "}, "promise.text"),
    "no owner": ({"owner_id": ""}, "promise.owner_id"),
    "no contact": ({"contact_id": ""}, "promise.contact_id"),
    "unknown kind": ({"kind": 42}, "promise.kind"),
    "no kind": ({"kind": 0}, "promise.kind"),
    "unknown channel": ({"channel": 99}, "promise.channel"),
    "unknown earlier promise": ({"follows_promise_id": "nope"}, "promise.follows_promise_id"),
    "over-long text": ({"text": "x" * 2001}, "promise.text"),
}


@pytest.mark.parametrize("case", CREATE_CASES, ids=list(CREATE_CASES))
async def test_a_bad_promise_is_refused_and_nothing_is_written(
    followup_service: RunningFollowup, case: str
) -> None:
    svc = followup_service
    overrides, field = dict(CREATE_CASES[case][0]), CREATE_CASES[case][1]
    due_in = timedelta(minutes=int(str(overrides.pop("due_in_minutes", 60))))
    promise = a_promise(svc.clock.now() + due_in, **overrides)
    if case == "no due time":
        promise.ClearField("due_at")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _create(svc, promise)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    assert await svc.store.outbox_backlog() == 0
    page = await svc.stub.ListPromises(followup_pb.ListPromisesRequest(), metadata=bearer())
    assert list(page.promises) == []


async def refused(call: Awaitable[object]) -> tuple[grpc.StatusCode, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    code = caught.value.code()
    return code, field_violations(caught.value) if code == grpc.StatusCode.INVALID_ARGUMENT else {}


async def test_lifecycle_calls_without_what_they_need_are_refused(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    stub = svc.stub
    p = await make(svc)
    meta = bearer()
    later = to_timestamp(svc.clock.now() + timedelta(days=3))
    cases: list[tuple[Awaitable[object], str]] = [
        (stub.KeepPromise(followup_pb.KeepPromiseRequest(id=p.id), metadata=meta), "evidence"),
        (
            stub.RenegotiateDueDate(
                followup_pb.RenegotiateDueDateRequest(
                    id=p.id, new_due_at=later, customer_agreed=True
                ),
                metadata=meta,
            ),
            "reason",
        ),
        (
            stub.RenegotiateDueDate(
                followup_pb.RenegotiateDueDateRequest(id=p.id, new_due_at=later, reason="late"),
                metadata=meta,
            ),
            "customer_agreed",
        ),
        (
            stub.RenegotiateDueDate(
                followup_pb.RenegotiateDueDateRequest(
                    id=p.id,
                    new_due_at=to_timestamp(svc.clock.now()),
                    reason="x",
                    customer_agreed=True,
                ),
                metadata=meta,
            ),
            "new_due_at",
        ),
        (
            stub.ReassignPromise(
                followup_pb.ReassignPromiseRequest(id=p.id, new_owner_id="agent-ana", reason="x"),
                metadata=meta,
            ),
            "new_owner_id",
        ),
        (
            stub.ReassignPromise(
                followup_pb.ReassignPromiseRequest(id=p.id, new_owner_id="agent-bea"),
                metadata=meta,
            ),
            "reason",
        ),
        (
            stub.ConfirmByCustomer(
                followup_pb.ConfirmByCustomerRequest(id=p.id, satisfaction=5), metadata=meta
            ),
            "id",
        ),
        (
            stub.ConfirmByCustomer(
                followup_pb.ConfirmByCustomerRequest(id=p.id, satisfaction=6), metadata=meta
            ),
            "satisfaction",
        ),
        (stub.PausePromise(followup_pb.PausePromiseRequest(id=p.id), metadata=meta), "reason"),
        (stub.CancelPromise(followup_pb.CancelPromiseRequest(id=p.id), metadata=meta), "reason"),
        (
            stub.ListPromises(followup_pb.ListPromisesRequest(page_token="garbage"), metadata=meta),
            "page_token",
        ),
        (
            stub.ListPromises(
                followup_pb.ListPromisesRequest(due_after=later, due_before=p.due_at),
                metadata=meta,
            ),
            "due_before",
        ),
        (
            stub.GetPromiseStats(
                followup_pb.GetPromiseStatsRequest(window_start_at=later, window_end_at=p.due_at),
                metadata=meta,
            ),
            "window_end_at",
        ),
        (
            stub.ListReminderDeliveries(
                followup_pb.ListReminderDeliveriesRequest(page_token="%%%"), metadata=meta
            ),
            "page_token",
        ),
    ]
    for call, field in cases:
        code, violations = await refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violations, (field, violations)
    unchanged = await stub.GetPromise(followup_pb.GetPromiseRequest(id=p.id), metadata=meta)
    assert unchanged.promise.etag == p.etag


async def test_unknown_ids_are_not_found_and_closed_promises_refuse_changes(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    code, _ = await refused(
        svc.stub.GetPromise(followup_pb.GetPromiseRequest(id="nope"), metadata=bearer())
    )
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await refused(
        svc.stub.CancelPromise(
            followup_pb.CancelPromiseRequest(id="nope", reason="x"), metadata=bearer()
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    p = await make(svc)
    await svc.stub.CancelPromise(
        followup_pb.CancelPromiseRequest(id=p.id, reason="withdrawn"), metadata=bearer()
    )
    code, _ = await refused(
        svc.stub.KeepPromise(
            followup_pb.KeepPromiseRequest(id=p.id, evidence=promise_pb2.Evidence(note="done")),
            metadata=bearer(),
        )
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, _ = await refused(svc.stub.GetPromise(followup_pb.GetPromiseRequest(), metadata=bearer()))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = await refused(svc.stub.GetPromise(followup_pb.GetPromiseRequest(id=p.id)))
    assert code == grpc.StatusCode.UNAUTHENTICATED
