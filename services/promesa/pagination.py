"""Opaque page tokens for keyset pages: the last row's (instant, id) plus a digest of the
filters, so a token only fits the query that made it. One encoding and one parser for every
List and Search, with the same checks everywhere."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from promesa.errors import FieldViolation, InvalidArgumentError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
MAX_TOKEN = 1000

T = TypeVar("T")


@dataclass(frozen=True)
class Cursor:
    """Where the previous page ended: rows sort by (at, id); `at` is None for pages ordered by
    id alone."""

    at: datetime | None
    id: str


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_page_token: str


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgumentError([FieldViolation(field, "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def query_digest(query: object) -> str:
    """What a token is bound to: the filters of the query (their repr), digested."""
    return hashlib.sha256(repr(query).encode()).hexdigest()[:16]


def encode_token(cursor: Cursor, query: object) -> str:
    payload = {
        "a": cursor.at.astimezone(UTC).isoformat() if cursor.at is not None else None,
        "i": cursor.id,
        "q": query_digest(query),
    }
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query: object, field: str = "page_token") -> Cursor | None:
    """None for the first page; INVALID_ARGUMENT for a token that is not ours, or that was
    made for a query with other filters."""
    if not token:
        return None
    invalid = InvalidArgumentError([FieldViolation(field, "is not a valid page token")])
    if len(token) > MAX_TOKEN:
        raise invalid
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise invalid from None
    if not isinstance(payload, dict):
        raise invalid
    at, last_id, digest = payload.get("a"), payload.get("i"), payload.get("q")
    if not isinstance(last_id, str) or not isinstance(digest, str):
        raise invalid
    instant: datetime | None = None
    if at is not None:
        try:
            instant = datetime.fromisoformat(at) if isinstance(at, str) else None
        except ValueError:
            instant = None
        # We write UTC; any other offset is hand-made (and may not even convert to UTC).
        if instant is None or instant.utcoffset() != timedelta(0):
            raise invalid
    if digest != query_digest(query):
        raise InvalidArgumentError([FieldViolation(field, "belongs to a query with other filters")])
    return Cursor(instant, last_id)


def paginate(
    rows: Sequence[T], size: int, query: object, cursor_of: Callable[[T], Cursor]
) -> Page[T]:
    """`rows` were read with a limit of size + 1: one more than fits says there is a next page."""
    if len(rows) <= size:
        return Page(rows, "")
    return Page(rows[:size], encode_token(cursor_of(rows[size - 1]), query))
