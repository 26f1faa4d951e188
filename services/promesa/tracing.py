"""OpenTelemetry traces across gRPC and NATS: one tracer per service, the trace context of a
write kept with its outbox rows and carried to consumers as CloudEvents tracing headers.

Off unless OTEL_EXPORTER_OTLP_ENDPOINT is set (or a test installs a provider): then no SDK,
no exporter, no gRPC tracing interceptor, and each helper here returns after one lookup
(about a microsecond), starting no span and stamping nothing.

Tracers are per service, not the SDK's global one, so that the three services in one test
process each report under their own name; the tracer of the work at hand travels in a context
variable, bound by the runtime for its calls and workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from typing import TYPE_CHECKING

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from promesa.events import TRACEPARENT, TRACESTATE, OutgoingEvent

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

_PROPAGATOR = TraceContextTextMapPropagator()
_NO_TRACER = trace.NoOpTracer()
_tracers: dict[str, Tracer] = {}
_providers: dict[str, TracerProvider] = {}
# The tracer of the service whose work runs in this context (a call, an event, a delivery):
# what the stores' commit spans use, as three services may share one process in tests.
_CURRENT: ContextVar[Tracer] = ContextVar("promesa_tracer", default=_NO_TRACER)


def configure_from_environment(service: str) -> bool:
    """Exports this service's spans by OTLP (gRPC) when OTEL_EXPORTER_OTLP_ENDPOINT is set,
    with the SDK's standard variables (OTEL_SERVICE_NAME, default the service's name;
    OTEL_TRACES_SAMPLER and its argument; OTEL_EXPORTER_OTLP_*). Returns whether it did."""
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    # Imported only here: a service that does not export never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(service, provider)
    return True


def install(service: str, provider: TracerProvider) -> None:
    """Traces `service` with `provider` (configure_from_environment, or a test's in-memory
    exporter); the runtime then adds the gRPC instrumentation's interceptor."""
    _providers[service] = provider
    _tracers[service] = provider.get_tracer("promesa")


def uninstall(service: str) -> None:
    """Stops tracing `service` (tests); spans already started end as they would."""
    _providers.pop(service, None)
    _tracers.pop(service, None)


def server_interceptor(provider: TracerProvider) -> grpc.aio.ServerInterceptor:
    """The official gRPC instrumentation's server span per call, continuing the caller's
    `traceparent` metadata; not for probes and tooling (health, reflection), which would fill
    the traces with a span per probe. Imported here: untraced services never load it."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    from promesa.interceptors import OPEN_PREFIXES  # the one list of calls open to probes

    def traced_call(details: grpc.HandlerCallDetails) -> bool:
        return not str(details.method).startswith(OPEN_PREFIXES)

    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=provider, filter_=traced_call
    )
    return interceptor


def provider_of(service: str) -> TracerProvider | None:
    """The service's provider, None when it is not traced."""
    return _providers.get(service)


def tracer_of(service: str) -> Tracer:
    """The service's tracer; the no-op one when it is not traced."""
    return _tracers.get(service, _NO_TRACER)


def enabled(tracer: Tracer) -> bool:
    """Whether `tracer` records (it is not the stand-in of an untraced service)."""
    return tracer is not _NO_TRACER


def bind(tracer: Tracer) -> object:
    """Makes `tracer` the one of the work in this context; returns what `unbind` takes."""
    return _CURRENT.set(tracer)


def unbind(token: object) -> None:
    _CURRENT.reset(token)  # type: ignore[arg-type]


@contextmanager
def commit_span(events: Sequence[OutgoingEvent]) -> Iterator[Sequence[OutgoingEvent]]:
    """A span for one store commit of the current work, and its events stamped with it: the
    outbox keeps the context, so the relay continues this trace however late it publishes."""
    tracer = _CURRENT.get()
    # Only within traced work (a call, an event, a delivery): a worker's bookkeeping (the
    # relay's claims, a sweep that finds nothing) would start a trace of its own every time.
    if tracer is _NO_TRACER or not trace.get_current_span().get_span_context().is_valid:
        yield events
        return
    with tracer.start_as_current_span("store.commit") as span:
        span.set_attribute("promesa.events", len(events))
        yield stamped(events)


