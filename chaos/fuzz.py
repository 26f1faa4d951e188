"""Generated requests for every unary RPC of the three services (R8): hypothesis strategies
built from the request messages' descriptors in the generated *_pb2 modules, so a field added
to a proto is fuzzed without touching this file.

Values lean to what breaks servers: boundary integers, enum numbers no version knows, control
characters, huge and empty strings, timestamps and durations outside what protobuf allows,
nested messages several levels deep. Every call has a deadline; a call that runs into it is a
hang.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from crm.contacts.v1 import contacts_service_pb2 as contacts_pb
from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.interactions.v1 import interactions_service_pb2 as interactions_pb

SERVICES = {
    "contacts": contacts_pb.DESCRIPTOR.services_by_name["ContactsService"],
    "interactions": interactions_pb.DESCRIPTOR.services_by_name["InteractionsService"],
    "followup": followup_pb.DESCRIPTOR.services_by_name["FollowupService"],
}
NASTY_TEXT = (
    "",
    " ",
    "\x00",
    "a\x1bb",
    "line\nbreak",
    "é" * 3,
    "x" * 5000,
    "crm.>",
    "*",
    "../../etc/passwd",
    "' OR 1=1 --",
    "\u202eevil",
    "00000000-0000-0000-0000-000000000000",
    "9999-12-31T23:59:59Z",
    "=,:",
)
INT32 = st.one_of(
    st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 2**31 - 1, -(2**31)])
)
INT64 = st.one_of(
    st.integers(-(2**63), 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1, -(2**63), 253402300800])
)
TEXT = st.one_of(
    st.sampled_from(NASTY_TEXT),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=40),
)
MAX_DEPTH = 3


def _scalar(f: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = f.type
    if t == FieldDescriptor.TYPE_STRING:
        return TEXT
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE,):
        return st.floats(allow_nan=True, allow_infinity=True)
    if t == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if t in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
    ):
        return INT64
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.integers(0, 2**64 - 1)
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.integers(0, 2**32 - 1)
    if t == FieldDescriptor.TYPE_ENUM:
        assert f.enum_type is not None
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), INT32)  # open enums: unknown numbers too
    return INT32


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """A message of this type with any subset of its fields set to generated values."""
    cls = message_factory.GetMessageClass(descriptor)
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.builds(lambda s, n: cls(seconds=s, nanos=n), INT64, INT32)
    if depth > MAX_DEPTH:
        return st.just(cls())
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for f in descriptor.fields:
        optional[f.name] = _field(f, depth)
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _build(cls, descriptor, values)
    )


def _field(f: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        entry = f.message_type
        assert entry is not None
        if entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return st.dictionaries(_scalar(key), _scalar(value), max_size=4)
        one = message_strategy(entry, depth + 1)
        return st.lists(one, max_size=4) if _repeated(f) else one
    return st.lists(_scalar(f), max_size=6) if _repeated(f) else _scalar(f)


def _repeated(f: FieldDescriptor) -> bool:
    return bool(f.is_repeated)


def _build(cls: Any, descriptor: Descriptor, values: dict[str, Any]) -> Message:
    msg = cls()
    for name, value in values.items():
        f = descriptor.fields_by_name[name]
        target = (
            getattr(msg, name) if _repeated(f) or f.type == FieldDescriptor.TYPE_MESSAGE else None
        )
        entry = f.message_type
        if entry is not None and entry.GetOptions().map_entry:
            for k, v in value.items():
                target[k] = v  # type: ignore[index]
        elif f.type == FieldDescriptor.TYPE_MESSAGE and _repeated(f):
            for item in value:
                target.add().CopyFrom(item)  # type: ignore[union-attr]
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            target.CopyFrom(value)  # type: ignore[union-attr]
        elif _repeated(f):
            target.extend(value)  # type: ignore[union-attr]
        else:
            setattr(msg, name, value)
    return msg  # type: ignore[no-any-return]


def generate(method: MethodDescriptor, count: int, seed: int = 12) -> list[Message]:
    """`count` requests (hypothesis may give fewer for a tiny message: those are repeated)."""
    found: list[Message] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(message_strategy(method.input_type))
    def collect(request: Message) -> None:
        found.append(request)

    collect()
    if not found:
        found.append(message_factory.GetMessageClass(method.input_type)())
    while len(found) < count:
        found.extend(found[: count - len(found)])
    return found[:count]


@dataclass
class FuzzResult:
    calls: int = 0
    codes: Counter[str] = field(default_factory=Counter)
    per_rpc: dict[str, dict[str, int]] = field(default_factory=dict)
    unknown_or_internal: list[str] = field(default_factory=list)  # rpc: details
    hangs: int = 0
    seconds: float = 0.0


def unary_methods(service: str) -> list[MethodDescriptor]:
    return [
        m for m in SERVICES[service].methods if not m.client_streaming and not m.server_streaming
    ]


async def fuzz(
    channels: dict[str, grpc.aio.Channel],
    metadata: tuple[tuple[str, str], ...],
    *,
    per_rpc: int,
    deadline: float = 5.0,
    concurrency: int = 16,
    skip: Callable[[str], bool] = lambda name: False,
) -> FuzzResult:
    """Sends `per_rpc` generated requests to every unary RPC (streams are left out: they are
    meant to run until the caller hangs up); counts status codes."""
    result = FuzzResult()
    started = time.monotonic()
    gate = asyncio.Semaphore(concurrency)
    for service, channel in channels.items():
        for method in unary_methods(service):
            name = f"{SERVICES[service].full_name}/{method.name}"
            if skip(name):
                continue
            requests = await asyncio.to_thread(generate, method, per_rpc)
            output = message_factory.GetMessageClass(method.output_type)
            call: Any = channel.unary_unary(
                f"/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=output.FromString,
            )
            codes: Counter[str] = Counter()

            async def one(
                request: Message, call: Any = call, codes: Counter[str] = codes, name: str = name
            ) -> None:
                async with gate:
                    try:
                        await call(request, metadata=metadata, timeout=deadline)
                        codes["OK"] += 1
                    except grpc.aio.AioRpcError as exc:
                        code = exc.code()
                        codes[code.name] += 1
                        if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                            result.unknown_or_internal.append(
                                f"{name}: {code.name} {exc.details()!r:.200} <- {request!r:.300}"
                            )
                        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                            result.hangs += 1

            await asyncio.gather(*(one(r) for r in requests))
            result.per_rpc[name] = dict(codes)
            result.codes.update(codes)
            result.calls += sum(codes.values())
    result.seconds = round(time.monotonic() - started, 2)
    return result
