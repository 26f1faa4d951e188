"""A circuit breaker on an injected clock: after enough consecutive failures a receiver is left
alone for a cool-down instead of being waited on, then one trial call tells whether it is back.

Written here rather than taken from PyPI: pybreaker's async path needs Tornado, purgatory and
aiobreaker read the wall clock (tests drive time with a ManualClock), and aiobreaker is
unmaintained since 2021. It holds no lock: one event loop, and no await inside its methods.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from promesa.clock import Clock


class BreakerState(enum.StrEnum):
    CLOSED = "closed"  # calls go through
    OPEN = "open"  # calls are refused at once until the cool-down ends
    HALF_OPEN = "half_open"  # the cool-down ended: one trial call is let through


class CircuitBreaker:
    def __init__(self, clock: Clock, *, failures: int, cool_down: timedelta) -> None:
        """Opens after `failures` consecutive failures, for `cool_down`."""
        self._clock = clock
        self._threshold = failures
        self._cool_down = cool_down
        self._failures = 0
        self._opened_at: datetime | None = None
        self._trial_out = False
        self.last_error = ""

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock.now() < self._opened_at + self._cool_down:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def admit(self) -> bool:
        """Whether a call may go now; an admitted call must end in `succeeded`, `failed` or
        `abandoned`. Half-open admits one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def succeeded(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def failed(self, error: str) -> bool:
        """Counts a failure; True when it opened (or reopened) the circuit."""
        self.last_error = error
        self._failures += 1
        trial = self._trial_out
        self._trial_out = False
        if trial or (self._opened_at is None and self._failures >= self._threshold):
            self._opened_at = self._clock.now()
            return True
        return False

    def abandoned(self) -> None:
        """An admitted call that never finished (cancelled): a trial may be made again."""
        self._trial_out = False
