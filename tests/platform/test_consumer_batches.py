"""A consumer handles events as they arrive, concurrently across contacts and in order within
one: events about the same contact never overlap, events about different contacts do, and
events fetched later do not wait for a slow one about another contact (the order itself is
tested without NATS in test_in_flight)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from devtools.natsserver import NatsServer
from promesa.bus import DurableConsumer, EventBus, Handler, StreamSpec
from promesa.events import IncomingEvent
from tests.support import eventually

STREAM = StreamSpec("CRM_BATCH_TESTS", ("crm.batches.>",))
PATIENCE = 10.0  # seconds a gate waits before the test gives up on the overlap it expects


@contextlib.asynccontextmanager
async def consuming(nats: NatsServer, handler: Handler) -> AsyncIterator[EventBus]:
    bus = EventBus(nats.url, name="consumer-batches-test")
    await bus.connect()
    await bus.declare_stream(STREAM)
    consumer = DurableConsumer(
        bus,
        service="tests",
        stream=STREAM,
        durable="tests-batches",
        filter_subjects=["crm.batches.>"],
        handler=handler,
        dead_letters=_no_dead_letters,
        ack_wait=5.0,
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


async def _no_dead_letters(consumer: str, event: IncomingEvent, error: str) -> None:
    raise AssertionError(f"{event.event_id} was dead-lettered: {error}")


async def publish(bus: EventBus, event_id: str, contact: str) -> None:
    await bus.js.publish(f"crm.batches.happened.{contact}", b"", headers={"ce-id": event_id})


async def test_events_about_one_contact_apply_in_order_while_other_contacts_overlap(
    nats_server: NatsServer,
) -> None:
    steps: list[str] = []
    rest_published = asyncio.Event()
    b_started = asyncio.Event()
    overlapped: list[bool] = []

    async def handler(event: IncomingEvent) -> None:
        steps.append(f"start {event.event_id}")
        if event.event_id == "opener":
            # Held until the rest is in the stream, so that the next fetch takes it at once.
            await asyncio.wait_for(rest_published.wait(), PATIENCE)
        elif event.event_id == "a1":
            # Finishes only once contact B's event has started beside it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(b_started.wait(), PATIENCE)
            overlapped.append(b_started.is_set())
        elif event.event_id == "b1":
            b_started.set()
        await asyncio.sleep(0)  # a commit's await: others may run meanwhile
        steps.append(f"end {event.event_id}")

    async with consuming(nats_server, handler) as bus:
        # Given a consumer busy with one event while three more arrive,
        await publish(bus, "opener", "contact-0")
        await eventually(lambda: _async("start opener" in steps), timeout=10)
        for event_id, contact in (("a1", "contact-a"), ("b1", "contact-b"), ("a2", "contact-a")):
            await publish(bus, event_id, contact)
        # when it fetches them as one batch,
        rest_published.set()
        await eventually(lambda: _async(len(steps) == 8), timeout=PATIENCE + 5)

    # then contact B's event ran while contact A's first was still under way,
    assert overlapped == [True]
    assert steps.index("start b1") < steps.index("end a1")
    # and contact A's second began only after its first ended.
    assert steps.index("end a1") < steps.index("start a2")


async def _async(value: object) -> object:
    return value


async def test_events_fetched_later_do_not_wait_for_a_slow_one_about_another_contact(
    nats_server: NatsServer,
) -> None:
    handled: list[str] = []
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(event: IncomingEvent) -> None:
        if event.event_id == "slow":
            started.set()
            await asyncio.wait_for(release.wait(), PATIENCE)  # a commit waiting for the disk
        handled.append(event.event_id)

    async with consuming(nats_server, handler) as bus:
        # Given a consumer held up by one event,
        await publish(bus, "slow", "contact-0")
        await asyncio.wait_for(started.wait(), PATIENCE)
        # when twenty more about other contacts arrive (batches of 10: several fetches),
        for n in range(20):
            await publish(bus, f"e{n}", f"contact-{n + 1}")
        # then they are all handled while the first is still under way,
        await eventually(lambda: _async(len(handled) == 20), timeout=PATIENCE)
        assert "slow" not in handled
        release.set()
        # and the first finishes after them.
        await eventually(lambda: _async(handled[-1:] == ["slow"]), timeout=PATIENCE)