def stamped(events: Sequence[OutgoingEvent]) -> Sequence[OutgoingEvent]:
    """The events with the current span's trace context (unchanged when none is active)."""
    headers = trace_headers()
    if not headers or not events:
        return events
    parent, state = headers[TRACEPARENT], headers.get(TRACESTATE, "")
    return [replace(e, traceparent=parent, tracestate=state) for e in events]


def trace_headers() -> dict[str, str]:
    """The current span's context as `ce-traceparent` (and `ce-tracestate`); {} without one."""
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return {
        TRACEPARENT: carrier["traceparent"],
        **({TRACESTATE: carrier["tracestate"]} if carrier.get("tracestate") else {}),
    }


def remote_context(traceparent: str, tracestate: str = "") -> otel_context.Context | None:
    """The context a W3C `traceparent` names (None when empty or malformed)."""
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent, **({"tracestate": tracestate} if tracestate else {})}
    ctx = _PROPAGATOR.extract(carrier)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


def context_of_headers(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    """The remote context of a consumed event's `ce-traceparent`/`ce-tracestate` headers."""
    h = headers or {}
    return remote_context(h.get(TRACEPARENT, ""), h.get(TRACESTATE, ""))


def link_to(ctx: otel_context.Context | None) -> list[Link]:
    """A link to the span `ctx` names (none without one): how a batch points at its rows'."""
    return [Link(trace.get_current_span(ctx).get_span_context())] if ctx is not None else []


@contextmanager
def relay_batch(service: str, events: Sequence[OutgoingEvent]) -> Iterator[Sequence[OutgoingEvent]]:
    """A span for one relay batch, and for each event a producer span, child of the context
    its outbox row kept (however long ago, whichever process wrote it), ended when the batch
    is acknowledged; yields the events to publish, each carrying its producer span's context.
    Untraced, the events go as they are: a kept context is still passed on."""
    tracer = _tracers.get(service)
    if tracer is None:
        yield events
        return
    links = [link for e in events for link in link_to(remote_context(e.traceparent, e.tracestate))]
    with tracer.start_as_current_span(
        "outbox.relay", links=links, attributes={"promesa.events": len(events)}
    ) as batch:
        spans = [
            tracer.start_span(
                f"publish {e.type}",  # the CloudEvents type: subjects hold ids
                context=remote_context(e.traceparent, e.tracestate),
                kind=trace.SpanKind.PRODUCER,
                links=[Link(batch.get_span_context())],
                attributes={
                    "messaging.system": "nats",
                    "messaging.destination.name": e.subject,
                    "messaging.message.id": e.event_id,
                },
            )
            for e in events
        ]
        try:
            yield [_with_context(e, span) for e, span in zip(events, spans, strict=True)]
        except BaseException as exc:
            for span in spans:
                span.record_exception(exc)
                span.set_status(trace.StatusCode.ERROR)
            raise
        finally:
            for span in spans:
                span.end()


def _with_context(event: OutgoingEvent, span: trace.Span) -> OutgoingEvent:
    """The event carrying `span`'s context instead of the one its row kept."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return replace(
        event, traceparent=carrier["traceparent"], tracestate=carrier.get("tracestate", "")
    )


@contextmanager
def consuming(
    service: str, subject: str, headers: Mapping[str, str] | None, consumer: str
) -> Iterator[None]:
    """The span of one consumed event: a child of the context its headers carry (the producer
    span of the relay that published it), current while the handler runs, so its commit and
    the events that commit writes continue the trace."""
    tracer = _tracers.get(service)
    if tracer is None:
        yield
        return
    token = _CURRENT.set(tracer)
    try:
        with tracer.start_as_current_span(
            f"process {(headers or {}).get('ce-type') or subject}",
            context=context_of_headers(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": subject,
                "messaging.consumer.group.name": consumer,
            },
        ):
            yield
    finally:
        _CURRENT.reset(token)


@contextmanager
def working(name: str, parent: str = "") -> Iterator[None]:
    """A span for one unit of the current service's own work (a reminder delivery), child of
    the `parent` traceparent when one is given; nothing when the service is not traced."""
    tracer = _CURRENT.get()
    if tracer is _NO_TRACER:
        yield
        return
    with tracer.start_as_current_span(name, context=remote_context(parent)):
        yield


def current_traceparent() -> str:
    """The current span's W3C traceparent, "" without one (what a planned job keeps)."""
    return trace_headers().get(TRACEPARENT, "")
