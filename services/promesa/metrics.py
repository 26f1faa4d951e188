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
    # By type (the full proto message name), not subject: a subject ends with a contact id, and
    # an id as a label makes a series per contact (and keeps an erased one's id).
    "Events published to JetStream by the outbox relay, by CloudEvents type.",
    ["service", "type"],
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
OUTBOX_OLDEST_AGE = Gauge(
    "promesa_outbox_oldest_age_seconds",
    "Age of the oldest event committed but not yet published, 0 when none: a relay that"
    " cannot publish shows here long before the backlog looks large.",
    ["service"],
)
CONSUMER_PENDING = Gauge(
    "promesa_consumer_pending_messages",
    "Messages of the stream a durable consumer has not been delivered yet (JetStream's"
    " num_pending): its lag.",
    ["service", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "promesa_consumer_ack_pending_messages",
    "Messages delivered to a durable consumer and not yet acknowledged (num_ack_pending).",
    ["service", "consumer"],
)


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Port 0 turns the endpoint off (tests run several services in one process). Raises
    OSError when the address is taken: the runtime refuses to start, naming it."""
    if port:
        start_http_server(port, addr=host)
