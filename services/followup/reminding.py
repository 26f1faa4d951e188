"""The reminder scheduler: claims what is due, delivers it through the notifiers, records it.

Exactly once across replicas: a reminder is claimed with a lease in one transaction, and every
step of its delivery record (with its NATS message through the outbox, and the promise's
overdue or escalation entry on the first step) is committed only while the claim still holds.
The holder renews the lease while it is still delivering (a third of a lease apart), and claims
no more than its lanes can take within it plus a few rounds of `concurrency` to put off, so
that what a busy replica cannot send is left due for one with room (`_claim_size`).

Each owner-facing notifier (webhook, email) has its own lane (`followup.lanes`): bounded
concurrency, a deadline per send and a circuit breaker. The NATS reminder is recorded and
committed as soon as the reminder is claimed (`ReminderDelivery.progressed`, the claim kept),
so a slow webhook never holds back the reminders already claimed; the round is completed when
the lanes answer. A lane with no room within the lease puts the reminder off (claim released,
next try when room is expected); a lane whose circuit is open records a failed attempt at
once, retried by the policy. Webhook and email are called
before their commit; if a replica dies in between, the reminder is delivered again by the
replica that takes the lease over, with the same reminder id as idempotency key.

Nothing is sent, nor retried, for a promise no longer open (kept, cancelled, erased) when its
reminder is claimed: the delivery record says why. The exception is a runaround escalation
that fell due, sent once whatever came after (`ReminderDelivery.sent_whatever_happens`).

The service runs `ReminderScheduler.due` in a `promesa.workers.Timed` worker: it sleeps until
the next reminder falls due (the store's index answers `next_due`), and a commit in this
process that plans an earlier one (`WakingWrites`) rings its alarm; other replicas' plans are
found at least every CRM_SCHEDULER_INTERVAL_SECONDS. A batch's delivery records are committed
concurrently, so the store's group commit puts them in one transaction or a few.

Customer notices are claimed, leased and recorded the same way; `noticing.CustomerNotifier`
decides and sends them (customer templates and channels, never the owner's notifiers).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from followup import metrics
from followup.breaker import BreakerState, CircuitBreaker
from followup.domain import lifecycle
from followup.domain.events import PromiseEvent, ReminderDue, ReminderSent
from followup.domain.model import Promise, Status
from followup.domain.notices import dropped
from followup.domain.reminders import (
    SCHEDULER,
    DeliveryAttempt,
    ReminderDelivery,
    ReminderKind,
    ReminderPolicy,
)
from followup.lanes import Admission, Lane
from followup.noticing import CustomerNotifier
from followup.ports import Change, Claim, LeaseLostError, Notifier, PromiseStore
from followup.settings import LaneSettings
from promesa import tracing
from promesa.clock import Clock
from promesa.ids import new_id
from promesa.storage import VersionConflictError
from promesa.usecases import Committer, Writes, retry_on_conflict
from promesa.workers import Alarm

log = structlog.get_logger(__name__)

NATS = "nats"
# Rounds of claiming in one sweep at most: a bound, should put-off reminders fall due at once.
_SWEEP_ROUNDS = 1000
DEFAULT_LANES = LaneSettings()
# Rounds of `concurrency` a claim takes beyond what its lanes can send, to put off: their NATS
# part goes out at once. More drains a backlog's NATS reminders sooner, and leaves other
# replicas less to take when they have room.
_PUT_OFF_ROUNDS = 4


class ReminderScheduler:
    def __init__(
        self,
        store: PromiseStore,
        clock: Clock,
        *,
        policy: ReminderPolicy,
        notifiers: Sequence[Notifier] = (),
        notices: CustomerNotifier | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 200,
        concurrency: int = 32,
        lanes: LaneSettings = DEFAULT_LANES,
        deadlines: Mapping[str, timedelta] | None = None,
        writes: Writes[Change] | None = None,
    ) -> None:
        """`writes` is the service's one write path (it wakes the outbox relay, and with
        `WakingWrites` this scheduler); without it (a benchmark), the store's commit alone.
        `concurrency` bounds customer notices in flight; `lanes` the notifiers', each on its
        own; `deadlines` is the longest a send may take, by notifier name (default
        `lanes.send_timeout`)."""
        self._store = store
        self._clock = clock
        self._policy = policy
        self._notices = notices
        self._lease = lease
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self._writes = writes or Writes(store, lambda: None)
        # What is claimed is delivered within half the lease: the rest is room for commits
        # and for a renewal that comes late.
        budget = lease / 2
        self.lanes = {
            n.name: Lane(
                n,
                clock,
                concurrency=lanes.concurrency,
                deadline=(deadlines or {}).get(n.name, lanes.send_timeout),
                budget=budget,
                breaker=CircuitBreaker(
                    clock, failures=lanes.breaker_failures, cool_down=lanes.breaker_cool_down
                ),
            )
            for n in notifiers
        }
        self._held: dict[str, Claim] = {}  # claimed and not completed yet, by reminder id
        self._sending: dict[str, asyncio.Future[list[DeliveryAttempt]]] = {}
        self._lost: set[str] = set()
        self._background: set[asyncio.Task[bool]] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._next_put_off: datetime | None = None  # the earliest put-off time not yet waited for
        self._emptied = asyncio.Event()  # set when no claim is held: the renewer stops
        self._lanes_full = False  # a lane had no room for something the last claim found
        self._more_due = False  # the last claim took as many as it asked for: more may be due
        self._lane_concurrency = lanes.concurrency

    async def tick(self) -> int:
        """Claims one batch of due reminders and delivers it, waiting for every send it
        started; returns how many it completed (delivered, failed, put off or stopped)."""
        started = await self._start()
        tasks = [r for r in started if not isinstance(r, bool)]
        return sum(r for r in started if isinstance(r, bool)) + sum(await asyncio.gather(*tasks))

    async def drain(self, rounds: int = 1000) -> int:
        """Ticks until nothing is due now (tests and shutdown)."""
        total = 0
        for _ in range(rounds):
            count = await self.tick()
            if not count:
                break
            total += count
        return total

    async def due(self, within: float = 1.0) -> datetime | None:
        """The scheduler's run (`promesa.workers.Timed`): claims and starts batches while
        anything is due, then answers when the next reminder falls due, from the index; the
        worker sleeps until then, or until a commit in this process plans an earlier one
        (`WakingWrites`). While the lanes are full it waits, up to `within` seconds, for one
        to free a slot or something put off to fall due, and claims again, as a sweep does;
        past `within`, what is left due makes the worker run again at once."""
        upcoming = await self._store.next_due()
        if upcoming is None or upcoming > self._clock.now():
            return upcoming  # a read, where a claim would be a write to find nothing
        loop = asyncio.get_running_loop()
        ends = loop.time() + within
        for _ in range(_SWEEP_ROUNDS):
            self._lanes_full = False
            if not await self._start():
                break
            if not self._lanes_full:
                if self._more_due:
                    continue
                break  # all that was due is taken: no empty claim (a write) to find that out
            left = ends - loop.time()
            if left <= 0:
                break
            await self._room(left)
        return await self._store.next_due()

    async def _room(self, within: float) -> None:
        """Waits until a send in flight ends (a lane slot frees), something put off falls due,
        or `within` seconds pass. Not for a commit's alarm: our own put-offs ring it, and
        claiming at each would put off the whole backlog rather than leave it to replicas
        with room."""
        mine: list[asyncio.Future[Any]] = [asyncio.ensure_future(asyncio.sleep(within))]
        if self._next_put_off is not None:
            mine.append(asyncio.ensure_future(self._clock.sleep_until(self._next_put_off)))
            self._next_put_off = None
        try:
            await asyncio.wait({*mine, *self._background}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in mine:
                waiting.cancel()

    async def sweep(self, within: float = 1.0) -> int:
        """The periodic job: claims and starts batches while anything is due, without waiting
        for slow lanes (their sends go on, their claims renewed). For up to `within` seconds
        (the sweep interval) it keeps watching: when a lane frees a slot or a reminder it put
        off falls due, it claims again at once rather than at the next sweep. Returns how
        many reminders it took up."""
        loop = asyncio.get_running_loop()
        ends = loop.time() + within
        total = 0
        for _ in range(_SWEEP_ROUNDS):
            self._lanes_full = False
            started = await self._start()
            total += len(started)
            if started and not self._lanes_full:
                continue
            # Nothing due, or the lanes are full: wait until one frees a slot or something
            # put off falls due, leaving what is due meanwhile to replicas with room.
            left = ends - loop.time()
            put_off = self._next_put_off
            if left <= 0 or (put_off is None and not self._background):
                break
            wait = left
            if put_off is not None:
                wait = min(wait, max(0.0, (put_off - self._clock.now()).total_seconds()))
                self._next_put_off = None
            if self._background:
                await asyncio.wait(
                    set(self._background), timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
            else:
                await asyncio.sleep(wait)
        return total

    async def close(self) -> None:
        """At shutdown, after the sweeps stopped: lets the sends in flight finish (each lane
        bounds them by its deadline) and records them, then stops renewing."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)

    async def _start(self) -> list[bool | asyncio.Task[bool]]:
        """Claims one batch; commits what is done at once (NATS, put off, stopped) and returns
        the rest as tasks (the sends admitted to lanes)."""
        now = self._clock.now()
        size = self._claim_size()
        claims = await self._store.claim_due(now, now + self._lease, size)
        self._more_due = len(claims) == size
        if not claims:
            return []
        self._held.update((c.delivery.id, c) for c in claims)
        self._emptied.clear()
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew())
        try:
            found = await self._store.get_many(sorted({c.delivery.promise_id for c in claims}))
        except BaseException:
            for c in claims:
                self._forget(c.delivery.id)
            raise
        promises = {p.id: p for p in found}
        results = await asyncio.gather(
            *(self._begin(c, promises.get(c.delivery.promise_id)) for c in claims),
            return_exceptions=True,
        )
        started: list[bool | asyncio.Task[bool]] = []
        for r in results:
            if isinstance(r, asyncio.Task):
                # Kept here until done: the loop holds tasks only weakly.
                self._background.add(r)
                r.add_done_callback(self._background.discard)
            if not isinstance(r, BaseException):
                started.append(r)
        for r in results:
            if isinstance(r, BaseException):
                raise r  # the sends started meanwhile go on, in the background
        return started

    def _claim_size(self) -> int:
        """What the lanes can still take within their share of the lease, plus a few rounds of
        `concurrency` to put off (their NATS part goes out now): no more, so that what a busy
        replica cannot send is left to one with room (at least one, so the sweep goes on).
        Lanes whose circuit is open take nothing and refuse at once: they do not count."""
        lanes = [x for x in self.lanes.values() if x.breaker.state is BreakerState.CLOSED]
        if not lanes:
            return self._batch
        room = min(max(0, x.capacity - x.admitted) for x in lanes)
        # Nothing to put off until each lane has timed a send: its capacity is a guess.
        extra = _PUT_OFF_ROUNDS * self._lane_concurrency if all(x.timed for x in lanes) else 0
        return max(1, min(self._batch, room + extra))

    async def _renew(self) -> None:
        """Extends the lease of every claim not completed yet, a third of a lease apart, while
        there are any; a claim found taken over stops its sends."""
        while self._held:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._emptied.wait(), self._lease.total_seconds() / 3)
                return
            claims = list(self._held.values())
            try:
                held = await self._store.renew_claims(claims, self._clock.now() + self._lease)
            except Exception:
                log.exception("reminder_lease_renewal_failed", claims=len(claims))
                continue
            for c in claims:
                reminder_id = c.delivery.id
                if reminder_id in held or reminder_id not in self._held:
                    continue  # renewed, or completed meanwhile
                log.warning("reminder_lease_lost", reminder_id=reminder_id)
                self._lost.add(reminder_id)
                sending = self._sending.get(reminder_id)
                if sending is not None:
                    sending.cancel()

    async def _begin(self, claim: Claim, promise: Promise | None) -> bool | asyncio.Task[bool]:
        r = claim.delivery
        bound = structlog.contextvars.bound_contextvars(reminder_id=r.id, promise_id=r.promise_id)
        # A span per delivery, in the trace of what planned it; the sends run on in a task.
        with bound, tracing.working(f"reminder.deliver {r.kind.value.lower()}", parent=r.trace):
            try:
                if r.kind is ReminderKind.CUSTOMER_NOTICE:
                    return await self._notice(claim, promise)
                if promise is None:
                    return await self._complete(claim, self._gone(r), None, [])
                reason = self._not_to_send(r, promise)
                if reason:
                    log.info("reminder_stopped", reason=reason)
                    stopped = r.stopped(reason, self._clock.now())
                    return await self._complete(claim, stopped, None, [])
                discreet = await self._discreet(promise.contact_id)
                return await self._route(claim, promise, discreet)
            except BaseException:
                self._forget(r.id)
                raise

    async def _route(
        self, claim: Claim, promise: Promise, discreet: bool
    ) -> bool | asyncio.Task[bool]:
        """Records NATS, and the lanes that cannot send now, in one commit; sends through
        the lanes that can, in a task that completes the round."""
        r = claim.delivery
        now = self._clock.now()
        ahead: list[DeliveryAttempt] = []
        events: list[PromiseEvent] = []
        if NATS in r.remaining:
            ahead.append(DeliveryAttempt(NATS, now, True))
            events.append(ReminderDue(r, promise, discreet, now))
        admitted: list[Lane] = []
        full: list[Lane] = []
        for name in r.remaining:
            if name == NATS:
                continue
            lane = self.lanes.get(name)
            if lane is None:
                ahead.append(DeliveryAttempt(name, now, False, "notifier not configured"))
                continue
            match lane.admit():
                case Admission.ADMITTED:
                    admitted.append(lane)
                case Admission.FULL:
                    full.append(lane)
                case Admission.OPEN:
                    ahead.append(lane.refused(now))
        until = None
        if full:
            until = min([lane.put_off() for lane in full])
            self._lanes_full = True
            if self._next_put_off is None or until < self._next_put_off:
                self._next_put_off = until
            log.info("reminder_put_off", notifiers=[x.name for x in full], until=until.isoformat())
            if not admitted:
                updated = r.progressed(ahead).put_off(until)
                return await self._complete(
                    claim, updated, promise, self._announce(r, updated, ahead, events)
                )
        if not admitted:
            updated = r.after_attempts(ahead, now, self._policy)
            self._log_outcome(updated)
            return await self._complete(
                claim, updated, promise, self._announce(r, updated, ahead, events)
            )
        if ahead:
            updated = r.progressed(ahead)
            events = self._announce(r, updated, ahead, events)
            try:
                kept = await self._commit(claim, updated, promise, events, keep=True)
            except BaseException:
                for lane in admitted:
                    lane.release()
                raise
            if not kept:
                for lane in admitted:
                    lane.release()
                return False
            claim = Claim(updated, claim.token)
        return asyncio.create_task(self._finish(claim, promise, discreet, admitted, until))

    async def _finish(
        self,
        claim: Claim,
        promise: Promise,
        discreet: bool,
        lanes: list[Lane],
        put_off: datetime | None,
    ) -> bool:
        """Sends through the admitted lanes and completes the round; when other lanes had no
        room (`put_off`) and these all delivered, the round is not over: the reminder comes
        back for the others then."""
        r = claim.delivery
        with structlog.contextvars.bound_contextvars(reminder_id=r.id, promise_id=r.promise_id):
            sending = asyncio.ensure_future(
                asyncio.gather(*(lane.send(r, promise, discreet) for lane in lanes))
            )
            self._sending[r.id] = sending
            try:
                attempts = await sending
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if r.id in self._lost and not (task and task.cancelling()):
                    self._forget(r.id)
                    return False  # another replica has it now
                self._forget(r.id)
                raise
            finally:
                self._sending.pop(r.id, None)
            now = self._clock.now()
            if put_off is not None and all(a.success for a in attempts):
                updated = r.progressed(attempts).put_off(put_off)
            else:
                updated = r.after_attempts(attempts, now, self._policy)
                self._log_outcome(updated)
            return await self._complete(
                claim, updated, promise, self._announce(r, updated, attempts, [])
            )

    def _announce(
        self,
        r: ReminderDelivery,
        updated: ReminderDelivery,
        attempts: Sequence[DeliveryAttempt],
        events: list[PromiseEvent],
    ) -> list[PromiseEvent]:
        """`events`, with ReminderSent when this step is the first to deliver it."""
        if updated.announced and not r.announced:
            delivered = tuple(a.notifier for a in attempts if a.success)
            return [*events, ReminderSent(updated, delivered, self._clock.now())]
        return events

    @staticmethod
    def _log_outcome(updated: ReminderDelivery) -> None:
        if not updated.announced and updated.next_attempt_at is None:
            log.error("reminder_failed", attempts=len(updated.attempts))

    async def _notice(self, claim: Claim, promise: Promise | None) -> bool:
        if self._notices is None:
            return await self._complete(
                claim, dropped(claim.delivery, "customer notices are not set up"), None, []
            )
        async with self._limit:
            updated, events = await self._notices.handle(claim.delivery, promise)
        return await self._complete(claim, updated, None, events)

    async def _complete(
        self,
        claim: Claim,
        updated: ReminderDelivery,
        promise: Promise | None,
        events: list[PromiseEvent],
    ) -> bool:
        """Records the delivery and releases its claim."""
        try:
            return await self._commit(claim, updated, promise, events, keep=False)
        finally:
            self._forget(claim.delivery.id)

    def _forget(self, reminder_id: str) -> None:
        self._held.pop(reminder_id, None)
        self._lost.discard(reminder_id)
        if not self._held:
            self._emptied.set()

    async def _commit(
        self,
        claim: Claim,
        updated: ReminderDelivery,
        promise: Promise | None,
        events: list[PromiseEvent],
        *,
        keep: bool,
    ) -> bool:
        """Commits the delivery record, with the promise's consequences (overdue, escalated)
        when it is the first step taken on the reminder; a concurrent change to the promise is
        re-read and the consequence applied again. `keep` keeps the claim (sends still to
        come). False when the lease was lost."""
        step = Claim(updated, claim.token)
        first = claim.delivery.untouched and not updated.untouched

        async def attempt() -> bool:
            nonlocal promise
            change = Change(events=list(events))
            (change.progressed if keep else change.completed).append(step)
            if promise is not None and first:
                self._consequences(claim.delivery, promise, change)
            try:
                await self._writes.commit(change)
            except LeaseLostError:
                log.warning("reminder_lease_lost")
                return False
            except VersionConflictError:
                promise = await self._store.get(claim.delivery.promise_id)
                raise
            metrics.delivery_recorded(claim.delivery, updated)
            return True

        return await retry_on_conflict(
            attempt, resource="promise", resource_id=claim.delivery.promise_id
        )

    def _consequences(self, r: ReminderDelivery, promise: Promise, change: Change) -> None:
        now = self._clock.now()
        if r.kind is ReminderKind.AT_DUE:
            updated, events = lifecycle.note_overdue(promise, now)
        elif r.kind is ReminderKind.ESCALATION and promise.is_open:
            overdue = promise.status is Status.OPEN and now >= promise.due_at
            reason = "overdue" if overdue else f"handed over {promise.handoff_count} times"
            updated, events = lifecycle.escalate(promise, r.recipient_id, reason, now)
            if overdue:  # the ladder's next step, the last one repeated while overdue
                following = self._policy.following(updated, r, new_id())
                if following is not None:
                    change.added.append(following)
        else:
            return
        if events:
            change.saves.append((updated, promise.version))
            change.events.extend(events)

    @staticmethod
    def _not_to_send(r: ReminderDelivery, promise: Promise) -> str:
        """Why nothing (more) goes out for this reminder; empty when it is to be sent."""
        if promise.erased_at is not None:
            return "not sent: the contact was erased"
        if promise.is_open or r.sent_whatever_happens:
            return ""
        return f"not sent: the promise is {promise.status.value.lower()}"

    def _gone(self, r: ReminderDelivery) -> ReminderDelivery:
        attempt = DeliveryAttempt(SCHEDULER, self._clock.now(), False, "promise not found")
        return r.after_attempts([attempt], self._clock.now(), ReminderPolicy(max_attempts=1))

    async def _discreet(self, contact_id: str) -> bool:
        prefs = await self._store.profile(contact_id)
        return bool(prefs and prefs.discreet)


