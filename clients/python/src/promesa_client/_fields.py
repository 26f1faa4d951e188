"""Puts Python values into proto messages by the proto's own field names, so that callers write
`channel="phone"`, `due_at=datetime(...)` or `postal_address={"locality": "Madrid"}` and never
handle enum numbers, Timestamps or FieldMasks themselves. A value that cannot go in raises
`errors.InvalidArgument` naming the field, as the server would."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, message_factory, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from promesa_client import errors

EnumArg = int | str


def enum_prefix(enum: EnumDescriptor) -> str:
    """`InteractionType` → `INTERACTION_TYPE_`: the prefix buf's lint puts on every value."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_value(enum: EnumDescriptor, value: EnumArg, field: str) -> int:
    """The number of an enum value given as a number, its full name or its short name
    (`"phone"`, `"in-person"`, `"CHANNEL_PHONE"`, `2`)."""
    if isinstance(value, bool):
        raise errors.invalid_argument(field, f"expected a {enum.name} value, got {value!r}")
    if isinstance(value, int):
        if value in enum.values_by_number:
            return value
        raise errors.invalid_argument(field, f"{value} is not a {enum.name} value")
    name = value.strip().upper().replace("-", "_").replace(" ", "_")
    for candidate in (enum_prefix(enum) + name, name):
        found = enum.values_by_name.get(candidate)
        if found is not None:
            return int(found.number)
    choices = ", ".join(short_names(enum))
    raise errors.invalid_argument(field, f"unknown {enum.name} {value!r}; one of: {choices}")


def short_names(enum: EnumDescriptor) -> list[str]:
    """The values a caller may name, lower case without the prefix (`"phone"`), UNSPECIFIED
    left out: what a CLI offers as choices."""
    prefix = enum_prefix(enum)
    return [
        v.name.removeprefix(prefix).lower()
        for v in enum.values
        if v.number != 0 and not v.name.endswith("_UNSPECIFIED")
    ]


def short_name(enum: EnumDescriptor, number: int) -> str:
    """`2` of Channel → `"phone"`; an unknown number (a newer server) as its digits."""
    found = enum.values_by_number.get(number)
    if found is None:
        return str(number)
    return str(found.name).removeprefix(enum_prefix(enum)).lower()


def timestamp(value: datetime | timestamp_pb2.Timestamp, field: str) -> timestamp_pb2.Timestamp:
    """A Timestamp from an aware datetime; a naive one is refused: Promesa is UTC on the wire
    and a guess about the caller's zone would move promises by hours."""
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    if not isinstance(value, datetime):
        raise errors.invalid_argument(field, f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise errors.invalid_argument(field, "a datetime with a time zone is required")
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def to_datetime(stamp: timestamp_pb2.Timestamp) -> datetime:
    """An aware UTC datetime from a Timestamp."""
    return stamp.ToDatetime(tzinfo=UTC)


def duration(value: timedelta | duration_pb2.Duration, field: str) -> duration_pb2.Duration:
    """A Duration from a timedelta."""
    if isinstance(value, duration_pb2.Duration):
        return value
    if not isinstance(value, timedelta):
        raise errors.invalid_argument(field, f"expected a timedelta, got {type(value).__name__}")
    span = duration_pb2.Duration()
    span.FromTimedelta(value)
    return span


def assign(message: Message, fields: Mapping[str, Any], path: str = "") -> None:
    """Sets each named field of `message`; None clears it (an update then empties it)."""
    for name, value in fields.items():
        _assign_one(message, name, value, f"{path}{name}")


def update_mask(fields: Iterable[str]) -> field_mask_pb2.FieldMask:
    """The FieldMask naming exactly the keyword arguments given to an update."""
    return field_mask_pb2.FieldMask(paths=sorted(fields))


def _assign_one(message: Message, name: str, value: Any, path: str) -> None:
    # Any: the stubs type descriptors as a union of the pure-Python and upb classes.
    field: Any = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        known = ", ".join(sorted(message.DESCRIPTOR.fields_by_name))
        raise errors.invalid_argument(
            path, f"{message.DESCRIPTOR.name} has no field {name!r}; fields: {known}"
        )
    if value is None:
        message.ClearField(name)
        return
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target_map = getattr(message, name)
        target_map.clear()
        target_map.update(value)
        return
    if field.is_repeated:
        if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
            raise errors.invalid_argument(path, "expected a list")
        target = getattr(message, name)
        del target[:]
        for i, item in enumerate(value):
            item_path = f"{path}[{i}]"
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                target.add().CopyFrom(_message_value(field, item, item_path))
            else:
                target.append(_scalar_value(field, item, item_path))
        return
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        getattr(message, name).CopyFrom(_message_value(field, value, path))
        return
    try:
        setattr(message, name, _scalar_value(field, value, path))
    except (TypeError, ValueError) as exc:
        raise errors.invalid_argument(path, str(exc)) from exc


def _scalar_value(field: Any, value: Any, path: str) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_value(field.enum_type, value, path)
    return value


def _message_value(field: Any, value: Any, path: str) -> Message:
    message_type = field.message_type
    full_name = message_type.full_name
    if full_name == "google.protobuf.Timestamp":
        return timestamp(value, path)
    if full_name == "google.protobuf.Duration":
        return duration(value, path)
    if isinstance(value, Message):
        if value.DESCRIPTOR.full_name != full_name:
            raise errors.invalid_argument(
                path, f"expected {full_name}, got {value.DESCRIPTOR.full_name}"
            )
        return value
    if isinstance(value, Mapping):
        built = message_factory.GetMessageClass(message_type)()
        assign(built, value, f"{path}.")
        return built
    raise errors.invalid_argument(
        path, f"expected {message_type.name} or a dict, got {type(value).__name__}"
    )
