"""Conversions between protobuf well-known types and plain Python values, for servicers."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from promesa.errors import FieldViolation, InvalidArgumentError, Violations

E = TypeVar("E", bound=enum.Enum)


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(message: Any, field: str, path: str = "") -> datetime | None:
    """None when the field is unset (HasField), an aware UTC datetime otherwise.

    A Timestamp outside years 1 to 9999 is the caller's mistake: INVALID_ARGUMENT naming
    `path` (default: the field's name), never an internal error.
    """
    if not message.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgumentError(
            [FieldViolation(path or field, "is not a valid timestamp (years 1 to 9999)")]
        ) from None


def to_duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def enum_to_proto(value: enum.Enum | None, prefix: str, proto_enum: Any) -> Any:
    """Domain `EMAIL` → proto `CHANNEL_EMAIL`; None → the UNSPECIFIED zero value."""
    if value is None:
        return 0
    return proto_enum.Value(f"{prefix}_{value.value}")


def enum_from_proto(
    number: int, prefix: str, proto_enum: Any, domain: type[E], path: str, v: Violations
) -> E | None:
    """The zero value means unset (None); a number the contract does not know is a violation."""
    if number == 0:
        return None
    try:
        name: str = proto_enum.Name(number)
        return domain(name.removeprefix(f"{prefix}_"))
    except ValueError:
        v.add(path, f"{number} is not a known value")
        return None
