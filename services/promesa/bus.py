"""The event bus on NATS JetStream: stream declaration, pipelined publishing, durable consumers."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import nats
import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError as JsNotFoundError

from promesa import metrics, tracing
from promesa.auth import acting_as, worker_identity
from promesa.errors import UnavailableError, is_permanent
from promesa.events import IncomingEvent, OutgoingEvent, UndecodableEventError
from promesa.in_flight import InFlight

log = structlog.get_logger(__name__)

DUPLICATE_WINDOW_SECONDS = 120.0
# A failed delivery comes back after RETRY_BACKOFF_BASE * 2**(delivery - 1) seconds, at most
# RETRY_BACKOFF_MAX: quick for a blip, spaced out for a longer fault.
RETRY_BACKOFF_BASE = 1.0
RETRY_BACKOFF_MAX = 30.0
# Messages a consumer has started and not finished, in fetched batches: enough for the next
# batches' work to overlap a slow commit, few enough to stay far below max_ack_pending.
IN_FLIGHT_BATCHES = 4


def retry_delay(delivery: int) -> float:
    """The back-off before the delivery after `delivery` (counted from 1)."""
    return min(RETRY_BACKOFF_BASE * 2.0 ** min(delivery - 1, 30), RETRY_BACKOFF_MAX)


def longest_redelivery(ack_wait: float, max_deliver: int) -> float:
    """Seconds from an event's first delivery to its last at most: each delivery may run out
    its ack wait, then wait its back-off. After it, JetStream never delivers the event again
    (only a replay of the stream or of a dead letter does)."""
    return max_deliver * (ack_wait + RETRY_BACKOFF_MAX)


class NatsAuthorizationError(Exception):
    """NATS refused the credentials of CRM_NATS_URL (or their absence)."""


def inbox_prefix(user: str) -> str:
    """Where a NATS user gets its replies (JetStream acks, API answers, pulled messages):
    `_INBOX_<user>`, outside `_INBOX.>`, so a permission to subscribe to one user's replies
    never covers another's."""
    return f"_INBOX_{user}"


@dataclass(frozen=True)
class StreamSpec:
    """A producer's stream: one per domain, holding `crm.<domain>.>`."""

    name: str
    subjects: tuple[str, ...]


CONTACTS_STREAM = StreamSpec("CRM_CONTACTS", ("crm.contacts.>",))
INTERACTIONS_STREAM = StreamSpec("CRM_INTERACTIONS", ("crm.interactions.>",))
FOLLOWUP_STREAM = StreamSpec("CRM_FOLLOWUP", ("crm.followup.>",))


