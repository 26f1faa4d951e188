"""Prometheus metrics shared by the services, served over HTTP on a port of their own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_HANDLED = Counter(
    "promesa_grpc_server_handled_total",
    "RPCs completed, by method and status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "promesa_grpc_server_handling_seconds",
    "RPC latency from receipt to response.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
EVENTS_PUBLISHED = Counter(
    "promesa_events_published_total",
    "Events published to JetStream by the outbox relay.",
    ["service", "subject"],
)
EVENTS_CONSUMED = Counter(
    "promesa_events_consumed_total",
    "Events handled by a consumer, by outcome.",
    ["service", "consumer", "outcome"],
)
EVENT_HANDLING = Histogram(
    "promesa_event_handling_seconds",
    "Time a consumer's handler took per event, whatever the outcome: what the ack wait"
    " (CRM_CONSUMER_ACK_WAIT_SECONDS) must comfortably exceed for a whole batch.",
    ["service", "consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
EVENTS_REDELIVERED = Counter(
    "promesa_events_redelivered_total",
    "Deliveries that were not the first of their message.",
    ["service", "consumer"],
)
DEAD_LETTERS = Counter(
    "promesa_dead_letters_total",
    "Events given up on after their last delivery.",
    ["service", "consumer"],
)
OUTBOX_BACKLOG = Gauge(
    "promesa_outbox_backlog",
    "Events committed but not yet published.",
    ["service"],
)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Port 0 turns the endpoint off (tests run several services in one process). Raises
    OSError when the address is taken: the runtime refuses to start, naming it."""
    if port:
        start_http_server(port, addr=host)
