"""Bad input gets INVALID_ARGUMENT with a field violation naming the field, and writes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, timestamp_pb2

from crm.interactions.v1 import interaction_pb2
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb
from interactions.ports import TimelineFilter
from promesa.clock import ManualClock
from promesa.pagination import Cursor, encode_token, query_digest
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


def hand_made_token(**payload: object) -> str:
    """A page token the service did not write, in its encoding."""
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# The default promise horizon (CRM_PROMISE_HORIZON_DAYS).
HORIZON = timedelta(days=1826)


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
    "occurred before 1970": (
        lambda c: an_interaction(c, occurred_at=to_timestamp(NOW.replace(year=1969))),
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
    "promise due beyond the horizon": (
        lambda c: an_interaction(
            c,
            promises=[
                interaction_pb2.PromiseMade(
                    text="x", due_at=to_timestamp(NOW + HORIZON + timedelta(seconds=1))
                )
            ],
        ),
        "interaction.promises[0].due_at",
    ),
    "promise due within more than the horizon": (
        lambda c: an_interaction(c, promises=[a_promise(within=HORIZON + timedelta(seconds=1))]),
        "interaction.promises[0].due_within",
    ),
    "promise due within a span that ends beyond the horizon": (
        lambda c: an_interaction(
            c,
            occurred_at=to_timestamp(NOW + timedelta(minutes=5)),
            promises=[a_promise(within=HORIZON)],
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


THIS_QUERY = query_digest(TimelineFilter("c"))


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "%%%",
        "eyJjIjpbXSwicSI6Im90aGVyIn0",  # a well-formed token of another query
        encode_token(Cursor(NOW, "i-1"), TimelineFilter("other")),
        # Tokens of this very query whose cursor was not written by the service:
        hand_made_token(a="yesterday", i="i-1", q=THIS_QUERY),
        hand_made_token(a="2026-01-05T09:00:00", i="i-1", q=THIS_QUERY),  # naive
        hand_made_token(a="2026-01-05T09:00:00+00:00", q=THIS_QUERY),
        encode_token(Cursor(None, "i-1"), TimelineFilter("c")),  # timelines page by instant
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
    "back before 1970": (
        ["occurred_at"],
        {"occurred_at": to_timestamp(NOW.replace(year=1969))},
        "fix",
        "interaction.occurred_at",
    ),
    "reason with a NUL": (["summary"], {"summary": "x"}, "typo\x00", "reason"),
    "reason over two lines": (["summary"], {"summary": "x"}, "typo\nreally", "reason"),
    "summary with an escape": (
        ["summary"],
        {"summary": "\x1b[31mred"},
        "fix",
        "interaction.summary",
    ),
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


# --- text: no control characters, line breaks only in prose -----------------------------------

SINGLE_LINE = {
    "agent_id": "interaction.agent_id",
    "team": "interaction.team",
    "outcome": "interaction.outcome",
    "thread_id": "interaction.thread_id",
}
PROMISE_TEXTS = {
    "text": "interaction.promises[0].text",
    "owner_id": "interaction.promises[0].owner_id",
}


def with_text(contact_id: str, field: str, value: str) -> interaction_pb2.Interaction:
    if field in PROMISE_TEXTS:
        promise = a_promise()
        setattr(promise, field, value)
        return an_interaction(contact_id, promises=[promise])
    return an_interaction(contact_id, **{field: value})


TEXT_CASES = [
    *[(field, bad, path) for field, path in SINGLE_LINE.items() for bad in ("a\x00b", "a\nb")],
    *[(field, bad, path) for field, path in PROMISE_TEXTS.items() for bad in ("a\x00b", "a\rb")],
    ("summary", "Parcel\x00damaged", "interaction.summary"),
    ("notes", "Photos \x1b[2J sent", "interaction.notes"),
]


@pytest.mark.parametrize(("field", "value", "path"), TEXT_CASES)
async def test_a_text_field_with_control_characters_is_refused_naming_the_field(
    shared_interactions: RunningInteractions, field: str, value: str, path: str
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, with_text(contact_id, field, value))

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "control characters" in field_violations(caught.value)[path]


async def test_ids_with_control_characters_are_refused_naming_the_field(
    shared_interactions: RunningInteractions,
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    for touch, request_id, path in (
        (an_interaction(f"{contact_id}\x00"), "", "interaction.contact_id"),
        (an_interaction(contact_id), "retry\x00-1", "request_id"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await record(svc, touch, request_id=request_id)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert path in field_violations(caught.value)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await svc.stub.ListInteractions(
            interactions_pb.ListInteractionsRequest(contact_id=contact_id, agent_id="ana\x00"),
            metadata=bearer(),
        )
    assert "agent_id" in field_violations(caught.value)


async def test_summary_and_notes_may_hold_line_breaks(
    shared_interactions: RunningInteractions,
) -> None:
    contact_id = await known_contact(shared_interactions)
    recorded = await record(
        shared_interactions,
        an_interaction(
            contact_id,
            summary="Parcel damaged\nsecond time",
            notes="Photos:\r\n\t1. box\n\t2. kettle",
        ),
    )
    assert recorded.summary == "Parcel damaged\nsecond time"
    assert recorded.notes == "Photos:\r\n\t1. box\n\t2. kettle"


# --- instants: bounded where they enter, never an internal error ------------------------------

YEAR_1 = timestamp_pb2.Timestamp(seconds=-62135596800)
LAST_SECOND = timestamp_pb2.Timestamp(seconds=253402300799)  # 9999-12-31T23:59:59
TIMESTAMPS = {
    "year 1": YEAR_1,
    "9999-12-31T23:59:59": LAST_SECOND,
    "before year 1": timestamp_pb2.Timestamp(seconds=-62135596801),
    "after 9999": timestamp_pb2.Timestamp(seconds=253402300800),
    "negative nanos": timestamp_pb2.Timestamp(seconds=0, nanos=-1),
}
IN_CALENDAR = {"year 1", "9999-12-31T23:59:59"}
TIMESTAMP_FIELDS = [
    "RecordInteraction interaction.occurred_at",
    "RecordInteraction interaction.promises[0].due_at",
    "AmendInteraction interaction.occurred_at",
    "ListInteractions occurred_after",
    "ListInteractions occurred_before",
]


async def send_timestamp(
    svc: RunningInteractions, where: str, ts: timestamp_pb2.Timestamp
) -> object:
    """Calls the RPC that `where` names with `ts` in the field it names."""
    contact_id = await known_contact(svc)
    rpc, _, field = where.partition(" ")
    if rpc == "RecordInteraction" and field == "interaction.occurred_at":
        return await record(svc, an_interaction(contact_id, occurred_at=ts))
    if rpc == "RecordInteraction":
        promise = interaction_pb2.PromiseMade(text="Call back", due_at=ts)
        return await record(svc, an_interaction(contact_id, promises=[promise]))
    if rpc == "AmendInteraction":
        recorded = await record(svc, an_interaction(contact_id))
        return await svc.stub.AmendInteraction(
            interactions_pb.AmendInteractionRequest(
                id=recorded.id,
                interaction=interaction_pb2.Interaction(occurred_at=ts),
                update_mask=field_mask_pb2.FieldMask(paths=["occurred_at"]),
                reason="wrong date",
            ),
            metadata=bearer(),
        )
    request = interactions_pb.ListInteractionsRequest(contact_id=contact_id)
    getattr(request, field).CopyFrom(ts)
    return await svc.stub.ListInteractions(request, metadata=bearer())


@pytest.mark.parametrize("value", TIMESTAMPS)
@pytest.mark.parametrize("where", TIMESTAMP_FIELDS)
async def test_a_timestamp_at_or_past_the_ends_of_the_calendar_is_ok_or_a_field_violation(
    shared_interactions: RunningInteractions, where: str, value: str
) -> None:
    """Never INTERNAL or UNKNOWN: a filter may span the whole calendar, but nothing that is
    stored may be before 1970 or beyond the skew or the promise horizon."""
    field = where.partition(" ")[2]
    if where.startswith("ListInteractions") and value in IN_CALENDAR:
        await send_timestamp(shared_interactions, where, TIMESTAMPS[value])  # a plain query
        return

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await send_timestamp(shared_interactions, where, TIMESTAMPS[value])

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert field in field_violations(caught.value)


DURATIONS = {
    "largest": duration_pb2.Duration(seconds=315576000000),
    "smallest": duration_pb2.Duration(seconds=-315576000000),
    "beyond the largest": duration_pb2.Duration(seconds=315576000001),
    "past a C int": duration_pb2.Duration(seconds=10**18),
    "mixed signs": duration_pb2.Duration(seconds=1, nanos=-1),
    "negative nanos": duration_pb2.Duration(nanos=-1),
}
OCCURRED = {"now": None, "year 1": YEAR_1, "9999-12-31T23:59:59": LAST_SECOND}


@pytest.mark.parametrize("occurred", OCCURRED)
@pytest.mark.parametrize("span", DURATIONS)
async def test_a_due_within_at_the_ends_of_the_duration_range_is_ok_or_a_field_violation(
    shared_interactions: RunningInteractions, span: str, occurred: str
) -> None:
    svc = shared_interactions
    contact_id = await known_contact(svc)
    promise = interaction_pb2.PromiseMade(text="Call back", due_within=DURATIONS[span])
    touch = an_interaction(contact_id, promises=[promise])
    if (at := OCCURRED[occurred]) is not None:
        touch.occurred_at.CopyFrom(at)

    if (span, occurred) == ("mixed signs", "now"):
        # A span that rounds to a second from now is a promise that can be kept.
        [made] = (await record(svc, touch)).promises
        assert made.due_at == to_timestamp(NOW + timedelta(seconds=1))
        return

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(svc, touch)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    found = field_violations(caught.value)
    assert {"interaction.promises[0].due_within", "interaction.occurred_at"} & set(found)
    assert all("too far in the future" not in d for d in found.values())


async def test_a_year_1_touch_with_a_promise_due_within_minus_an_hour_is_told_both_mistakes(
    shared_interactions: RunningInteractions,
) -> None:
    """Not "is too far in the future": the message names what is wrong with each field."""
    contact_id = await known_contact(shared_interactions)
    promise = interaction_pb2.PromiseMade(text="Call back", due_within=due_in(-timedelta(hours=1)))

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(
            shared_interactions, an_interaction(contact_id, occurred_at=YEAR_1, promises=[promise])
        )

    assert field_violations(caught.value) == {
        "interaction.occurred_at": "must not be before 1970-01-01",
        "interaction.promises[0].due_within": "must be a positive time span",
    }