class EventBus:
    """One NATS connection per service; publishing is pipelined, never awaited inside an RPC."""

    def __init__(self, url: str, *, name: str) -> None:
        self._url = url
        self._name = name
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    async def connect(self) -> None:
        """Connects as the user named in the URL (`nats://user:password@host:port`), with
        replies on that user's own inbox prefix, which its NATS permissions allow and no other
        user's do. Retries while the server is away; refused credentials fail at once, with a
        message that names the user and never the password."""
        user = urllib.parse.urlsplit(self._url).username or ""
        refused = asyncio.Event()

        async def on_error(exc: Exception) -> None:
            # At the first connect nats-py reports a refusal as a plain error with the text.
            if isinstance(exc, nats.errors.AuthorizationError) or (
                "authorization violation" in str(exc).lower()
            ):
                refused.set()
            await self._on_error(exc)

        connecting = asyncio.ensure_future(
            nats.connect(
                self._url,
                name=self._name,
                inbox_prefix=inbox_prefix(user) if user else "_INBOX",
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
            )
        )
        refusal = asyncio.ensure_future(refused.wait())
        try:
            await asyncio.wait({connecting, refusal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            refusal.cancel()
        if not connecting.done():
            connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await connecting
            who = f"user {user!r}" if user else "an anonymous client (no user in the URL)"
            raise NatsAuthorizationError(f"NATS refused {who}: check CRM_NATS_URL")
        self._nc = connecting.result()
        self._js = self._nc.jetstream(publish_async_max_pending=10_000)

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("EventBus.connect() has not been called")
        return self._js

    async def declare_stream(
        self,
        spec: StreamSpec,
        *,
        replicas: int = 1,
        max_age: timedelta = timedelta(0),
        max_bytes: int = 0,
    ) -> None:
        """Idempotent: creates the stream, or updates it to this configuration. `max_age` and
        `max_bytes` are the retention (zero: no limit); past either, the OLDEST events are
        discarded, so a producer never stalls on a full stream; the price is that a consumer
        further behind than the limit misses events (its dead letters and metrics show the gap
        only if it was running; size the limit for the longest outage a consumer may have)."""
        config = StreamConfig(
            name=spec.name,
            subjects=list(spec.subjects),
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_SECONDS,
            max_age=max_age.total_seconds(),
            max_bytes=max_bytes or -1,
            discard=DiscardPolicy.OLD,
        )
        try:
            await self.js.stream_info(spec.name)
        except JsNotFoundError:
            await self.js.add_stream(config)
            log.info("stream_declared", stream=spec.name, subjects=spec.subjects)
        else:
            await self.js.update_stream(config)

    async def publish_batch(
        self, events: Sequence[OutgoingEvent], *, timeout: float = 10.0
    ) -> None:
        """Publishes all events pipelined and waits for every acknowledgement.

        Raises if any publish is not acknowledged; the caller keeps them pending and retries,
        and the `Nats-Msg-Id` header makes the retry harmless for those that did land.
        """
        futures = [
            await self.js.publish_async(e.subject, e.data, headers=e.headers()) for e in events
        ]
        await awake_within(asyncio.gather(*futures), timeout)

    async def purge(self, spec: StreamSpec, subjects: Sequence[str]) -> None:
        """Removes every message of the stream on these subject filters (an erased person's
        events). Idempotent: purging again removes nothing more."""
        for subject in subjects:
            await self.js.purge_stream(spec.name, subject=subject)
        log.info("stream_purged", stream=spec.name, subjects=list(subjects))

    async def close(self) -> None:
        """Drains when connected; when NATS is away there is nothing to drain, so just close."""
        if self._nc is None or self._nc.is_closed:
            return
        if self._nc.is_connected:
            await self._nc.drain()
        else:
            await self._nc.close()

    async def _on_error(self, exc: Exception) -> None:
        log.warning("nats_error", error=str(exc))

    async def _on_disconnected(self) -> None:
        log.warning("nats_disconnected")

    async def _on_reconnected(self) -> None:
        log.info("nats_reconnected")


_SLICE = 0.5  # seconds: how much of a wait one stretch may count


async def awake_within(acks: asyncio.Future[list[object]], seconds: float) -> None:
    """Waits for `acks` for `seconds` of the process's waking time: a stretch in which the
    process was stopped (SIGSTOP, a paused VM) does not count. After such a pause the timer
    fires before the acknowledgements that arrived meanwhile are read; taking that for a
    failure would publish the batch again, and a core-NATS subscriber would see it twice."""
    loop = asyncio.get_running_loop()
    left = seconds
    try:
        while True:
            started = loop.time()
            try:
                await asyncio.wait_for(asyncio.shield(acks), min(left, _SLICE))
                return
            except TimeoutError:
                left -= min(loop.time() - started, _SLICE)
                if left <= 0:
                    raise
    finally:
        acks.cancel()  # a no-op once done; otherwise nobody waits for them any more


Handler = Callable[[IncomingEvent], Awaitable[None]]
DeadLetterSink = Callable[[str, IncomingEvent, str], Awaitable[None]]


class DurableConsumer:
    """A durable pull consumer that acks after the handler commits.

    A failure no retry can fix (`promesa.errors.is_permanent`: an undecodable payload, a
    timestamp out of range, ...) goes to the dead letters at its first delivery; any other is
    redelivered after an exponential back-off, and after `max_deliver` deliveries it goes to
    the dead letters too, so an event is never dropped without a trace. Handlers must be
    idempotent (an inbox row per event id).

    A killed consumer's unacknowledged messages come back to another replica only after the
    ack wait, so it fetches small batches (`batch`) and keeps a long-running handler's messages
    alive with a progress ack every third of the ack wait: the ack wait can then be chosen
    from the usual handling time, not the worst.

    Messages are handled as they are fetched (`promesa.in_flight`), up to
    `IN_FLIGHT_BATCHES` batches at once: side by side across contacts, in order within one,
    a merge or an erasure alone. The handlers' commits arrive together, a store that groups
    concurrent commits writes them in one transaction, and the next batch's work goes on
    while a commit waits for the disk.
    """

    def __init__(
        self,
        bus: EventBus,
        *,
        service: str,
        stream: StreamSpec,
        durable: str,
        filter_subjects: Sequence[str],
        handler: Handler,
        dead_letters: DeadLetterSink,
        ack_wait: float = 30.0,
        max_deliver: int = 5,
        batch: int = 10,
    ) -> None:
        self._bus = bus
        self._service = service
        self._stream = stream
        self._durable = durable
        self._filters = list(filter_subjects)
        self._handler = handler
        self._dead_letters = dead_letters
        self._ack_wait = ack_wait
        self._max_deliver = max_deliver
        self._batch = batch
        self._stopping = asyncio.Event()
        self._identity = worker_identity(service, durable)

    def stop(self) -> None:
        self._stopping.set()

    async def measure(self) -> None:
        """Sets the consumer's lag gauges from JetStream (the metrics refresher); nothing
        before the consumer exists (its stream not declared yet)."""
        try:
            info = await self._bus.js.consumer_info(self._stream.name, self._durable)
        except JsNotFoundError:
            return
        metrics.CONSUMER_PENDING.labels(self._service, self._durable).set(info.num_pending or 0)
        ack_pending = metrics.CONSUMER_ACK_PENDING.labels(self._service, self._durable)
        ack_pending.set(info.num_ack_pending or 0)

    async def run(self) -> None:
        sub = await self._subscribe()
        if sub is None:
            return
        log.info("consumer_started", consumer=self._durable, stream=self._stream.name)
        in_flight = InFlight(self._handle, IN_FLIGHT_BATCHES * self._batch)
        stopping = asyncio.ensure_future(self._stopping.wait())
        heartbeat = asyncio.ensure_future(self._heartbeat(in_flight.waiting))
        idle = True
        try:
            while not self._stopping.is_set() and in_flight.failure is None:
                room = asyncio.ensure_future(in_flight.freed())
                await asyncio.wait({room, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not room.done():
                    room.cancel()
                    break
                # nats-py's fetch(n) holds on to the first message until n have come or the
                # timeout ends: an idle consumer would sit on a lone event for up to 5 s. So
                # an idle one waits for a single message, and a busy one takes what is there.
                if idle:
                    pulled = sub.fetch(1, timeout=5.0)
                else:
                    pulled = sub.fetch(min(self._batch, in_flight.room), timeout=0.05)
                # A stop must not wait for a long poll to time out; handling is never cut short.
                fetch = asyncio.ensure_future(pulled)
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    break
                try:
                    msgs = fetch.result()
                except (TimeoutError, nats.errors.TimeoutError):
                    idle = not in_flight
                    continue
                idle = False
                in_flight.start(msgs)
        finally:
            await in_flight.drain()
            stopping.cancel()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await sub.unsubscribe()
        if in_flight.failure is not None:
            raise in_flight.failure

    async def _heartbeat(self, waiting: dict[int, Msg]) -> None:
        """Every third of the ack wait, tells JetStream the unfinished messages are still being
        worked on (two heartbeats may be lost before one is redelivered)."""
        while True:
            await asyncio.sleep(self._ack_wait / 3)
            for msg in list(waiting.values()):
                try:
                    await msg.in_progress()
                except Exception as exc:  # NATS away: a redelivery that follows is harmless
                    log.warning("consumer_heartbeat_failed", error=repr(exc))
                    break

    async def _subscribe(self) -> JetStreamContext.PullSubscription | None:
        """Waits for the producer to declare its stream: services may start in any order."""
        config = ConsumerConfig(
            durable_name=self._durable,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_deliver=self._max_deliver,
            deliver_policy=DeliverPolicy.ALL,
            filter_subjects=self._filters,
            max_ack_pending=1000,
        )
        delay = 0.2
        while not self._stopping.is_set():
            try:
                await self._bus.js.stream_info(self._stream.name)
                await self._bus.js.add_consumer(self._stream.name, config=config)
                return await self._bus.js.pull_subscribe_bind(
                    durable=self._durable, stream=self._stream.name
                )
            except JsNotFoundError:
                if delay == 0.2:
                    log.info("consumer_waiting_for_stream", stream=self._stream.name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
                delay = min(delay * 2, 5.0)
        return None

    async def _handle(self, msg: Msg) -> None:
        delivery = msg.metadata.num_delivered
        event = IncomingEvent.from_message(msg.subject, msg.headers, msg.data, delivery)
        bound = structlog.contextvars.bound_contextvars(
            event_id=event.event_id, event_type=event.type, consumer=self._durable
        )
        traced = tracing.consuming(self._service, msg.subject, msg.headers, self._durable)
        with bound, acting_as(self._identity), traced:
            if delivery > 1:
                metrics.EVENTS_REDELIVERED.labels(self._service, self._durable).inc()
            started = time.perf_counter()
            try:
                await self._while_available(msg, lambda: self._handler(event))
            except Exception as exc:
                self._observe(started)
                if is_permanent(exc) or delivery >= self._max_deliver:
                    await self._give_up(msg, event, describe(exc))
                    return
                delay = retry_delay(delivery)
                log.warning(
                    "event_failed_will_retry", delivery=delivery, error=repr(exc), retry_in=delay
                )
                metrics.EVENTS_CONSUMED.labels(self._service, self._durable, "retry").inc()
                await msg.nak(delay=delay)
                return
            self._observe(started)
            await msg.ack()
            metrics.EVENTS_CONSUMED.labels(self._service, self._durable, "ok").inc()

    def _observe(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        metrics.EVENT_HANDLING.labels(self._service, self._durable).observe(elapsed)

    async def _while_available(self, msg: Msg, action: Callable[[], Awaitable[None]]) -> None:
        """Runs `action`; while the database is away (UnavailableError) the event is held, not
        spent: the delivery is kept in progress and the action runs again after a back-off, so
        an outage never uses up an event's deliveries (nor loses one whose dead letter could
        not be written). A stop during the outage gives the event back to JetStream."""
        backoff = 0.5
        while True:
            try:
                await action()
                return
            except UnavailableError as exc:
                if self._stopping.is_set():
                    raise
                log.warning("event_waits_for_database", error=str(exc), retry_in=backoff)
                metrics.EVENTS_CONSUMED.labels(self._service, self._durable, "waiting").inc()
                await msg.in_progress()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, self._ack_wait / 3)

    async def _give_up(self, msg: Msg, event: IncomingEvent, error: str) -> None:
        await self._while_available(msg, lambda: self._dead_letters(self._durable, event, error))
        log.error("event_dead_lettered", delivery=event.delivery, error=error)
        metrics.DEAD_LETTERS.labels(self._service, self._durable).inc()
        metrics.EVENTS_CONSUMED.labels(self._service, self._durable, "dead_letter").inc()
        await msg.term()


def describe(exc: BaseException) -> str:
    """What a dead letter says about its error: permanent or not, the class, the message."""
    if isinstance(exc, UndecodableEventError):
        return f"undecodable: {exc}"
    kind = "permanent" if is_permanent(exc) else "gave up after the last delivery"
    return f"{kind}: {exc!r}"
