"""Bad input gets INVALID_ARGUMENT with a field violation naming the field, and writes nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.ports import TimelineFilter
from promesa.clock import ManualClock
from promesa.pagination import encode_token
from promesa.protos import to_timestamp
from tests.interactions.conftest import (
    RunningInteractions,
    a_promise,
    a_purchase,
    an_interaction,
    known_contact,
    record,
)
from tests.support import bearer, field_violations

# The clock of `shared_interactions` starts here and these tests never move it.
NOW = ManualClock().now()
Overrides = dict[str, object]
UNKNOWN_KIND = interaction_pb2.PromiseKind.ValueType(77)
UNKNOWN_TYPE = interaction_pb2.InteractionType.ValueType(55)


def purchase(amount: int, currency: str) -> interaction_pb2.PurchaseDetails:
    return interaction_pb2.PurchaseDetails(amount_minor=amount, currency_code=currency)


def due_in(delta: timedelta) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromTimedelta(delta)
    return d


RECORD_CASES: dict[str, tuple[Callable[[str], interaction_pb2.Interaction], str]] = {
    "unknown type": (lambda c: an_interaction(c, type=42), "interaction.type"),
    "unknown channel": (lambda c: an_interaction(c, channel=99), "interaction.channel"),
    "unknown direction": (lambda c: an_interaction(c, direction=7), "interaction.direction"),
    "missing type": (lambda c: an_interaction(c, type=0), "interaction.type"),
    "missing channel": (lambda c: an_interaction(c, channel=0), "interaction.channel"),
    "occurred in the future": (
        lambda c: an_interaction(c, occurred_at=to_timestamp(NOW + timedelta(minutes=6))),
        "interaction.occurred_at",
    ),
    "invalid timestamp": (
        lambda c: an_interaction(c, occurred_at=timestamp_pb2.Timestamp(seconds=10**13)),
        "interaction.occurred_at",
    ),
    "purchase without an amount": (
        lambda c: a_purchase(c, purchase=purchase(0, "EUR")),
        "interaction.purchase.amount_minor",
    ),
    "purchase with a negative amount": (
        lambda c: a_purchase(c, purchase=purchase(-100, "EUR")),
        "interaction.purchase.amount_minor",
    ),
    "purchase in a made-up currency": (
        lambda c: a_purchase(c, purchase=purchase(100, "EUX")),
        "interaction.purchase.currency_code",
    ),
    "purchase in gold": (
        lambda c: a_purchase(c, purchase=purchase(100, "XAU")),
        "interaction.purchase.currency_code",
    ),
    "purchase without details": (
        lambda c: an_interaction(c, type=interaction_pb2.INTERACTION_TYPE_PURCHASE),
        "interaction.purchase",
    ),
    "money on a complaint": (
        lambda c: an_interaction(c, purchase=purchase(100, "EUR")),
        "interaction.purchase",
    ),
    "promise without text": (
        lambda c: an_interaction(c, promises=[a_promise(text="  ")]),
        "interaction.promises[0].text",
    ),
    "promise already overdue": (
        lambda c: an_interaction(
            c,
            promises=[
                a_promise(),
                interaction_pb2.PromiseMade(
                    text="Call back", due_at=to_timestamp(NOW - timedelta(minutes=1))
                ),
            ],
        ),
        "interaction.promises[1].due_at",
    ),
    "promise due within a span that has passed": (
        lambda c: an_interaction(
            c,
            occurred_at=to_timestamp(NOW - timedelta(days=2)),
            promises=[a_promise(within=timedelta(days=1))],
        ),
        "interaction.promises[0].due_within",
    ),
    "promise without a due time": (
        lambda c: an_interaction(c, promises=[interaction_pb2.PromiseMade(text="Call back")]),
        "interaction.promises[0].due_at",
    ),
    "promise with a negative span": (
        lambda c: an_interaction(
            c, promises=[interaction_pb2.PromiseMade(text="x", due_within=due_in(-timedelta(1)))]
        ),
        "interaction.promises[0].due_within",
    ),
    "promise of an unknown kind": (
        lambda c: an_interaction(
            c,
            promises=[
                interaction_pb2.PromiseMade(
                    text="x", due_within=due_in(timedelta(1)), kind=UNKNOWN_KIND
                )
            ],
        ),
        "interaction.promises[0].kind",
    ),
    "promise text too long": (
        lambda c: an_interaction(c, promises=[a_promise(text="p" * 501)]),
        "interaction.promises[0].text",
    ),
    "summary too long": (lambda c: an_interaction(c, summary="s" * 501), "interaction.summary"),
    "notes too long": (lambda c: an_interaction(c, notes="n" * 10_001), "interaction.notes"),
    "outcome too long": (lambda c: an_interaction(c, outcome="o" * 1001), "interaction.outcome"),
    "thread to an unknown interaction": (
        lambda c: an_interaction(c, thread_id="no-such-interaction"),
        "interaction.thread_id",
    ),
    "no contact": (lambda c: an_interaction(""), "interaction.contact_id"),
}


@pytest.mark.parametrize("case", RECORD_CASES, ids=list(RECORD_CASES))
async def test_a_bad_touch_is_refused_with_a_field_violation_and_nothing_written(
    shared_interactions: RunningInteractions, case: str
) -> None:
    svc = shared_interactions
    assert svc.clock.now() == NOW
    contact_id = await known_contact(svc)
    build, field = RECORD_CASES[case]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, build(contact_id))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    timeline = await svc.stub.ListInteractions(
        interactions_pb.ListInteractionsRequest(contact_id=contact_id), metadata=bearer()
    )
    assert list(timeline.interactions) == []


async def test_limits_are_inclusive_and_a_little_clock_skew_is_tolerated(
    shared_interactions: RunningInteractions,
) -> None:
    contact_id = await known_contact(shared_interactions)
    recorded = await record(
        shared_interactions,
        an_interaction(
            contact_id,
            occurred_at=to_timestamp(NOW + timedelta(minutes=5)),
            summary="s" * 500,
            notes="n" * 10_000,
            outcome="o" * 1000,
            promises=[a_promise(text="p" * 500)],
        ),
    )
    assert recorded.occurred_at == to_timestamp(NOW + timedelta(minutes=5))


async def test_every_violation_is_reported_at_once(
    shared_interactions: RunningInteractions,
) -> None:
    contact_id = await known_contact(shared_interactions)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(
            shared_interactions,
            an_interaction(contact_id, type=0, summary="s" * 501, promises=[a_promise(text="")]),
        )
    assert {"interaction.type", "interaction.summary", "interaction.promises[0].text"} <= set(
        field_violations(caught.value)
    )


@pytest.mark.parametrize("satisfaction", [0, 6, -1])
async def test_a_satisfaction_outside_one_to_five_is_refused(
    shared_interactions: RunningInteractions, satisfaction: int
) -> None:
    contact_id = await known_contact(shared_interactions)
    recorded = await record(shared_interactions, an_interaction(contact_id))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shared_interactions.stub.RateInteraction(
            interactions_pb.RateInteractionRequest(id=recorded.id, satisfaction=satisfaction),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "satisfaction" in field_violations(caught.value)


async def test_list_needs_a_contact_and_a_sensible_window(
    shared_interactions: RunningInteractions,
) -> None:
    for request, field in (
        (interactions_pb.ListInteractionsRequest(), "contact_id"),
        (
            interactions_pb.ListInteractionsRequest(
                contact_id="c", occurred_after=to_timestamp(NOW), occurred_before=to_timestamp(NOW)
            ),
            "occurred_before",
        ),
        (interactions_pb.ListInteractionsRequest(contact_id="c", type=UNKNOWN_TYPE), "type"),
        (interactions_pb.ListInteractionsRequest(contact_id="c", page_size=-1), "page_size"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await shared_interactions.stub.ListInteractions(request, metadata=bearer())
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in field_violations(caught.value)


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "%%%",
        "eyJjIjpbXSwicSI6Im90aGVyIn0",  # a well-formed token of another query
        # Tokens of this very query whose cursor was not written by the service:
        encode_token(["yesterday", "i-1"], repr(TimelineFilter("c"))),
        encode_token(["2026-01-05T09:00:00", "i-1"], repr(TimelineFilter("c"))),  # naive
        encode_token(["2026-01-05T09:00:00+00:00"], repr(TimelineFilter("c"))),
    ],
)
async def test_a_page_token_that_is_not_ours_is_refused(
    shared_interactions: RunningInteractions, token: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await shared_interactions.stub.ListInteractions(
            interactions_pb.ListInteractionsRequest(contact_id="c", page_token=token),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in field_violations(caught.value)


async def test_a_page_token_only_fits_the_query_it_came_from(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    for _ in range(2):
        await record(svc, an_interaction(contact_id))
    first = await svc.stub.ListInteractions(
        interactions_pb.ListInteractionsRequest(contact_id=contact_id, page_size=1),
        metadata=bearer(),
    )
    assert first.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.ListInteractions(
            interactions_pb.ListInteractionsRequest(
                contact_id=contact_id,
                page_size=1,
                page_token=first.next_page_token,
                channel=interaction_pb2.CHANNEL_EMAIL,
            ),
            metadata=bearer(),
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


AMEND_CASES: dict[str, tuple[list[str], Overrides, str, str]] = {
    "server-set field": (["satisfaction"], {}, "fix", "update_mask.paths[0]"),
    "contact moved by hand": (["contact_id"], {}, "fix", "update_mask.paths[0]"),
    "unknown field": (["shoe_size"], {}, "fix", "update_mask.paths[0]"),
    "empty mask": ([], {}, "fix", "update_mask.paths"),
    "no reason": (["summary"], {"summary": "x"}, "", "reason"),
    "into the future": (
        ["occurred_at"],
        {"occurred_at": to_timestamp(NOW + timedelta(hours=1))},
        "fix",
        "interaction.occurred_at",
    ),
    "into a purchase without money": (
        ["type"],
        {"type": interaction_pb2.INTERACTION_TYPE_PURCHASE},
        "fix",
        "interaction.purchase",
    ),
    "type cleared": (["type"], {}, "fix", "interaction.type"),
    "notes too long": (["notes"], {"notes": "n" * 10_001}, "fix", "interaction.notes"),
}


@pytest.mark.parametrize("case", AMEND_CASES, ids=list(AMEND_CASES))
async def test_a_bad_amendment_is_refused_and_changes_nothing(
    shared_interactions: RunningInteractions, case: str
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    recorded = await record(svc, an_interaction(contact_id))
    paths, values, reason, field = AMEND_CASES[case]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.AmendInteraction(
            interactions_pb.AmendInteractionRequest(
                id=recorded.id,
                interaction=interaction_pb2.Interaction(**values),  # type: ignore[arg-type]
                update_mask=field_mask_pb2.FieldMask(paths=paths),
                reason=reason,
            ),
            metadata=bearer(),
        )

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in field_violations(caught.value)
    got = await svc.stub.GetInteraction(
        interactions_pb.GetInteractionRequest(id=recorded.id), metadata=bearer()
    )
    assert got.interaction == recorded


@pytest.mark.parametrize("rpc", ["get", "rate", "amend"])
async def test_unknown_ids_are_not_found(
    shared_interactions: RunningInteractions, rpc: str
) -> None:
    stub = shared_interactions.stub
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "get": lambda: stub.GetInteraction(
            interactions_pb.GetInteractionRequest(id="nope"), metadata=bearer()
        ),
        "rate": lambda: stub.RateInteraction(
            interactions_pb.RateInteractionRequest(id="nope", satisfaction=3), metadata=bearer()
        ),
        "amend": lambda: stub.AmendInteraction(
            interactions_pb.AmendInteractionRequest(
                id="nope",
                interaction=interaction_pb2.Interaction(summary="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["summary"]),
                reason="fix",
            ),
            metadata=bearer(),
        ),
    }
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await calls[rpc]()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
