"""Page tokens: one encoding and one parser for every List and Search, bound to the query
that made them, and anything else a caller sends refused as INVALID_ARGUMENT."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest

from promesa.errors import FieldViolation, InvalidArgumentError
from promesa.pagination import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    MAX_TOKEN,
    Cursor,
    Page,
    decode_token,
    encode_token,
    page_size,
    paginate,
    query_digest,
)


@dataclass(frozen=True)
class Filter:
    """A query's filters, as a service's list methods take them."""

    owner_id: str = ""
    status: str = ""


AT = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)
NOT_OURS = FieldViolation("page_token", "is not a valid page token")


def token_of(payload: object) -> str:
    raw = json.dumps(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def refusal(token: str, query: object = Filter(), field: str = "page_token") -> FieldViolation:
    with pytest.raises(InvalidArgumentError) as raised:
        decode_token(token, query, field)
    (violation,) = raised.value.violations
    return violation


# --- round trip -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        Cursor(AT, "p-1"),
        Cursor(None, "c-9"),
        Cursor(datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "last"),
        Cursor(AT, "ñandú/ü 'quoted' \"id\""),
    ],
    ids=["instant-and-id", "id-only", "calendar-end", "any-id"],
)
def test_a_token_reads_back_as_the_cursor_it_was_made_from(cursor: Cursor) -> None:
    query = Filter(owner_id="agent-ana")

    token = encode_token(cursor, query)

    assert decode_token(token, Filter(owner_id="agent-ana")) == cursor
    assert token.isascii() and "=" not in token


def test_a_cursor_in_another_offset_makes_a_token_for_the_same_instant() -> None:
    at = datetime(2026, 3, 2, 14, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))

    cursor = decode_token(encode_token(Cursor(at, "p-1"), Filter()), Filter())

    assert cursor == Cursor(at, "p-1")
    assert cursor.at is not None and cursor.at.utcoffset() == timedelta(0)


def test_no_token_is_the_first_page() -> None:
    assert decode_token("", Filter()) is None


def test_a_token_for_a_query_with_other_filters_is_refused() -> None:
    token = encode_token(Cursor(AT, "p-1"), Filter(owner_id="agent-ana"))

    violation = refusal(token, Filter(owner_id="agent-bob"))

    assert violation == FieldViolation("page_token", "belongs to a query with other filters")


def test_a_refusal_is_named_after_the_field_the_caller_used() -> None:
    assert refusal("%%%", Filter(), field="next").field == "next"


# --- what is not ours -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "not a token at all",
        "!!!!",
        "%%%",
        base64.urlsafe_b64encode(b"\xff\xfe\x00garbage").decode(),
        token_of([1, 2, 3]),
        token_of("a string"),
        token_of({"i": "p-1"}),
        token_of({"a": None, "q": "0123456789abcdef"}),
        token_of({"a": None, "i": 7, "q": "0123456789abcdef"}),
        token_of({"a": 1700000000, "i": "p-1", "q": "0123456789abcdef"}),
        token_of({"a": "yesterday", "i": "p-1", "q": "0123456789abcdef"}),
        token_of({"a": "", "i": "p-1", "q": "0123456789abcdef"}),
    ],
    ids=[
        "prose",
        "punctuation",
        "percent",
        "binary",
        "json-list",
        "json-string",
        "no-digest",
        "no-id",
        "id-not-text",
        "instant-not-text",
        "instant-not-iso",
        "instant-empty",
    ],
)
def test_a_token_that_is_not_ours_is_invalid_argument(token: str) -> None:
    assert refusal(token) == NOT_OURS


def test_a_deeply_nested_token_is_refused() -> None:
    assert refusal(base64.urlsafe_b64encode(b"[" * 740).decode()) == NOT_OURS


@pytest.mark.parametrize("at", ["2026-03-02T14:30:00+05:30", "0001-01-01T00:00:00+01:00"])
def test_a_hand_made_token_with_an_instant_outside_utc_is_refused(at: str) -> None:
    # Tokens are written in UTC; the second instant would not even convert to UTC
    token = token_of({"a": at, "i": "p-1", "q": query_digest(Filter())})

    assert refusal(token) == NOT_OURS


def test_a_token_with_a_naive_instant_is_refused() -> None:
    # Comparing a naive instant with the stored aware ones would be a TypeError: an INTERNAL
    token = token_of({"a": "2026-03-02T09:00:00", "i": "p-1", "q": query_digest(Filter())})

    assert refusal(token) == NOT_OURS


def test_an_overlong_token_is_refused_before_it_is_read() -> None:
    padded = encode_token(Cursor(AT, "p" * MAX_TOKEN), Filter())
    assert len(padded) > MAX_TOKEN

    assert refusal(padded) == NOT_OURS
    assert refusal("A" * 1_000_000) == NOT_OURS


# --- page sizes and pages ---------------------------------------------------------------------


def test_page_size_defaults_caps_and_refuses_negatives() -> None:
    assert page_size(0) == DEFAULT_PAGE_SIZE
    assert page_size(7) == 7
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
    with pytest.raises(InvalidArgumentError) as raised:
        page_size(-1, "limit")
    assert raised.value.violations == (FieldViolation("limit", "must not be negative"),)


@dataclass(frozen=True)
class Row:
    id: str
    at: datetime


def cursor_of(row: Row) -> Cursor:
    return Cursor(row.at, row.id)


ROWS = [Row(f"r-{i}", AT + timedelta(seconds=i)) for i in range(5)]


def test_a_page_with_room_to_spare_is_the_last_one() -> None:
    page = paginate(ROWS[:3], 3, Filter(), cursor_of)

    assert page == Page(ROWS[:3], "")


def test_one_row_more_than_fits_means_a_next_page_that_starts_after_the_last_shown() -> None:
    query = Filter(status="OPEN")

    page = paginate(ROWS[:4], 3, query, cursor_of)

    assert list(page.items) == ROWS[:3]
    assert decode_token(page.next_page_token, query) == Cursor(ROWS[2].at, "r-2")


def test_paging_through_every_row_shows_each_once() -> None:
    query = Filter(owner_id="agent-ana")
    seen: list[Row] = []
    token = ""
    while True:
        after = decode_token(token, query)
        rest = [r for r in ROWS if after is None or (r.at, r.id) > (after.at, after.id)]
        page = paginate(rest[:3], 2, query, cursor_of)
        seen.extend(page.items)
        token = page.next_page_token
        if not token:
            break

    assert seen == ROWS
