"""A consumer tells errors apart: one no retry can fix goes to the dead letters at its first
delivery, a transient one is retried with back-off and then succeeds, and a handler that runs
longer than the ack wait is kept in progress instead of being redelivered."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import DecodeError
from prometheus_client import REGISTRY

from devtools.natsserver import NatsServer
from promesa.bus import DurableConsumer, EventBus, Handler, StreamSpec
from promesa.errors import (
    ContentionError,
    FieldViolation,
    InvalidArgumentError,
    UnavailableError,
    is_permanent,
)
from promesa.events import IncomingEvent, PermanentEventError, UndecodableEventError
from tests.support import eventually

STREAM = StreamSpec("CRM_TESTS", ("crm.tests.>",))


class Letters:
    """The dead-letter sink: what the store would record."""

    def __init__(self) -> None:
        self.items: list[tuple[str, IncomingEvent, str]] = []

    async def __call__(self, consumer: str, event: IncomingEvent, error: str) -> None:
        self.items.append((consumer, event, error))


@contextlib.asynccontextmanager
async def consuming(
    nats: NatsServer,
    handler: Handler,
    letters: Letters,
    *,
    ack_wait: float = 5.0,
) -> AsyncIterator[EventBus]:
    bus = EventBus(nats.url, name="consumer-errors-test")
    await bus.connect()
    await bus.declare_stream(STREAM)

    consumer = DurableConsumer(
        bus,
        service="tests",
        stream=STREAM,
        durable="tests-errors",
        filter_subjects=["crm.tests.>"],
        handler=handler,
        dead_letters=letters,
        ack_wait=ack_wait,
        max_deliver=5,
        batch=10,
    )
    task = asyncio.create_task(consumer.run())
    try:
        yield bus
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 10)
        await bus.close()


async def publish(bus: EventBus, event_id: str, data: bytes) -> None:
    await bus.js.publish("crm.tests.happened.c1", data, headers={"ce-id": event_id})


def far_future_timestamp() -> bytes:
    """A payload whose time is the last second of year 9999: readable, but any time after it
    (a window, a due date) overflows."""
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC))
    return ts.SerializeToString()


async def test_an_event_that_overflows_is_dead_lettered_at_its_first_delivery(
    nats_server: NatsServer,
) -> None:
    calls: list[int] = []

    async def handler(event: IncomingEvent) -> None:
        calls.append(event.delivery)
        ts = timestamp_pb2.Timestamp.FromString(event.data)
        ts.ToDatetime(tzinfo=UTC) + timedelta(days=90)  # OverflowError: past year 9999

    letters = Letters()
    async with consuming(nats_server, handler, letters) as bus:
        await publish(bus, "poison-1", far_future_timestamp())
        await eventually(lambda: _async(letters.items), timeout=5)

    [(consumer, event, error)] = letters.items
    assert (consumer, event.event_id, event.delivery) == ("tests-errors", "poison-1", 1)
    assert calls == [1]
    assert "OverflowError" in error and error.startswith("permanent")


async def test_a_transient_failure_is_retried_and_then_succeeds(
    nats_server: NatsServer,
) -> None:
    calls: list[int] = []

    async def handler(event: IncomingEvent) -> None:
        calls.append(event.delivery)
        if event.delivery == 1:
            raise ConnectionResetError("the peer went away")

    letters = Letters()
    before = handled_count()
    async with consuming(nats_server, handler, letters) as bus:
        await publish(bus, "blip-1", b"")
        await eventually(lambda: _async(len(calls) >= 2), timeout=10)

    assert calls == [1, 2]
    assert letters.items == []
    assert handled_count() - before == 2  # both deliveries timed, for choosing the ack wait


def handled_count() -> float:
    labels = {"service": "tests", "consumer": "tests-errors"}
    return REGISTRY.get_sample_value("promesa_event_handling_seconds_count", labels) or 0.0


async def test_a_handler_slower_than_the_ack_wait_is_kept_in_progress_not_redelivered(
    nats_server: NatsServer,
) -> None:
    """The ack wait is 1 s and the event takes 3 s. Another replica pulling meanwhile gets
    nothing: the heartbeat (every third of the ack wait) keeps the event in progress."""
    calls: list[tuple[str, int]] = []
    started = asyncio.Event()

    async def handler(event: IncomingEvent) -> None:
        calls.append((event.event_id, event.delivery))
        if event.event_id == "slow":
            started.set()
            await asyncio.sleep(3.0)  # the work itself is slow; the test waits by polling

    letters = Letters()
    async with consuming(nats_server, handler, letters, ack_wait=1.0) as bus:
        await publish(bus, "slow", b"")
        await asyncio.wait_for(started.wait(), 10)
        other = await bus.js.pull_subscribe_bind(durable="tests-errors", stream=STREAM.name)
        try:
            taken = await other.fetch(1, timeout=2.5)
        except nats.errors.TimeoutError:
            taken = []
        await other.unsubscribe()
        calls.extend((f"other replica took {m.headers}", 0) for m in taken)
        await publish(bus, "next", b"")
        await eventually(lambda: _async(len(calls) >= 2), timeout=10)

    assert calls == [("slow", 1), ("next", 1)]


@pytest.mark.parametrize(
    "exc",
    [
        UndecodableEventError("bad bytes"),
        PermanentEventError("contradicts a fact"),
        InvalidArgumentError([FieldViolation("contact_id", "must not be empty")]),
        ValueError("year 10000 is out of range"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
        OverflowError("date value out of range"),
        ZeroDivisionError("division by zero"),
        TypeError("unsupported operand"),
        KeyError("missing"),
        IndexError("list index out of range"),
        AttributeError("no attribute"),
    ],
)
def test_errors_no_retry_can_fix_are_permanent(exc: Exception) -> None:
    assert is_permanent(exc)


@pytest.mark.parametrize(
    "exc",
    [
        UnavailableError("the database is away"),
        ContentionError("contact", "c1"),
        TimeoutError(),
        ConnectionRefusedError(),
        RuntimeError("something we do not know"),
    ],
)
def test_everything_else_is_transient(exc: Exception) -> None:
    assert not is_permanent(exc)


def test_a_protobuf_decode_error_is_permanent() -> None:
    with pytest.raises(DecodeError) as caught:
        timestamp_pb2.Timestamp.FromString(b"\xff\xff\xff")
    assert is_permanent(caught.value)


async def _async(value: object) -> object:
    return value


async def test_an_idle_consumer_handles_a_lone_event_at_once_not_when_its_poll_ends(
    nats_server: NatsServer,
) -> None:
    """nats-py's fetch(n) keeps the first message until n have come or the poll times out (5 s):
    a consumer waiting for a batch would sit on a lone event that long."""
    handled: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def handler(event: IncomingEvent) -> None:
        handled[event.event_id] = loop.time()

    async with consuming(nats_server, handler, Letters()) as bus:
        for n in range(3):  # each published to a consumer that has gone idle again
            event_id = f"evt-lone-{n}"
            published = loop.time()
            await publish(bus, event_id, b"")

            async def seen(event_id: str = event_id) -> bool:
                return event_id in handled

            await eventually(seen, timeout=10)
            assert handled[event_id] - published < 1.0
