"""Conversions between protobuf values and plain Python ones, for mappers and event codecs:
Timestamps and Durations read into a violation collector, and one helper for enums."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from promesa.errors import Violations

E = TypeVar("E", bound=enum.Enum)


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def from_timestamp(message: Any, field: str, path: str, v: Violations) -> datetime | None:
    """None when the field is unset (HasField), an aware UTC datetime otherwise.

    A Timestamp outside years 1 to 9999 is the caller's mistake: a violation named `path`
    in the collector, never an internal error. How far into the past or the future an
    instant may be is a rule of the field, checked where the request is validated.
    """
    if not message.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    try:
        return ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        v.add(path, "is not a valid timestamp (years 1 to 9999)")
        return None


def read_timestamp(message: Any, field: str) -> datetime | None:
    """For events: an unset or unreadable Timestamp is None; the caller decides if that is
    fatal (a required time) or not."""
    return from_timestamp(message, field, field, Violations())


def to_duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


def from_duration(message: Any, field: str, path: str, v: Violations) -> timedelta | None:
    if not message.HasField(field):
        return None
    try:
        span: timedelta = getattr(message, field).ToTimedelta()
    except (ValueError, OverflowError):
        v.add(path, "is not a valid duration")
        return None
    return span


class EnumMap(Generic[E]):
    """One proto enum and its domain twin: domain `EMAIL` is proto `CHANNEL_EMAIL`, and the
    zero value (`CHANNEL_UNSPECIFIED`) is None. Requests are parsed strictly (a number the
    contract does not know is a violation); events leniently (a value newer than this code
    reads as unset), so an older consumer keeps working when a producer learns a new value."""

    def __init__(self, proto_enum: Any, prefix: str, domain: type[E]) -> None:
        self._proto = proto_enum
        self._prefix = f"{prefix}_"
        self._domain = domain
        self._to_proto = {m: proto_enum.Value(self._prefix + m.value) for m in domain}
        self._from_proto = {number: m for m, number in self._to_proto.items()}

    def to_proto(self, value: E | None) -> Any:
        return 0 if value is None else self._to_proto[value]

    def parse(self, number: int, path: str, v: Violations) -> E | None:
        """Strict: an unknown number is a violation named `path`."""
        if number == 0:
            return None
        found = self._from_proto.get(number)
        if found is None:
            v.add(path, f"{number} is not a known value")
        return found

    def read(self, number: int) -> E | None:
        """Lenient: an unknown number is None."""
        return self._from_proto.get(number)
