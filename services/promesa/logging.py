"""structlog set up for JSON lines; request id, method and event id are bound via contextvars,
trace and span ids taken from the active OpenTelemetry span."""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, WrappedLogger

# Whether info lines are written (configure_logging sets it): the interceptor asks before it
# prepares a line per call. True until configured, as structlog's own default writes them.
RENDERS_INFO = True


def add_trace_ids(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    """`trace_id` and `span_id` (hex, as trace viewers show them) while a span is active."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event["trace_id"] = format(ctx.trace_id, "032x")
        event["span_id"] = format(ctx.span_id, "016x")
    return event


def configure_logging(level: str = "info", service: str = "") -> None:
    """JSON lines at `level` and above; lines below it are dropped before anything is
    rendered (the filtering logger's methods for them do nothing), and each module's logger
    is bound once, on its first use."""
    global RENDERS_INFO
    RENDERS_INFO = logging.getLevelNamesMapping()[level.upper()] <= logging.INFO
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level.upper())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    if service:
        structlog.contextvars.bind_contextvars(service=service)
