"""Boot and shutdown of a service as one readable sequence, shared by all three services."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
import structlog
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from promesa.bus import DeadLetterSink, DurableConsumer, EventBus, Handler, StreamSpec
from promesa.interceptors import CallInterceptor
from promesa.logging import configure_logging
from promesa.metrics import serve_metrics
from promesa.outbox import OutboxRelay, OutboxStore
from promesa.settings import CommonSettings, ConfigError

log = structlog.get_logger(__name__)


class Worker(Protocol):
    """A background loop (consumer, sweep, relay) that runs until asked to stop."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass(frozen=True)
class Subscription:
    """Events a service consumes: the runtime runs one durable consumer for each, configured
    the same way in every service (ack wait, deliveries before the dead letters)."""

    durable: str
    stream: StreamSpec
    subjects: Sequence[str]
    handler: Handler


@dataclass
class ServiceParts:
    """What a service's composition root hands to the runtime."""

    grpc_service_names: Sequence[str]  # full proto names, for health and reflection
    register: Callable[[grpc.aio.Server], None]
    relay: OutboxRelay
    stream: StreamSpec
    dead_letters: DeadLetterSink
    subscriptions: Sequence[Subscription] = ()
    workers: Sequence[Worker] = ()  # sweeps and schedulers
    close_store: Callable[[], Awaitable[None]] | None = None


async def connect_messaging(
    common: CommonSettings, outbox: OutboxStore
) -> tuple[EventBus, OutboxRelay]:
    """The service's NATS connection, and the relay that publishes its outbox there."""
    bus = EventBus(common.nats_url, name=common.service)
    await bus.connect()
    relay = OutboxRelay(outbox, bus, service=common.service, batch_size=common.relay_batch_size)
    return bus, relay


class Runtime:
    """Start, serve, and stop in the order that loses nothing.

    Stop order: health NOT_SERVING, stop accepting and let in-flight calls finish within the
    grace period, stop consumers and sweeps, flush the outbox, drain NATS, close the store.
    """

    def __init__(self, settings: CommonSettings, bus: EventBus, parts: ServiceParts) -> None:
        self.settings = settings
        self.bus = bus
        self.parts = parts
        self.port = 0
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._tasks: list[asyncio.Task[None]] = []
        self.consumers = [
            DurableConsumer(
                bus,
                service=settings.service,
                stream=sub.stream,
                durable=sub.durable,
                filter_subjects=sub.subjects,
                handler=sub.handler,
                dead_letters=parts.dead_letters,
                ack_wait=settings.consumer_ack_wait_seconds,
                max_deliver=settings.consumer_max_deliver,
            )
            for sub in parts.subscriptions
        ]
        self._workers: list[Worker] = [*self.consumers, *parts.workers]

    async def start(self) -> int:
        s = self.settings
        await self.bus.declare_stream(
            self.parts.stream, replicas=s.stream_replicas, max_age=s.stream_max_age
        )
        server = grpc.aio.server(interceptors=[CallInterceptor(s.service, s.api_tokens)])
        self.parts.register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*self.parts.grpc_service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        self.port = server.add_insecure_port(f"{s.grpc_host}:{s.grpc_port}")
        await server.start()
        self._server = server
        serve_metrics(s.metrics_port, s.metrics_host)
        workers: list[Worker] = [self.parts.relay, *self._workers]
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in workers]
        for name in ("", *self.parts.grpc_service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "service_started",
            grpc_port=self.port,
            metrics_port=s.metrics_port,
            store=s.store,
            nats=s.nats_address,
        )
        return self.port

    async def _supervise(self, worker: Worker) -> None:
        """A worker that crashes is logged and restarted: a bug must not silently stop it."""
        while True:
            try:
                await worker.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker_crashed", worker=type(worker).__name__)
                await asyncio.sleep(1.0)

    async def stop(self) -> None:
        for name in ("", *self.parts.grpc_service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._server is not None:
            await self._server.stop(self.settings.shutdown_grace_seconds)
        for worker in self._workers:
            worker.stop()
        self.parts.relay.stop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.parts.relay.flush()
        except Exception as exc:
            log.warning("outbox_flush_failed_at_shutdown", error=repr(exc))
        await self.bus.close()
        if self.parts.close_store is not None:
            await self.parts.close_store()
        log.info("service_stopped")

    async def serve_until_signalled(self) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await self.start()
        await stopping.wait()
        log.info("service_stopping")
        await self.stop()


class Application(Protocol):
    """What a composition root returns: its runtime, beside the parts it wired (typed, by
    name, for tests and tools)."""

    @property
    def runtime(self) -> Runtime: ...


class HasCommon(Protocol):
    @property
    def common(self) -> CommonSettings: ...


S = TypeVar("S", bound=HasCommon)


def serve(name: str, load: Callable[[], S], build: Callable[[S], Awaitable[Application]]) -> None:
    """The body of every service's `__main__`: settings from the environment (exit 2 with a
    message naming the variable when they are bad), logging, then serve until signalled."""

    async def main() -> None:
        try:
            settings = load()
        except ConfigError as exc:
            print(f"{name}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        configure_logging(settings.common.log_level, name)
        try:
            app = await build(settings)
        except ConfigError as exc:  # found only on connecting, e.g. a server without transactions
            print(f"{name}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        await app.runtime.serve_until_signalled()

    uvloop.run(main())
