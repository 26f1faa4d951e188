"""The outbox relay: claims committed events, publishes them in pipelined batches, deletes them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from promesa import metrics, tracing
from promesa.bus import EventBus
from promesa.events import OutgoingEvent

log = structlog.get_logger(__name__)


class OutboxStore(Protocol):
    """What the relay needs from a service's store; rows are written with the state change.

    Every replica of a service runs a relay over the same outbox, so a relay claims the rows it
    publishes: a row goes out through one relay, and a core-NATS subscriber (which JetStream's
    duplicate check does not shield) sees each event once."""

    async def claim_events(
        self, holder: str, limit: int, lease: timedelta
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        """Claims for `holder`, for `lease`, the oldest events no other relay holds (or whose
        holder's claim ran out: it died), with those `holder` holds already; atomically, so two
        holders never get one row. Returns them with their outbox sequence numbers, in commit
        order."""
        ...

    def hold_new_events(self, holder: str | None, lease: timedelta) -> None:
        """Claims the events of every write from now on for `holder`, for `lease`, in the
        write's own transaction (None: from now on they are written unclaimed)."""
        ...

    async def held_events(
        self, holder: str, after: int, limit: int
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        """The events `holder` holds, numbered after `after`, in commit order: a read."""
        ...

    async def pending_events(self, limit: int) -> Sequence[tuple[int, OutgoingEvent]]:
        """The oldest unsent events, whoever holds them, in commit order (nothing is claimed)."""
        ...

    async def mark_events_sent(self, seqs: Sequence[int]) -> None: ...

    async def release_events(self, holder: str) -> None:
        """Unclaims what `holder` still holds, so that another relay takes it over at once."""
        ...

    async def outbox_backlog(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Hold:
    """Whom a store's writes claim their outbox rows for as they commit
    (`OutboxStore.hold_new_events`), and for how long."""

    holder: str
    lease: timedelta

    def claim(self, now: datetime) -> tuple[str, datetime]:
        return self.holder, now + self.lease


# Longer than a batch's publish timeout (EventBus.publish_batch, 10 s), so a live relay's claim
# never runs out under it; the wait before another relay takes over the rows of one that died.
CLAIM_LEASE = timedelta(seconds=30)
# How often `flush` looks whether rows another relay holds have gone out.
_OTHERS_POLL = 0.02


class OutboxRelay:
    """Wakes when a write commits (or every `poll_interval`) and drains the outbox.

    It publishes only rows it has claimed, so replicas share the outbox instead of each
    publishing every row. A crash after publishing but before marking sent only republishes
    (once its claim runs out, through whichever relay claims the rows): JetStream drops the
    copy by its `Nats-Msg-Id`.

    While it runs, its replica's writes claim their rows for it as they commit
    (`hold_new_events`): woken by a commit, it reads them and publishes at once, and deletes
    them behind its back. Claiming them afterwards cost a write of its own, which waited for
    the commit in flight and then its own: at 500 events/s on a million open promises, most of
    the time from a commit to its event on NATS. Rows nobody holds any more (a relay stopped
    or died, or failed to publish) are claimed the old way: at start, on every poll and in
    `flush`.
    """

    def __init__(
        self,
        store: OutboxStore,
        bus: EventBus,
        *,
        service: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lease: timedelta = CLAIM_LEASE,
    ) -> None:
        self._store = store
        self._bus = bus
        self._service = service
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lease = lease
        # Unique among live relays; the runtime names it after the replica's address once it
        # is bound (`hold_as`), so a replica restarted in place takes its predecessor's claims.
        self.holder = f"{service}-{uuid.uuid4().hex}"
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._lock = asyncio.Lock()
        self._sent_through = 0  # the last held row published: the next read starts after it
        self._deleting: set[asyncio.Task[None]] = set()
        self._deleting_rows = 0

    def hold_as(self, address: str) -> None:
        """Claims from now on as the replica at `address` (host and gRPC port). Two live
        processes never share one, as ports are bound exclusively; a process restarted at the
        same address after a crash takes over at once the rows its predecessor had claimed,
        instead of waiting for their lease to run out."""
        self.holder = f"{self._service}@{address}"

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        claim = True  # at start, and after a poll or a failure: rows nobody holds too
        self._store.hold_new_events(self.holder, self._lease)
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # a commit during the flush sets it again, so none is missed
                try:
                    await self._publish_claimable(claim=claim)
                    backoff = 0.1
                except Exception as exc:
                    log.warning(
                        "outbox_publish_failed",
                        holder=self.holder,
                        error=repr(exc),
                        retry_in=backoff,
                    )
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    claim = True
                    continue
                claim = not await self._sleep(self._poll_interval)
        finally:
            self._store.hold_new_events(None, self._lease)
            await self._deletes_done()
        await self._release()

    async def flush(self) -> int:
        """Publishes everything pending now, and waits (up to a lease) for the rows other relays
        held meanwhile to go out, taking them over if their holder died: when it returns, every
        event committed before the call is in JetStream (what an erasure needs before it purges
        the stream). Returns how many events this relay published."""
        published = await self._publish_claimable(claim=True)
        await self._deletes_done()
        deadline = time.monotonic() + self._lease.total_seconds()
        waiting_for = {seq for seq, _ in await self._store.pending_events(self._batch_size)}
        while waiting_for:
            if time.monotonic() >= deadline:
                log.warning(
                    "outbox_flush_gave_up_waiting", holder=self.holder, rows=len(waiting_for)
                )
                break
            await asyncio.sleep(_OTHERS_POLL)
            published += await self._publish_claimable(claim=True)
            await self._deletes_done()
            still = {seq for seq, _ in await self._store.pending_events(self._batch_size)}
            waiting_for &= still
        return published

    async def _publish_claimable(self, *, claim: bool) -> int:
        """Publishes the rows held since their commit; with `claim`, then claims and publishes
        batch after batch until nothing is left to claim."""
        published = 0
        async with self._lock:
            while rows := await self._store.held_events(
                self.holder, self._sent_through, self._batch_size
            ):
                await self._publish(rows)
                self._sent_through = rows[-1][0]
                published += len(rows)
            if claim:
                await self._deletes_done()  # a row claimed again must not be one just sent
                while rows := await self._store.claim_events(
                    self.holder, self._batch_size, self._lease
                ):
                    await self._publish(rows)
                    await self._deletes_done()
                    published += len(rows)
            backlog = await self._store.outbox_backlog()
            metrics.OUTBOX_BACKLOG.labels(self._service).set(backlog)
            if backlog <= self._deleting_rows:  # caught up: no wait for the refresher
                metrics.OUTBOX_OLDEST_AGE.labels(self._service).set(0)
        return published

    async def _publish(self, rows: Sequence[tuple[int, OutgoingEvent]]) -> None:
        """Publishes a batch, then deletes it in the background: the next batch does not wait
        for that write."""
        try:
            with tracing.relay_batch(self._service, [e for _, e in rows]) as events:
                await self._bus.publish_batch(events)
        except Exception:
            # Another relay may get through where this one could not: hand them over.
            await self._deletes_done()
            await self._release()
            raise
        for _, event in rows:
            metrics.EVENTS_PUBLISHED.labels(self._service, event.type).inc()
        deleting = self._store.mark_events_sent([seq for seq, _ in rows])
        self._deleting.add(task := asyncio.create_task(deleting))
        self._deleting_rows += len(rows)
        task.add_done_callback(functools.partial(self._deleted, len(rows)))

    def _deleted(self, rows: int, task: asyncio.Task[None]) -> None:
        self._deleting.discard(task)
        self._deleting_rows -= rows
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The rows stay, held by this relay: claimed again, they go out again, and
            # JetStream drops the copies.
            log.warning("outbox_delete_failed", holder=self.holder, rows=rows, error=repr(exc))

    async def _deletes_done(self) -> None:
        while self._deleting:
            await asyncio.gather(*self._deleting, return_exceptions=True)

    async def measure(self, now: datetime) -> None:
        """Sets the outbox gauges from the store, whoever holds the rows (the metrics
        refresher): the age is `now` less the oldest waiting event's time, 0 when none."""
        metrics.OUTBOX_BACKLOG.labels(self._service).set(await self._store.outbox_backlog())
        oldest = await self._store.pending_events(1)
        age = max(0.0, (now - oldest[0][1].time).total_seconds()) if oldest else 0.0
        metrics.OUTBOX_OLDEST_AGE.labels(self._service).set(age)

    async def _release(self) -> None:
        try:
            await self._store.release_events(self.holder)
        except Exception as exc:  # the claims then run out on their own
            log.warning("outbox_release_failed", holder=self.holder, error=repr(exc))

    async def _sleep(self, seconds: float) -> bool:
        """True when woken (a commit, a stop) before `seconds` passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
            return True
        return False
