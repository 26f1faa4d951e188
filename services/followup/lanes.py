"""One lane per owner-facing notifier (webhook, email): its own bounded concurrency, its own
circuit breaker and a deadline on each send, so that a slow or dead receiver holds up nobody
else's reminders and no claim outlives the work done under it.

A lane admits a reminder only while it can still send it within a quarter of the scheduler's
budget (half the lease) at the pace it measures: `capacity = concurrency x (budget / 4 //
typical send time)`, at least `concurrency`.
The deadline (the notifier's attempts x per-attempt timeout + back-offs) bounds each send, and
the scheduler renews the lease of what is still being sent, so a pace that slows mid-way costs
time, never a second delivery. What a lane cannot take is put off, not attempted: the claim is
released at once, with the next try when the lane expects room, and another replica may take
it. While its circuit is open the attempt is recorded as failed at once and retried by the
policy.
"""

from __future__ import annotations

import asyncio
import enum
import time
from datetime import datetime, timedelta

import structlog

from followup.breaker import BreakerState, CircuitBreaker
from followup.domain.model import Promise
from followup.domain.reminders import DeliveryAttempt, ReminderDelivery
from followup.ports import Notifier
from promesa.clock import Clock

log = structlog.get_logger(__name__)

# Weight of the newest send in the lane's running estimate of how long a send takes.
_SMOOTHING = 0.2
# How long a send is taken to last until one was timed, in seconds.
_FIRST_GUESS = 0.1
# The share of the budget a lane takes on ahead (1/4).
_AHEAD_SHARE = 4
# The shortest send the capacity assumes, in seconds: a bound on what one claim admits.
_FASTEST = 0.001
# Replicas assumed to drain a lane's put-off reminders (each has its own lane): one that comes
# back before there is room is only put off again, one that comes back late leaves a lane idle.
_REPLICAS = 2
# How many rounds of sends ahead a put-off reminder is scheduled at most.
_HORIZON_ROUNDS = 8


class Admission(enum.Enum):
    ADMITTED = "admitted"  # a slot is held: `send` must follow (or `release`)
    FULL = "full"  # no room within the budget: put the reminder off
    OPEN = "open"  # the circuit is open: record a failed attempt, retry by the policy


class Lane:
    def __init__(
        self,
        notifier: Notifier,
        clock: Clock,
        *,
        concurrency: int,
        deadline: timedelta,
        budget: timedelta,
        breaker: CircuitBreaker,
    ) -> None:
        """`deadline` bounds each send (the notifier's own retries included); `budget` is how
        long the scheduler may take over what it claimed (less than the lease)."""
        self.notifier = notifier
        self.name = notifier.name
        self.breaker = breaker
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._deadline = deadline
        self._budget = budget.total_seconds()
        self._admitted = 0
        self._waiting = 0  # put off since the lane last admitted one
        # Until a send is timed, a guess short enough that put-off reminders come back soon
        # (one that comes back too early is only put off again).
        self._typical = min(deadline.total_seconds(), _FIRST_GUESS)
        self._timed = False

    @property
    def capacity(self) -> int:
        """How many sends the lane finishes within a quarter of the budget at its measured
        pace, at least one round of `concurrency`: the rest of the budget is a margin for a
        pace that slows, and what the lane leaves is there for other replicas to take. One
        round until a send was timed: a guess must not commit the lane to a whole batch."""
        if not self._timed:
            return self._concurrency
        per_slot = int(self._budget / _AHEAD_SHARE / max(self._typical, _FASTEST))
        return self._concurrency * max(1, per_slot)

    @property
    def timed(self) -> bool:
        """Whether the lane has measured a send yet."""
        return self._timed

    @property
    def admitted(self) -> int:
        return self._admitted

    def admit(self) -> Admission:
        """OPEN first: a dead receiver's reminders are refused at once, not put off behind
        the sends still hanging on it."""
        if self.breaker.state is BreakerState.OPEN:
            return Admission.OPEN
        if self._admitted >= self.capacity:
            return Admission.FULL
        if not self.breaker.admit():
            return Admission.OPEN  # half-open, and its one trial is under way
        self._admitted += 1
        self._waiting = 0
        return Admission.ADMITTED

    def release(self) -> None:
        """Gives back an admitted slot that will not be sent (the reminder was put off)."""
        self._admitted -= 1
        self.breaker.abandoned()

    def refused(self, at: datetime) -> DeliveryAttempt:
        """The attempt recorded while the circuit is open."""
        return DeliveryAttempt(
            self.name, at, False, f"circuit open: {self.breaker.last_error}"[:500]
        )

    def put_off(self) -> datetime:
        """When a reminder the lane has no room for should come back: after the sends admitted
        and the reminders put off before it drain, `concurrency` at a time on each of two
        replicas, each taking the typical time, spread one by one (at least 10 ms, so a
        put-off reminder is never due at once), and at most a few rounds ahead."""
        self._waiting += 1
        ahead = self._admitted + self._waiting - 1
        rounds = min(max(1.0, ahead / self._concurrency / _REPLICAS), _HORIZON_ROUNDS)
        return self._clock.now() + timedelta(seconds=rounds * max(self._typical, 0.01))

    async def send(
        self, delivery: ReminderDelivery, promise: Promise, discreet: bool
    ) -> DeliveryAttempt:
        """One admitted send, within the deadline; never raises but on cancellation."""
        try:
            async with self._slots:
                at = self._clock.now()
                if self.breaker.state is BreakerState.OPEN:
                    # It opened while this send waited for a slot: not worth waiting on.
                    return self.refused(at)
                started = time.monotonic()
                try:
                    async with asyncio.timeout(self._deadline.total_seconds()):
                        await self.notifier.send(delivery, promise, discreet)
                except TimeoutError:
                    error = f"no answer within {self._deadline.total_seconds():g} s"
                except Exception as exc:
                    error = repr(exc)[:500]
                else:
                    error = ""
                elapsed = time.monotonic() - started
        except asyncio.CancelledError:
            self.breaker.abandoned()
            raise
        finally:
            self._admitted -= 1
        weight = _SMOOTHING if self._timed else 1.0
        self._typical += weight * (elapsed - self._typical)
        self._timed = True
        if not error:
            self.breaker.succeeded()
            return DeliveryAttempt(self.name, at, True)
        if self.breaker.failed(error):
            log.warning("notifier_circuit_opened", notifier=self.name, error=error)
        log.warning("reminder_attempt_failed", notifier=self.name, error=error)
        return DeliveryAttempt(self.name, at, False, error)
