"""Opaque page tokens: a cursor plus a digest of the filters, so a token only fits its query."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from promesa.errors import FieldViolation, InvalidArgumentError

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def page_size(requested: int, field: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgumentError([FieldViolation(field, "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(cursor: list[Any], query: str) -> str:
    raw = json.dumps({"c": cursor, "q": query}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, query: str, field: str = "page_token") -> list[Any] | None:
    """None for the first page; InvalidArgumentError for a token that is not ours or not for
    this query."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidArgumentError([FieldViolation(field, "is not a valid page token")]) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("c"), list):
        raise InvalidArgumentError([FieldViolation(field, "is not a valid page token")])
    if payload.get("q") != query:
        raise InvalidArgumentError([FieldViolation(field, "belongs to a query with other filters")])
    cursor: list[Any] = payload["c"]
    return cursor
