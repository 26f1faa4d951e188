"""The reminder scheduler: claims what is due, delivers it through the notifiers, records it.

Exactly once across replicas: a reminder is claimed with a lease in one SQLite transaction, and
its delivery record, its NATS message (through the outbox) and the promise's overdue or
escalation entry are committed together, only while the claim still holds. Webhook and email
are called before that commit; if a replica dies in between, the reminder is delivered again by
the replica that takes the lease over, with the same reminder id as idempotency key.

Nothing is sent, nor retried, for a promise no longer open (kept, cancelled, erased) when its
reminder is claimed: the delivery record says why. The exception is a runaround escalation
that fell due, sent once whatever came after (`ReminderDelivery.sent_whatever_happens`).

Customer notices are claimed, leased and recorded the same way; `noticing.CustomerNotifier`
decides and sends them (customer templates and channels, never the owner's notifiers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import structlog

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
    delivery,
)
from followup.noticing import CustomerNotifier
from followup.ports import Change, Claim, LeaseLostError, Notifier, PromiseStore
from promesa.clock import Clock
from promesa.ids import new_id
from promesa.storage import VersionConflictError
from promesa.usecases import Writes, retry_on_conflict

log = structlog.get_logger(__name__)

NATS = "nats"


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
        writes: Writes[Change] | None = None,
    ) -> None:
        """`writes` is the service's one write path (it wakes the outbox relay); without it
        (a benchmark), the store's commit alone."""
        self._store = store
        self._clock = clock
        self._policy = policy
        self._notifiers = {n.name: n for n in notifiers}
        self._notices = notices
        self._lease = lease
        self._batch = batch
        self._limit = asyncio.Semaphore(concurrency)
        self._writes = writes or Writes(store, lambda: None)

    async def tick(self) -> int:
        """Claims one batch of due reminders and delivers them; returns how many completed."""
        now = self._clock.now()
        claims = await self._store.claim_due(now, now + self._lease, self._batch)
        if not claims:
            return 0
        found = await self._store.get_many(sorted({c.delivery.promise_id for c in claims}))
        promises = {p.id: p for p in found}
        done = await asyncio.gather(
            *(self._deliver(c, promises.get(c.delivery.promise_id)) for c in claims)
        )
        return sum(done)

    async def drain(self, rounds: int = 1000) -> int:
        """Ticks until nothing is due now (tests and shutdown)."""
        total = 0
        for _ in range(rounds):
            count = await self.tick()
            if not count:
                break
            total += count
        return total

    async def _deliver(self, claim: Claim, promise: Promise | None) -> bool:
        r = claim.delivery
        with structlog.contextvars.bound_contextvars(reminder_id=r.id, promise_id=r.promise_id):
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
            async with self._limit:
                attempts = await self._attempt(r, promise, discreet)
            now = self._clock.now()
            updated = r.after_attempts(attempts, now, self._policy)
            events: list[PromiseEvent] = []
            if NATS in r.remaining:
                events.append(ReminderDue(r, promise, discreet, now))
            if updated.announced and not r.announced:
                delivered = tuple(a.notifier for a in attempts if a.success)
                events.append(ReminderSent(updated, delivered, now))
            if not updated.announced and updated.next_attempt_at is None:
                log.error("reminder_failed", attempts=len(updated.attempts))
            return await self._complete(claim, updated, promise, events)

    async def _notice(self, claim: Claim, promise: Promise | None) -> bool:
        if self._notices is None:
            return await self._complete(
                claim, dropped(claim.delivery, "customer notices are not set up"), None, []
            )
        async with self._limit:
            updated, events = await self._notices.handle(claim.delivery, promise)
        return await self._complete(claim, updated, None, events)

    async def _attempt(
        self, r: ReminderDelivery, promise: Promise, discreet: bool
    ) -> list[DeliveryAttempt]:
        attempts: list[DeliveryAttempt] = []
        for name in r.remaining:
            now = self._clock.now()
            if name == NATS:
                attempts.append(DeliveryAttempt(NATS, now, True))
                continue
            notifier = self._notifiers.get(name)
            if notifier is None:
                attempts.append(DeliveryAttempt(name, now, False, "notifier not configured"))
                continue
            try:
                await notifier.send(r, promise, discreet)
            except Exception as exc:
                log.warning("reminder_attempt_failed", notifier=name, error=repr(exc))
                attempts.append(DeliveryAttempt(name, now, False, repr(exc)[:500]))
            else:
                attempts.append(DeliveryAttempt(name, now, True))
        return attempts

    async def _complete(
        self,
        claim: Claim,
        updated: ReminderDelivery,
        promise: Promise | None,
        events: list[PromiseEvent],
    ) -> bool:
        """Commits the delivery record with the promise's consequences (overdue, escalated);
        a concurrent change to the promise is re-read and the consequence applied again."""
        completed = Claim(updated, claim.token)

        async def attempt() -> bool:
            nonlocal promise
            change = Change(completed=[completed], events=list(events))
            if promise is not None and claim.delivery.rounds == 0:
                self._consequences(claim.delivery, promise, change)
            try:
                await self._writes.commit(change)
            except LeaseLostError:
                log.warning("reminder_lease_lost")
                return False
            except VersionConflictError:
                promise = await self._store.get(claim.delivery.promise_id)
                raise
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
            if overdue:  # repeated daily while overdue
                at = self._policy.next_escalation(updated, r.scheduled_at)
                change.added.append(
                    delivery(
                        updated, ReminderKind.ESCALATION, at, r.recipient_id, self._policy, new_id()
                    )
                )
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
