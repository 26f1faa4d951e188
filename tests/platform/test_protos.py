"""Reading protobuf values into plain ones: a Timestamp or Duration a caller got wrong is a
violation in the collector, never an exception; enums are parsed strictly for requests and
leniently for events."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from crm.interactions.v1 import interaction_pb2
from promesa.errors import FieldViolation, InvalidArgumentError, Violations
from promesa.protos import (
    EnumMap,
    from_duration,
    from_timestamp,
    read_timestamp,
    to_duration,
    to_timestamp,
)

FIRST_SECOND = -62_135_596_800  # 0001-01-01T00:00:00Z
LAST_SECOND = 253_402_300_799  # 9999-12-31T23:59:59Z
OUTSIDE = FieldViolation("promise.due_at", "is not a valid timestamp (years 1 to 9999)")


def due_at(seconds: int, nanos: int = 0) -> interaction_pb2.PromiseMade:
    return interaction_pb2.PromiseMade(due_at=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))


def violations(v: Violations) -> tuple[FieldViolation, ...]:
    try:
        v.raise_if_any()
    except InvalidArgumentError as error:
        return error.violations
    return ()


# --- Timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (due_at(0), datetime(1970, 1, 1, tzinfo=UTC)),
        (due_at(FIRST_SECOND), datetime(1, 1, 1, tzinfo=UTC)),
        (due_at(LAST_SECOND, 999_999_999), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (due_at(1_772_442_000, 123_456_789), datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)),
    ],
    ids=["epoch", "first-instant", "last-instant", "microseconds"],
)
def test_a_timestamp_within_the_calendar_reads_as_an_aware_utc_instant(
    message: interaction_pb2.PromiseMade, expected: datetime
) -> None:
    v = Violations()

    read = from_timestamp(message, "due_at", "promise.due_at", v)

    assert read == expected
    assert read is not None and read.tzinfo == UTC
    assert not v


@pytest.mark.parametrize(
    "message",
    [
        due_at(FIRST_SECOND - 1),
        due_at(LAST_SECOND + 1),
        due_at(2**62),
        due_at(-(2**62)),
        due_at(0, -1),
        due_at(0, 1_000_000_000),
    ],
    ids=["before-year-1", "after-year-9999", "far-future", "far-past", "negative-nanos", "nanos"],
)
def test_a_timestamp_outside_the_calendar_adds_a_violation_and_reads_as_none(
    message: interaction_pb2.PromiseMade,
) -> None:
    v = Violations()

    assert from_timestamp(message, "due_at", "promise.due_at", v) is None
    assert violations(v) == (OUTSIDE,)


def test_every_bad_timestamp_is_collected_with_the_other_violations() -> None:
    v = Violations()
    v.add("promise.kind", "99 is not a known value")

    from_timestamp(due_at(LAST_SECOND + 1), "due_at", "promise.due_at", v)

    assert [x.field for x in violations(v)] == ["promise.kind", "promise.due_at"]


def test_an_unset_timestamp_is_none_without_a_violation() -> None:
    v = Violations()

    assert from_timestamp(interaction_pb2.PromiseMade(), "due_at", "promise.due_at", v) is None
    assert not v


def test_an_event_reads_an_unreadable_timestamp_as_none() -> None:
    assert read_timestamp(due_at(LAST_SECOND + 1), "due_at") is None
    assert read_timestamp(interaction_pb2.PromiseMade(), "due_at") is None
    assert read_timestamp(due_at(0), "due_at") == datetime(1970, 1, 1, tzinfo=UTC)


def test_an_instant_written_to_a_timestamp_reads_back_equal() -> None:
    at = datetime(2026, 3, 2, 9, 0, 0, 123456, tzinfo=UTC)
    message = interaction_pb2.PromiseMade(due_at=to_timestamp(at))

    assert from_timestamp(message, "due_at", "due_at", Violations()) == at
    assert to_timestamp(None) is None


# --- Durations --------------------------------------------------------------------------------


def due_within(seconds: int, nanos: int = 0) -> interaction_pb2.PromiseMade:
    return interaction_pb2.PromiseMade(
        due_within=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )


def test_a_duration_reads_as_a_timedelta() -> None:
    v = Violations()

    span = from_duration(due_within(3600, 500_000_000), "due_within", "promise.due_within", v)

    assert span == timedelta(hours=1, milliseconds=500)
    assert not v


def test_a_duration_beyond_what_python_holds_adds_a_violation() -> None:
    v = Violations()

    assert from_duration(due_within(2**62), "due_within", "promise.due_within", v) is None
    assert violations(v) == (FieldViolation("promise.due_within", "is not a valid duration"),)


def test_an_unset_duration_is_none_and_a_span_written_reads_back() -> None:
    v = Violations()
    message = interaction_pb2.PromiseMade(due_within=to_duration(timedelta(days=2)))

    assert from_duration(interaction_pb2.PromiseMade(), "due_within", "x", v) is None
    assert from_duration(message, "due_within", "x", v) == timedelta(days=2)
    assert to_duration(None) is None
    assert not v


# --- EnumMap ----------------------------------------------------------------------------------


class Channel(enum.StrEnum):
    """A domain twin of crm.interactions.v1.Channel."""

    IN_PERSON = "IN_PERSON"
    PHONE = "PHONE"
    EMAIL = "EMAIL"
    POSTAL_MAIL = "POSTAL_MAIL"
    CHAT = "CHAT"
    SOCIAL = "SOCIAL"
    WEB = "WEB"
    OTHER = "OTHER"


CHANNELS = EnumMap(interaction_pb2.Channel, "CHANNEL", Channel)


@pytest.mark.parametrize("channel", list(Channel))
def test_every_domain_value_round_trips_through_its_proto_number(channel: Channel) -> None:
    v = Violations()
    number = CHANNELS.to_proto(channel)

    assert interaction_pb2.Channel.Name(number) == f"CHANNEL_{channel.value}"
    assert CHANNELS.parse(number, "interaction.channel", v) is channel
    assert CHANNELS.read(number) is channel
    assert not v


def test_zero_is_unset_both_ways() -> None:
    v = Violations()

    assert CHANNELS.to_proto(None) == interaction_pb2.CHANNEL_UNSPECIFIED == 0
    assert CHANNELS.parse(0, "interaction.channel", v) is None
    assert CHANNELS.read(0) is None
    assert not v


def test_a_request_with_an_unknown_number_gets_a_violation_named_by_its_path() -> None:
    v = Violations()

    assert CHANNELS.parse(99, "interactions[2].channel", v) is None

    assert violations(v) == (FieldViolation("interactions[2].channel", "99 is not a known value"),)


def test_an_event_with_a_newer_value_reads_it_as_unset() -> None:
    # An older consumer keeps working when the producer learns a new channel
    assert CHANNELS.read(99) is None
    assert CHANNELS.read(-1) is None


def test_a_proto_value_the_domain_lacks_is_unknown_to_requests_and_unset_in_events() -> None:
    class Reachable(enum.StrEnum):
        PHONE = "PHONE"
        EMAIL = "EMAIL"

    reachable = EnumMap(interaction_pb2.Channel, "CHANNEL", Reachable)
    v = Violations()

    assert reachable.parse(interaction_pb2.CHANNEL_CHAT, "channel", v) is None
    assert reachable.read(interaction_pb2.CHANNEL_CHAT) is None
    assert violations(v) == (FieldViolation("channel", "5 is not a known value"),)


def test_a_domain_value_the_contract_lacks_is_refused_when_the_map_is_declared() -> None:
    class Channels(enum.StrEnum):
        EMAIL = "EMAIL"
        CARRIER_PIGEON = "CARRIER_PIGEON"

    with pytest.raises(ValueError, match="CHANNEL_CARRIER_PIGEON"):
        EnumMap(interaction_pb2.Channel, "CHANNEL", Channels)
