"""Boot and shutdown of a service as one readable sequence, shared by all three services."""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
import structlog
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from crm.operations.v1 import dead_letters_pb2_grpc as dead_letters_grpc
from promesa import tracing
from promesa.bus import DeadLetterSink, DurableConsumer, EventBus, Handler, StreamSpec
from promesa.clock import Clock
from promesa.dead_letters import DeadLetters
from promesa.dead_letters_api import SERVICE_NAME as DEAD_LETTERS_SERVICE
from promesa.dead_letters_api import DeadLettersServicer
from promesa.interceptors import CallInterceptor
from promesa.logging import configure_logging
from promesa.metrics import serve_metrics
from promesa.outbox import OutboxRelay, OutboxStore
from promesa.settings import CommonSettings, ConfigError
from promesa.storage import PlatformStore
from promesa.workers import Periodic

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
    store: PlatformStore
    clock: Clock  # the store's clock: inbox rows are stamped with it
    subscriptions: Sequence[Subscription] = ()
    workers: Sequence[Worker] = ()  # sweeps and schedulers
    gauges: Sequence[Callable[[], Awaitable[None]]] = ()  # domain gauges, refreshed with ours
    close_store: Callable[[], Awaitable[None]] | None = None


async def connect_messaging(
    common: CommonSettings, outbox: OutboxStore
) -> tuple[EventBus, OutboxRelay]:
    """The service's NATS connection, and the relay that publishes its outbox there."""
    bus = EventBus(common.nats_url, name=common.service)
    await bus.connect()
    relay = OutboxRelay(outbox, bus, service=common.service, batch_size=common.relay_batch_size)
    return bus, relay


class PortInUseError(ConfigError):
    """The gRPC or metrics address cannot be bound (another process holds it)."""


INBOX_PRUNE_BATCH = 1000  # rows per delete: writers wait for one short transaction at most


class InboxPruner:
    """Deletes inbox rows older than the retention (settings.inbox_retention says why it is
    safe), a batch at a time until none is left, so the inbox stops growing for ever."""

    def __init__(self, store: PlatformStore, clock: Clock, settings: CommonSettings) -> None:
        self._store = store
        self._clock = clock
        self._retention = settings.inbox_retention

    async def __call__(self) -> int:
        before = self._clock.now() - self._retention
        pruned = 0
        while True:
            count = await self._store.prune_inbox(before, INBOX_PRUNE_BATCH)
            pruned += count
            if count < INBOX_PRUNE_BATCH:
                break
        if pruned:
            log.info("inbox_pruned", rows=pruned, before=before.isoformat())
        return pruned


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
                batch=settings.consumer_batch,
            )
            for sub in parts.subscriptions
        ]
        self.dead_letters = DeadLetters(
            parts.store,
            {sub.durable: sub.handler for sub in parts.subscriptions},
            parts.clock,
            service=settings.service,
        )
        self.prune_inbox = InboxPruner(parts.store, parts.clock, settings)
        pruner = Periodic(
            settings.service,
            "inbox_pruning",
            self.prune_inbox,
            settings.inbox_prune_interval_seconds,
        )
        gauges = Periodic(
            settings.service,
            "metrics_refresh",
            self.refresh_metrics,
            settings.metrics_refresh_seconds,
        )
        self._workers: list[Worker] = [*self.consumers, *parts.workers, pruner, gauges]
        self._service_names = [*parts.grpc_service_names, DEAD_LETTERS_SERVICE]

    async def start(self) -> int:
        """Binds both ports first: a port held by another process refuses the start
        (PortInUseError naming it) before anything is declared or consumed."""
        s = self.settings
        # Every call and worker runs in a copy of this context (grpc's server loop and the
        # workers' tasks are created below): their commits find the service's tracer there.
        traced = tracing.bind(tracing.tracer_of(s.service))
        try:
            return await self._start(s)
        finally:
            tracing.unbind(traced)

    async def _start(self, s: CommonSettings) -> int:
        interceptors: list[grpc.aio.ServerInterceptor] = [CallInterceptor(s.service, s.api_tokens)]
        provider = tracing.provider_of(s.service)
        if provider is not None:  # first: its span is current in ours, so log lines carry it
            interceptors.insert(0, tracing.server_interceptor(provider))
        server = grpc.aio.server(
            interceptors=interceptors,
            # gRPC sets SO_REUSEPORT by default: a second process would bind the same port
            # without a word and take part of the calls into its own database.
            options=[("grpc.so_reuseport", 0)],
        )
        self.parts.register(server)
        dead_letters_grpc.add_DeadLettersServiceServicer_to_server(
            DeadLettersServicer(self.dead_letters), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        address = f"{s.grpc_host}:{s.grpc_port}"
        try:
            self.port = server.add_insecure_port(address)
        except RuntimeError:  # grpc's only word for "cannot bind"
            raise PortInUseError(
                f"CRM_GRPC_PORT: cannot listen on {address}: the address is in use by another"
                " process (or not an address of this host)"
            ) from None
        try:
            serve_metrics(s.metrics_port, s.metrics_host)
        except OSError as exc:
            await server.stop(None)
            raise PortInUseError(
                f"CRM_METRICS_PORT: cannot listen on {s.metrics_host}:{s.metrics_port}:"
                f" {exc.strerror or exc}"
            ) from None
        self.parts.relay.hold_as(f"{socket.gethostname()}:{self.port}")
        await self.bus.declare_stream(
            self.parts.stream,
            replicas=s.stream_replicas,
            max_age=s.stream_max_age,
            max_bytes=s.stream_max_bytes,
        )
        await server.start()
        self._server = server
        workers: list[Worker] = [self.parts.relay, *self._workers]
        self._tasks = [asyncio.create_task(self._supervise(w)) for w in workers]
        for name in ("", *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "service_started",
            grpc_port=self.port,
            metrics_port=s.metrics_port,
            store=s.store,
            nats=s.nats_address,
        )
        return self.port

    async def refresh_metrics(self) -> None:
        """Sets the gauges read from elsewhere (the outbox, JetStream's consumers, the
        service's own counts), every CRM_METRICS_REFRESH_SECONDS rather than per call: one
        that fails is logged, and the others are still refreshed."""
        jobs = [
            self.parts.relay.measure(self.parts.clock.now()),
            *(consumer.measure() for consumer in self.consumers),
            *(gauge() for gauge in self.parts.gauges),
        ]
        for outcome in await asyncio.gather(*jobs, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("metrics_refresh_failed", error=repr(outcome))

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
        for name in ("", *self._service_names):
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

    async def close(self) -> None:
        """After a start that failed: drain NATS and close the store, nothing else ran."""
        await self.bus.close()
        if self.parts.close_store is not None:
            await self.parts.close_store()

    async def serve_until_signalled(self) -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        try:
            await self.start()
        except PortInUseError:
            await self.close()
            raise
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


def settle_garbage_collector() -> None:
    """Once the service is built: what it built lives as long as the process, so the cyclic
    collector stops walking it (`gc.freeze`), and it runs after 10,000 allocations rather than
    700. A call allocates hundreds of short-lived objects, nearly all freed by reference
    counting; measured in `make bench`, the collector's passes over what boot left cost some
    5-10% of a create or a recorded interaction."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


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
        tracing.configure_from_environment(settings.common.service)
        try:
            app = await build(settings)
        except ConfigError as exc:  # found only on connecting, e.g. a server without transactions
            print(f"{name}: configuration error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        settle_garbage_collector()
        try:
            await app.runtime.serve_until_signalled()
        except PortInUseError as exc:
            print(f"{name}: cannot start: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    uvloop.run(main())
