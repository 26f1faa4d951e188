"""Traces across the outbox and NATS, on SQLite and on MongoDB and a real nats-server: a commit
keeps its trace context in the outbox row, a relay opened after the writer's store was closed
publishes it as the CloudEvents tracing headers, and a durable consumer continues the trace.
Untraced, nothing is recorded and nothing is added."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
import structlog
from nats.aio.msg import Msg
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from devtools.natsserver import NatsServer
from promesa import tracing
from promesa.bus import DurableConsumer, EventBus
from promesa.clock import ManualClock
from promesa.events import TRACEPARENT, IncomingEvent, OutgoingEvent
from promesa.logging import add_trace_ids
from promesa.outbox import OutboxRelay
from tests.platform.test_outbox_claims import NOTES_STREAM, OpenStore, open_store
from tests.platform.test_store_contract import START, Note, creating, event
from tests.support import eventually

__all__ = ["open_store"]  # the fixture, by name


@contextlib.contextmanager
def traced(*services: str) -> Iterator[InMemorySpanExporter]:
    """Each service traced by a provider of its own (its `service.name`), all into one
    in-memory exporter; untraced again afterwards."""
    exporter = InMemorySpanExporter()
    providers = []
    for service in services:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracing.install(service, provider)
        providers.append(provider)
    try:
        yield exporter
    finally:
        for service, provider in zip(services, providers, strict=True):
            tracing.uninstall(service)
            provider.shutdown()


def service_of(span: ReadableSpan) -> str:
    return str(span.resource.attributes["service.name"])


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def named(spans: tuple[ReadableSpan, ...], prefix: str) -> ReadableSpan:
    [found] = [s for s in spans if s.name.startswith(prefix)]
    return found


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[EventBus]:
    connected = EventBus(nats_server.url, name="notes-tracing")
    await connected.connect()
    await connected.declare_stream(NOTES_STREAM)
    yield connected
    await connected.close()


@pytest.fixture
async def headers_seen(nats_server: NatsServer) -> AsyncIterator[list[dict[str, str]]]:
    """The headers of every note event, as a plain core-NATS subscriber receives them."""
    seen: list[dict[str, str]] = []
    nc = await nats.connect(nats_server.url)

    async def keep(msg: Msg) -> None:
        seen.append(dict(msg.headers or {}))

    await nc.subscribe("crm.notes.>", cb=keep)
    await nc.flush()
    yield seen
    await nc.close()


async def consume_one(bus: EventBus, service: str) -> IncomingEvent:
    """Runs a durable consumer of the notes until it has handled one event."""
    handled: asyncio.Future[IncomingEvent] = asyncio.get_running_loop().create_future()

    async def handler(event: IncomingEvent) -> None:
        if not handled.done():
            handled.set_result(event)

    async def no_dead_letters(consumer: str, event: IncomingEvent, error: str) -> None:
        raise AssertionError(error)

    consumer = DurableConsumer(
        bus,
        service=service,
        stream=NOTES_STREAM,
        durable="notes-reader",
        filter_subjects=["crm.notes.>"],
        handler=handler,
        dead_letters=no_dead_letters,
    )
    running = asyncio.create_task(consumer.run())
    try:
        return await asyncio.wait_for(handled, 10)
    finally:
        consumer.stop()
        await running


async def test_a_relay_opened_after_a_restart_continues_the_writers_trace_into_the_consumer(
    open_store: OpenStore, clock: ManualClock, bus: EventBus, headers_seen: list[dict[str, str]]
) -> None:
    with traced("notes", "reader") as exporter:
        # Given a note written in traced work, its store then closed before any relay ran,
        store = await open_store(clock)
        bound = tracing.bind(tracing.tracer_of("notes"))
        try:
            with tracing.working("write note"):
                await store.commit(creating(Note("n-1", "x"), event("e-1")))
        finally:
            tracing.unbind(bound)
        await store.close()
        commit = named(exporter.get_finished_spans(), "store.commit")

        # when a store and a relay opened afresh (another process) publish the outbox,
        reopened = await open_store(clock)
        [(_, kept)] = await reopened.pending_events(10)
        assert kept.traceparent.split("-")[1:3] == [
            format(commit.context.trace_id, "032x"),
            format(commit.context.span_id, "016x"),
        ]
        relay = OutboxRelay(reopened, bus, service="notes")
        assert await relay.flush() == 1
        await reopened.close()
        # and a durable consumer of another service handles the event,
        incoming = await consume_one(bus, "reader")
        assert incoming.event_id == "e-1"

        # then the publish continues the commit's trace, and the consumer the publish's.
        spans = exporter.get_finished_spans()
        publish = named(spans, "publish crm.notes.v1.NoteWritten")
        process = named(spans, "process crm.notes.v1.NoteWritten")
        relay_batch = named(spans, "outbox.relay")
        assert {s.context.trace_id for s in (commit, publish, process)} == {commit.context.trace_id}
        assert parent_of(publish) == commit.context.span_id
        assert parent_of(process) == publish.context.span_id
        assert [link.context.span_id for link in relay_batch.links] == [commit.context.span_id]
        assert (service_of(publish), service_of(process)) == ("notes", "reader")
        await eventually(lambda: _as_list(headers_seen))
        [headers] = headers_seen
        assert headers[TRACEPARENT].split("-")[2] == format(publish.context.span_id, "016x")


async def _as_list(items: list[dict[str, str]]) -> list[dict[str, str]]:
    return items


async def test_untraced_writes_publish_no_trace_headers_and_record_nothing(
    open_store: OpenStore, clock: ManualClock, bus: EventBus, headers_seen: list[dict[str, str]]
) -> None:
    store = await open_store(clock)
    try:
        # Given no provider for the service, a write and its relay
        with tracing.working("write note"):
            await store.commit(creating(Note("n-1", "x"), event("e-1")))
        [(_, kept)] = await store.pending_events(10)
        assert (kept.traceparent, kept.tracestate) == ("", "")
        assert await OutboxRelay(store, bus, service="notes").flush() == 1
    finally:
        await store.close()

    # then the event goes out with the usual CloudEvents headers only.
    [headers] = await eventually(lambda: _as_list(headers_seen))
    assert TRACEPARENT not in headers
    assert headers["ce-id"] == "e-1"


async def test_a_kept_trace_context_is_passed_on_by_an_untraced_relay(
    open_store: OpenStore, clock: ManualClock, bus: EventBus, headers_seen: list[dict[str, str]]
) -> None:
    # Given a row written while tracing was on (the writer's process had an exporter),
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    store = await open_store(clock)
    try:
        with traced("notes"):
            bound = tracing.bind(tracing.tracer_of("notes"))
            try:
                with tracing.working("write note", parent=parent):
                    await store.commit(creating(Note("n-1", "x"), event("e-1")))
            finally:
                tracing.unbind(bound)
        # when a relay without tracing publishes it,
        assert await OutboxRelay(store, bus, service="notes").flush() == 1
    finally:
        await store.close()

    # then the event still carries the writer's trace, for a consumer that traces.
    [headers] = await eventually(lambda: _as_list(headers_seen))
    assert headers[TRACEPARENT].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"


def test_log_lines_carry_the_trace_and_span_ids_while_a_span_is_active(
    capsys: pytest.CaptureFixture[str],
) -> None:
    structlog.configure(
        processors=[add_trace_ids, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )
    log = structlog.get_logger("tracing-test")
    try:
        with traced("notes") as exporter:
            bound = tracing.bind(tracing.tracer_of("notes"))
            try:
                with tracing.working("a unit of work"):
                    log.info("inside")
            finally:
                tracing.unbind(bound)
            log.info("outside")
        [span] = exporter.get_finished_spans()
    finally:
        structlog.reset_defaults()
    inside, outside = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert inside["trace_id"] == format(span.context.trace_id, "032x")
    assert inside["span_id"] == format(span.context.span_id, "016x")
    assert "trace_id" not in outside and "span_id" not in outside


def test_export_is_configured_only_when_an_otlp_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing.configure_from_environment("notes") is False
    assert tracing.provider_of("notes") is None
    assert not tracing.enabled(tracing.tracer_of("notes"))

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "notes-eu")
    assert tracing.configure_from_environment("notes") is True
    provider = tracing.provider_of("notes")
    try:
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "notes-eu"
        assert tracing.enabled(tracing.tracer_of("notes"))
    finally:
        tracing.uninstall("notes")
        if provider is not None:
            provider.shutdown()


def test_the_stored_context_is_read_back_from_a_row_without_the_columns() -> None:
    # An outbox row or document written before traces has no traceparent at all.
    row = {**event("e-1").row()}
    del row["traceparent"], row["tracestate"]
    assert OutgoingEvent.from_row(row).traceparent == ""
    assert tracing.remote_context("not-a-traceparent") is None
    assert tracing.remote_context("") is None


def test_nothing_is_stamped_outside_traced_work() -> None:
    events = [event("e-1")]
    assert tracing.stamped(events) is events
    assert tracing.trace_headers() == {}
    assert tracing.current_traceparent() == ""


@pytest.fixture(autouse=True)
def _untraced_afterwards() -> Iterator[None]:
    yield
    assert tracing.provider_of("notes") is None
