"""The one gRPC interceptor: request id, caller identity, error mapping, a log line and metrics.

It runs on every call, so it is written for that: no context managers or closures made per
call, metric children looked up once per method, the caller's token read straight from the
metadata and answered from memory when it is known.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError
from prometheus_client import Counter

from promesa import errors, metrics
from promesa import logging as log_settings
from promesa.auth import (
    ApiTokens,
    Authenticator,
    Identity,
    SigningKeysUnavailableError,
    bind_identity,
    unbind_identity,
)
from promesa.grpc_errors import status_code_for, to_status
from promesa.ids import new_id

log = structlog.get_logger(__name__)

# Probes and tooling must work without a token: Kubernetes calls health, grpcurl reflection.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
MAX_REQUEST_ID = 100

if TYPE_CHECKING:  # the grpc classes are generic only in their type stubs
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]
Parse = Callable[[bytes], Any]

_OK = grpc.StatusCode.OK


def _log_context_vars() -> tuple[ContextVar[Any], ContextVar[Any]]:
    """structlog's context variables for `request_id` and `method`, left unset: set directly
    per call, which costs a tenth of bind_contextvars (its merge_contextvars reads them)."""
    tokens = structlog.contextvars.bind_contextvars(request_id=None, method=None)
    structlog.contextvars.reset_contextvars(**tokens)
    return tokens["request_id"].var, tokens["method"].var


_REQUEST_ID, _METHOD = _log_context_vars()


class _Method:
    """What every call of one method needs, built on its first call: its name for the logs,
    its metric children (a `labels` lookup costs more than the increment it leads to)."""

    def __init__(self, service: str, method: str, parse: Parse) -> None:
        self.method = method
        self.parse = parse
        self._service = service
        self._short = method.rsplit("/", 1)[-1]
        self._latency = metrics.RPC_LATENCY.labels(service, self._short)
        self._handled: dict[grpc.StatusCode, Counter] = {}

    def observe(self, code: grpc.StatusCode, started: float) -> None:
        elapsed = time.perf_counter() - started
        handled = self._handled.get(code)
        if handled is None:
            handled = metrics.RPC_HANDLED.labels(self._service, self._short, code.name)
            self._handled[code] = handled
        handled.inc()
        self._latency.observe(elapsed)
        if code is _OK and log_settings.RENDERS_INFO:
            log.info("rpc_completed", code=code.name, ms=round(elapsed * 1000, 3))


class CallInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, service: str, tokens: ApiTokens) -> None:
        self._service = service
        self._authenticator = Authenticator(tokens)
        # One wrapped handler per method, built on its first call: no closures per call.
        self._wrapped: dict[str, Handler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        # Requests arrive as bytes and are parsed inside the call, so that a payload that is not
        # the expected message is INVALID_ARGUMENT rather than grpc's own INTERNAL.
        m = _Method(self._service, method, handler.request_deserializer or (lambda raw: raw))
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._unary(m, cast(UnaryBehavior, handler.unary_unary)),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._stream(m, cast(StreamBehavior, handler.unary_stream)),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._wrapped[method] = wrapped
        return wrapped

    async def _identify(self, authorization: str) -> Identity:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise errors.UnauthenticatedError("missing bearer token in 'authorization' metadata")
        return self._authenticator.known(token) or await self._authenticator.identify(token)

    async def _refused(self, exc: Exception, context: Context, request_id: str) -> None:
        """Aborts the call with the status for what it raised (AbortError propagates); an
        abort already under way is left to go on."""
        if isinstance(exc, SigningKeysUnavailableError):
            log.warning("rpc_unavailable", reason=str(exc))
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{exc}; try again later")
        elif isinstance(exc, errors.PromesaError):
            code = status_code_for(exc)
            log.info("rpc_refused", code=code.name, reason=errors.clip(str(exc), 300))
            await context.abort_with_status(to_status(exc))
        elif not isinstance(exc, grpc.aio.AbortError):
            log.exception("rpc_failed", exc_info=exc)
            message = f"internal error; request id {request_id}"
            await context.abort(grpc.StatusCode.INTERNAL, message)

    def _unary(self, m: _Method, behavior: UnaryBehavior) -> UnaryBehavior:
        async def call(raw: bytes, context: Context) -> Any:
            authorization, request_id = _read_metadata(context)
            bound_id, bound_method = _REQUEST_ID.set(request_id), _METHOD.set(m.method)
            started = time.perf_counter()
            code = _OK
            try:
                identity = bind_identity(await self._identify(authorization))
                try:
                    return await behavior(_parse(m.parse, raw), context)
                finally:
                    unbind_identity(identity)
            except Exception as exc:
                code = _code_of(exc, context)
                await self._refused(exc, context, request_id)
                raise
            finally:
                m.observe(code, started)
                _METHOD.reset(bound_method)
                _REQUEST_ID.reset(bound_id)

        return call

    def _stream(self, m: _Method, behavior: StreamBehavior) -> StreamBehavior:
        async def call(raw: bytes, context: Context) -> AsyncIterator[Any]:
            authorization, request_id = _read_metadata(context)
            bound_id, bound_method = _REQUEST_ID.set(request_id), _METHOD.set(m.method)
            started = time.perf_counter()
            code = _OK
            try:
                identity = bind_identity(await self._identify(authorization))
                try:
                    async for response in behavior(_parse(m.parse, raw), context):
                        yield response
                finally:
                    unbind_identity(identity)
            except Exception as exc:
                code = _code_of(exc, context)
                await self._refused(exc, context, request_id)
                raise
            finally:
                m.observe(code, started)
                _METHOD.reset(bound_method)
                _REQUEST_ID.reset(bound_id)

        return call


def _read_metadata(context: Context) -> tuple[str, str]:
    """The caller's `authorization` and its `x-request-id` (a new id when it sent none): the
    last of each wins, as in a dict, and binary values are not text."""
    authorization = request_id = ""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            authorization = value
        elif key == "x-request-id" and isinstance(value, str):
            request_id = value
    return authorization, errors.clip(request_id, MAX_REQUEST_ID) or new_id()


def _code_of(exc: Exception, context: Context) -> grpc.StatusCode:
    """The status a call that raised `exc` ends with, for the metrics."""
    if isinstance(exc, SigningKeysUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, errors.PromesaError):
        return status_code_for(exc)
    if isinstance(exc, grpc.aio.AbortError):
        return context.code() or grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.INTERNAL


def _parse(parse: Parse, raw: bytes) -> Any:
    try:
        return parse(raw)
    except DecodeError:
        raise errors.InvalidArgumentError(
            [errors.FieldViolation("", "the request is not a valid message for this method")]
        ) from None
