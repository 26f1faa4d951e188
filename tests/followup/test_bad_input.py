"""Bad input gets INVALID_ARGUMENT with a field violation naming the field (every one at once),
and writes nothing; unknown ids get NOT_FOUND; nothing a caller sends is ever INTERNAL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

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


async def test_every_unreadable_field_of_a_new_promise_is_named_in_one_answer(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    promise = a_promise(svc.clock.now(), kind=99)
    promise.due_at.CopyFrom(timestamp_pb2.Timestamp(seconds=253402300800))  # year 10000

    code, violations = await refused(_create(svc, promise))

    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert {"promise.due_at", "promise.kind"} <= violations.keys()


async def test_a_retried_create_returns_the_first_promise_even_after_its_due_time(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    request = followup_pb.CreatePromiseRequest(
        promise=a_promise(svc.clock.now() + timedelta(hours=1)), request_id="req-late"
    )
    first = await svc.stub.CreatePromise(request, metadata=bearer())

    svc.clock.advance(timedelta(hours=2))  # the due time has passed when the retry arrives
    again = await svc.stub.CreatePromise(request, metadata=bearer())

    assert again.promise.id == first.promise.id
    page = await svc.stub.ListPromises(followup_pb.ListPromisesRequest(), metadata=bearer())
    assert [p.id for p in page.promises] == [first.promise.id]


async def test_a_due_time_beyond_the_horizon_is_refused(followup_service: RunningFollowup) -> None:
    svc = followup_service
    end_of_time = datetime(9999, 12, 31, tzinfo=UTC)
    horizon = timedelta(days=1826)  # CRM_PROMISE_HORIZON_DAYS' default

    code, violations = await refused(_create(svc, a_promise(end_of_time)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "promise.due_at" in violations
    code, violations = await refused(
        _create(svc, a_promise(svc.clock.now() + horizon + timedelta(seconds=1)))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "promise.due_at" in violations
    within = await make(svc, due_in=horizon)

    for new_due in (end_of_time, svc.clock.now() + horizon + timedelta(seconds=1)):
        code, violations = await refused(
            svc.stub.RenegotiateDueDate(
                followup_pb.RenegotiateDueDateRequest(
                    id=within.id,
                    new_due_at=to_timestamp(new_due),
                    reason="the customer is in no hurry",
                    customer_agreed=True,
                ),
                metadata=bearer(),
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "new_due_at" in violations


NUL = "\x00"
ESC = "\x1b"


async def test_text_with_control_characters_is_refused_naming_the_field(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    stub, meta = svc.stub, bearer()
    soon = svc.clock.now() + timedelta(hours=5)
    p = await make(svc)
    creates: list[tuple[dict[str, object], str]] = [
        ({"text": f"Call back{NUL}"}, "promise.text"),
        ({"text": "Call back\nwith the reference"}, "promise.text"),
        ({"contact_id": f"contact{ESC}[2J"}, "promise.contact_id"),
        ({"owner_id": f"agent{NUL}"}, "promise.owner_id"),
        ({"team": f"mad{NUL}rid"}, "promise.team"),
        ({"follows_promise_id": f"{p.id}{NUL}"}, "promise.follows_promise_id"),
        ({"source_interaction_id": f"i{NUL}"}, "promise.source_interaction_id"),
    ]
    cases: list[tuple[Awaitable[object], str]] = [
        (
            stub.CreatePromise(
                followup_pb.CreatePromiseRequest(promise=a_promise(soon, **fields)), metadata=meta
            ),
            field,
        )
        for fields, field in creates
    ]
    cases += [
        (
            stub.CreatePromise(
                followup_pb.CreatePromiseRequest(promise=a_promise(soon), request_id=f"r{NUL}"),
                metadata=meta,
            ),
            "request_id",
        ),
        (stub.GetPromise(followup_pb.GetPromiseRequest(id=f"{p.id}{NUL}"), metadata=meta), "id"),
        (
            stub.KeepPromise(
                followup_pb.KeepPromiseRequest(
                    id=p.id, evidence=promise_pb2.Evidence(note=f"done{NUL}")
                ),
                metadata=meta,
            ),
            "evidence.note",
        ),
        (
            stub.KeepPromise(
                followup_pb.KeepPromiseRequest(
                    id=p.id, evidence=promise_pb2.Evidence(interaction_id=f"i{ESC}")
                ),
                metadata=meta,
            ),
            "evidence.interaction_id",
        ),
        (
            stub.ReassignPromise(
                followup_pb.ReassignPromiseRequest(
                    id=p.id, new_owner_id=f"agent-bea{NUL}", reason="leave"
                ),
                metadata=meta,
            ),
            "new_owner_id",
        ),
        (
            stub.ReassignPromise(
                followup_pb.ReassignPromiseRequest(
                    id=p.id, new_owner_id="agent-bea", new_team=f"{ESC}", reason="leave"
                ),
                metadata=meta,
            ),
            "new_team",
        ),
        (
            stub.PausePromise(
                followup_pb.PausePromiseRequest(id=p.id, reason=f"wait{NUL}"), metadata=meta
            ),
            "reason",
        ),
        (
            stub.ResumePromise(
                followup_pb.ResumePromiseRequest(id=p.id, reason=f"back{ESC}"), metadata=meta
            ),
            "reason",
        ),
        (
            stub.CancelPromise(
                followup_pb.CancelPromiseRequest(id=p.id, reason=f"no{NUL}"), metadata=meta
            ),
            "reason",
        ),
        (
            stub.RenegotiateDueDate(
                followup_pb.RenegotiateDueDateRequest(
                    id=p.id,
                    new_due_at=to_timestamp(soon),
                    reason=f"late{NUL}",
                    customer_agreed=True,
                ),
                metadata=meta,
            ),
            "reason",
        ),
        (
            stub.ListPromises(followup_pb.ListPromisesRequest(owner_id=f"a{NUL}"), metadata=meta),
            "owner_id",
        ),
        (
            stub.ListReminderDeliveries(
                followup_pb.ListReminderDeliveriesRequest(promise_id=f"{p.id}{NUL}"),
                metadata=meta,
            ),
            "promise_id",
        ),
    ]
    for call, field in cases:
        code, violations = await refused(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, field
        assert "control characters" in violations.get(field, ""), (field, violations)

    unchanged = await stub.GetPromise(followup_pb.GetPromiseRequest(id=p.id), metadata=meta)
    assert unchanged.promise.etag == p.etag
    page = await stub.ListPromises(followup_pb.ListPromisesRequest(), metadata=meta)
    assert [q.id for q in page.promises] == [p.id]

    # A note of what was done is prose: its line breaks are kept.
    kept = await stub.KeepPromise(
        followup_pb.KeepPromiseRequest(
            id=p.id, evidence=promise_pb2.Evidence(note="Refund sent.\nCustomer told.")
        ),
        metadata=meta,
    )
    assert kept.promise.evidence.note == "Refund sent.\nCustomer told."


# The ends of the Timestamp range, and just past them.
EXTREMES = {
    "year 1": timestamp_pb2.Timestamp(seconds=-62135596800),
    "9999-12-31T23:59:59": timestamp_pb2.Timestamp(seconds=253402300799),
    "before year 1": timestamp_pb2.Timestamp(seconds=-62135596801),
    "year 10000": timestamp_pb2.Timestamp(seconds=253402300800),
    "negative nanos": timestamp_pb2.Timestamp(seconds=0, nanos=-1),
}
# Every follow-up RPC field that takes a Timestamp, and the path its violation is named by.
TIMESTAMP_FIELDS = [
    "CreatePromise.promise.due_at",
    "RenegotiateDueDate.new_due_at",
    "ListPromises.due_after",
    "ListPromises.due_before",
    "GetPromiseStats.window_start_at",
    "GetPromiseStats.window_end_at",
]


@pytest.mark.parametrize("value", EXTREMES, ids=list(EXTREMES))
@pytest.mark.parametrize("rpc_field", TIMESTAMP_FIELDS)
async def test_the_extremes_of_the_timestamp_range_are_answered_never_with_an_internal_error(
    followup_service: RunningFollowup, rpc_field: str, value: str
) -> None:
    svc = followup_service
    stub, meta = svc.stub, bearer()
    ts = EXTREMES[value]
    method, _, path = rpc_field.partition(".")
    call: Awaitable[object]
    match method:
        case "CreatePromise":
            promise = a_promise(svc.clock.now())
            promise.due_at.CopyFrom(ts)
            call = stub.CreatePromise(
                followup_pb.CreatePromiseRequest(promise=promise), metadata=meta
            )
        case "RenegotiateDueDate":
            p = await make(svc)
            call = stub.RenegotiateDueDate(
                followup_pb.RenegotiateDueDateRequest(
                    id=p.id, new_due_at=ts, reason="moved", customer_agreed=True
                ),
                metadata=meta,
            )
        case "ListPromises":
            await make(svc)
            request = followup_pb.ListPromisesRequest()
            getattr(request, path).CopyFrom(ts)
            call = stub.ListPromises(request, metadata=meta)
        case _:
            await make(svc)
            stats = followup_pb.GetPromiseStatsRequest()
            getattr(stats, path).CopyFrom(ts)
            call = stub.GetPromiseStats(stats, metadata=meta)

    code, violations = await answered(call)

    if code == grpc.StatusCode.OK:
        assert value in ("year 1", "9999-12-31T23:59:59"), "an unreadable time was accepted"
    else:
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert path in violations


async def answered(call: Awaitable[object]) -> tuple[grpc.StatusCode, dict[str, str]]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        code = exc.code()
        return code, field_violations(exc) if code == grpc.StatusCode.INVALID_ARGUMENT else {}
    return grpc.StatusCode.OK, {}