def earliest_attempt(change: Change) -> datetime | None:
    """The earliest reminder attempt a change puts in the store: new or replanned reminders,
    and claimed ones completed with a next attempt (a retry, a put-off)."""
    planned = [
        *(r.next_attempt_at for reminders in change.replans.values() for r in reminders),
        *(r.next_attempt_at for r in change.added),
        *(c.delivery.next_attempt_at for c in change.completed),
    ]
    return min((at for at in planned if at is not None), default=None)


def traced(change: Change) -> None:
    """Stamps the reminders a change plans with the current trace (none untraced), so that
    each delivery continues the trace of the call or event that planned it."""
    parent = tracing.current_traceparent()
    if not parent:
        return
    change.replans = {
        promise_id: [replace(r, trace=parent) for r in reminders]
        for promise_id, reminders in change.replans.items()
    }
    change.added = [replace(r, trace=parent) for r in change.added]


class WakingWrites(Writes[Change]):
    """The follow-up's one write path: after a commit that plans a reminder, rings the
    scheduler's alarm with its earliest attempt, so the scheduler wakes for it rather than at
    its fallback interval. After the commit, so the scheduler's read finds it; the domain
    counters too (followup.metrics.committed), so nothing rolled back is counted."""

    def __init__(
        self, store: Committer[Change], on_commit: Callable[[], None], alarm: Alarm
    ) -> None:
        super().__init__(store, on_commit)
        self._alarm = alarm

    async def commit(self, change: Change) -> None:
        traced(change)
        await super().commit(change)
        metrics.committed(change)
        at = earliest_attempt(change)
        if at is not None:
            self._alarm.set(at)
