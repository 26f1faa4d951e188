"""The outbox relay: publishes committed events in pipelined batches and marks them sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Protocol

import structlog

from promesa import metrics
from promesa.bus import EventBus
from promesa.events import OutgoingEvent

log = structlog.get_logger(__name__)


class OutboxStore(Protocol):
    """What the relay needs from a service's store; rows are written with the state change."""

    async def pending_events(self, limit: int) -> Sequence[tuple[int, OutgoingEvent]]:
        """The oldest unsent events with their outbox sequence numbers, in commit order."""
        ...

    async def mark_events_sent(self, seqs: Sequence[int]) -> None: ...

    async def outbox_backlog(self) -> int: ...


class OutboxRelay:
    """Wakes when a write commits (or every `poll_interval`) and drains the outbox.

    A crash after publishing but before marking sent only republishes: JetStream drops the
    copy by its `Nats-Msg-Id`.
    """

    def __init__(
        self,
        store: OutboxStore,
        bus: EventBus,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._bus = bus
        self._service = service
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            self._wake.clear()  # a commit during the flush sets it again, so none is missed
            try:
                await self.flush()
                backoff = 0.1
            except Exception as exc:
                log.warning("outbox_publish_failed", error=repr(exc), retry_in=backoff)
                await self._sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            await self._sleep(self._poll_interval)

    async def flush(self) -> int:
        """Publishes everything pending now; returns how many events were published."""
        published = 0
        async with self._lock:
            while True:
                rows = await self._store.pending_events(self._batch_size)
                if not rows:
                    break
                await self._bus.publish_batch([event for _, event in rows])
                await self._store.mark_events_sent([seq for seq, _ in rows])
                for _, event in rows:
                    metrics.EVENTS_PUBLISHED.labels(self._service, event.subject).inc()
                published += len(rows)
            metrics.OUTBOX_BACKLOG.labels(self._service).set(await self._store.outbox_backlog())
        return published

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
