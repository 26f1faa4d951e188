"""Conversions between protobuf values and plain Python ones, for mappers and event codecs:
Timestamps and Durations read into a violation collector, and one helper for enums."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2

from promesa.errors import Violations

E = TypeVar("E", bound=enum.Enum)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS_PER_DAY = 86_400
# What a Timestamp may hold: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def to_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """The instant as a Timestamp; a naive datetime is taken as local time (`astimezone`).
    Computed from the difference to the epoch: the message's own FromDatetime goes through a
    time tuple, at several times the cost, and mappers call this for every time they send."""
    if value is None:
        return None
    seconds, nanos = _seconds_and_nanos(value)
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)


def set_timestamp(target: timestamp_pb2.Timestamp, value: datetime | None) -> None:
    """`to_timestamp` written straight into a message's field (`m.created_at`), which spares
    a message and its copy; None leaves the field unset."""
    if value is not None:
        target.seconds, target.nanos = _seconds_and_nanos(value)


def _seconds_and_nanos(value: datetime) -> tuple[int, int]:
    if value.tzinfo is None:
        value = value.astimezone(UTC)
    delta = value - _EPOCH
    seconds = delta.days * _SECONDS_PER_DAY + delta.seconds
    if not _MIN_SECONDS <= seconds <= _MAX_SECONDS:
        raise ValueError(f"{value.isoformat()} is outside what a Timestamp holds")
    return seconds, delta.microseconds * 1000


def from_timestamp(message: Any, field: str, path: str, v: Violations) -> datetime | None:
    """None when the field is unset (HasField), an aware UTC datetime otherwise.

    A Timestamp outside years 1 to 9999 is the caller's mistake: a violation named `path`
    in the collector, never an internal error. How far into the past or the future an
    instant may be is a rule of the field, checked where the request is validated.
    """
    if not message.HasField(field):
        return None
    ts: timestamp_pb2.Timestamp = getattr(message, field)
    seconds, nanos = ts.seconds, ts.nanos
    if not (_MIN_SECONDS <= seconds <= _MAX_SECONDS and 0 <= nanos < 1_000_000_000):
        v.add(path, "is not a valid timestamp (years 1 to 9999)")
        return None
    # As ToDatetime(tzinfo=UTC) computes it, without its checks and conversions repeated.
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


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
