"""The platform's gauges read from elsewhere, set by the runtime's metrics refresher: the
outbox's oldest waiting event (on SQLite and MongoDB), and each durable consumer's lag as
JetStream counts it, on a real nats-server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from devtools.natsserver import NatsServer
from devtools.run import observability_lines
from promesa.bus import IN_FLIGHT_BATCHES, DurableConsumer, EventBus
from promesa.clock import ManualClock
from promesa.events import IncomingEvent
from promesa.settings import CommonSettings, ConfigError, Env
from tests.platform import test_outbox_claims as claims
from tests.platform.test_store_contract import START, Note, creating, event
from tests.support import eventually

# The relays' fixtures: two replicas on SQLite and on MongoDB whose relays do not run.
open_store = claims.open_store
clock = claims.clock
quiet_replicas = claims.quiet_replicas
Replica = claims.Replica
NOTES_STREAM = claims.NOTES_STREAM


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_the_oldest_age_is_that_of_the_oldest_event_waiting_and_0_once_published(
    quiet_replicas: list[Replica], clock: ManualClock
) -> None:
    [replica, _] = quiet_replicas
    # Given two events committed, the older one at START (the events' time),
    await replica.store.commit(creating(Note("n-1", "first", 1), event("e-1")))
    await replica.store.commit(creating(Note("n-2", "second", 1), event("e-2", about="n-2")))
    # when the relay is measured 90 s later, without having published,
    await replica.relay.measure(START + timedelta(seconds=90))
    # then the gauges show both waiting, the oldest for 90 s,
    assert gauge("promesa_outbox_backlog", service="notes") == 2
    assert gauge("promesa_outbox_oldest_age_seconds", service="notes") == 90
    # and once they are published, nothing waits.
    assert await replica.relay.flush() == 2
    assert gauge("promesa_outbox_oldest_age_seconds", service="notes") == 0  # at once
    await replica.relay.measure(START + timedelta(seconds=120))
    assert gauge("promesa_outbox_backlog", service="notes") == 0
    assert gauge("promesa_outbox_oldest_age_seconds", service="notes") == 0


async def test_an_event_stamped_after_the_measure_reads_as_0_not_negative(
    quiet_replicas: list[Replica],
) -> None:
    [replica, _] = quiet_replicas
    await replica.store.commit(creating(Note("n-1", "first", 1), event("e-1")))
    await replica.relay.measure(START - timedelta(seconds=5))  # another replica's clock
    assert gauge("promesa_outbox_oldest_age_seconds", service="notes") == 0


async def test_a_consumers_lag_is_what_jetstream_holds_for_it_and_what_it_has_not_acked(
    nats_server: NatsServer,
) -> None:
    bus = EventBus(nats_server.url, name="notes-lag")
    await bus.connect()
    await bus.declare_stream(NOTES_STREAM)
    entered, gate = asyncio.Event(), asyncio.Event()

    async def handler(_: IncomingEvent) -> None:
        entered.set()
        await gate.wait()

    async def no_dead_letters(consumer: str, e: IncomingEvent, error: str) -> None:
        raise AssertionError(error)

    consumer = DurableConsumer(
        bus,
        service="notes",
        stream=NOTES_STREAM,
        durable="notes-lag",
        filter_subjects=["crm.notes.>"],
        handler=handler,
        dead_letters=no_dead_letters,
        batch=1,  # so at most IN_FLIGHT_BATCHES are taken while the first is held
    )
    labels = {"service": "notes", "consumer": "notes-lag"}
    await consumer.measure()  # not created yet: nothing shown, nothing raised
    assert gauge("promesa_consumer_pending_messages", **labels) is None
    running = asyncio.create_task(consumer.run())
    try:
        # Given a consumer busy with one event (delivered, not acknowledged yet),
        await bus.publish_batch([event("e-0")])
        await asyncio.wait_for(entered.wait(), 10)
        # when six more are published,
        await bus.publish_batch([event(f"e-{n}", about=f"n-{n}") for n in range(1, 7)])

        async def shown() -> tuple[float | None, float | None]:
            await consumer.measure()
            pending = gauge("promesa_consumer_pending_messages", **labels)
            return pending, gauge("promesa_consumer_ack_pending_messages", **labels)

        # then the consumer takes as many as it may have in flight and leaves the rest pending.
        await eventually(lambda: _equal(shown(), (7 - IN_FLIGHT_BATCHES, IN_FLIGHT_BATCHES)))

        # and once it is free, it catches up to nothing pending.
        gate.set()

        await eventually(lambda: _equal(shown(), (0, 0)))
    finally:
        gate.set()  # a failed assertion must not leave the consumer's stop waiting on it
        consumer.stop()
        await running
        await bus.close()


def load(**environ: str) -> CommonSettings:
    env = Env({"CRM_API_TOKENS": "t1=agent-ana:agent", **environ})
    return CommonSettings.from_env("followup", grpc_port=50053, metrics_port=9103, env=env)


@pytest.mark.parametrize("seconds", ["0.5", "7200"])
def test_the_refresh_period_is_bounded(seconds: str) -> None:
    with pytest.raises(ConfigError, match="CRM_METRICS_REFRESH_SECONDS"):
        load(CRM_METRICS_REFRESH_SECONDS=seconds)


def test_the_refresh_period_defaults_to_30_seconds() -> None:
    assert load().metrics_refresh_seconds == 30
    assert load(CRM_METRICS_REFRESH_SECONDS="5").metrics_refresh_seconds == 5


def test_the_dev_banner_says_how_often_gauges_refresh_and_how_to_see_traces() -> None:
    off = observability_lines({})
    on = observability_lines({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://u:secret@jaeger:4317"})
    assert "refreshed every 30 s (CRM_METRICS_REFRESH_SECONDS)" in off[0]
    assert "set OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317" in off[1]
    assert "exported by OTLP to http://jaeger:4317" in on[1] and "secret" not in on[1]


async def _equal(value: Awaitable[object], expected: object) -> bool:
    return await value == expected
