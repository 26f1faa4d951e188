"""The one gRPC interceptor: request id, caller identity, error mapping, a log line and metrics."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import grpc
import structlog
from google.protobuf.message import DecodeError

from promesa import errors, metrics
from promesa.auth import ApiTokens, Authenticator, Identity, SigningKeysUnavailableError, acting_as
from promesa.grpc_errors import status_code_for, to_status
from promesa.ids import new_id

log = structlog.get_logger(__name__)

# Probes and tooling must work without a token: Kubernetes calls health, grpcurl reflection.
OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

if TYPE_CHECKING:  # the grpc classes are generic only in their type stubs
    Context = grpc.aio.ServicerContext[Any, Any]
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
UnaryBehavior = Callable[[Any, Context], Awaitable[Any]]
StreamBehavior = Callable[[Any, Context], AsyncIterator[Any]]


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
        parse = handler.request_deserializer or (lambda raw: raw)
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._unary(method, parse, cast(UnaryBehavior, handler.unary_unary)),
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._stream(method, parse, cast(StreamBehavior, handler.unary_stream)),
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._wrapped[method] = wrapped
        return wrapped

    async def _identify(self, metadata: Mapping[str, str]) -> Identity:
        scheme, _, token = metadata.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.UnauthenticatedError("missing bearer token in 'authorization' metadata")
        return await self._authenticator.identify(token.strip())

    @asynccontextmanager
    async def _guard(self, method: str, context: Context) -> AsyncIterator[None]:
        """Around every call: ids bound for logs, the caller identified, errors mapped."""
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        request_id = errors.clip(metadata.get("x-request-id", ""), 100) or new_id()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        with structlog.contextvars.bound_contextvars(request_id=request_id, method=method):
            try:
                with acting_as(await self._identify(metadata)):
                    yield
            except SigningKeysUnavailableError as exc:
                code = grpc.StatusCode.UNAVAILABLE
                log.warning("rpc_unavailable", reason=str(exc))
                await context.abort(code, f"{exc}; try again later")
            except errors.PromesaError as exc:
                code = status_code_for(exc)
                log.info("rpc_refused", code=code.name, reason=errors.clip(str(exc), 300))
                await context.abort_with_status(to_status(exc))
            except grpc.aio.AbortError:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("rpc_failed")
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error; request id {request_id}"
                )
            finally:
                self._observe(method, code, started)

    def _unary(
        self,
        method: str,
        parse: Callable[[bytes], Any],
        behavior: UnaryBehavior,
    ) -> UnaryBehavior:
        async def call(raw: bytes, context: Context) -> Any:
            async with self._guard(method, context):
                return await behavior(_parse(parse, raw), context)

        return call

    def _stream(
        self,
        method: str,
        parse: Callable[[bytes], Any],
        behavior: StreamBehavior,
    ) -> StreamBehavior:
        async def call(raw: bytes, context: Context) -> AsyncIterator[Any]:
            async with self._guard(method, context):
                async for response in behavior(_parse(parse, raw), context):
                    yield response

        return call

    def _observe(self, method: str, code: grpc.StatusCode, started: float) -> None:
        elapsed = time.perf_counter() - started
        short = method.rsplit("/", 1)[-1]
        metrics.RPC_HANDLED.labels(self._service, short, code.name).inc()
        metrics.RPC_LATENCY.labels(self._service, short).observe(elapsed)
        if code == grpc.StatusCode.OK:
            log.info("rpc_completed", code=code.name, ms=round(elapsed * 1000, 3))


def _parse(parse: Callable[[bytes], Any], raw: bytes) -> Any:
    try:
        return parse(raw)
    except DecodeError:
        raise errors.InvalidArgumentError(
            [errors.FieldViolation("", "the request is not a valid message for this method")]
        ) from None
