"""Background jobs that stop promptly: one repeated on an interval (sweeps), one run when its
next instant comes (the reminder scheduler)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta

import structlog

from promesa.auth import acting_as, worker_identity
from promesa.clock import Clock

log = structlog.get_logger(__name__)


class Periodic:
    """Runs `job` every `interval` seconds as the service's own named identity."""

    def __init__(
        self, service: str, name: str, job: Callable[[], Awaitable[object]], interval: float
    ) -> None:
        self.name = name
        self._identity = worker_identity(service, name)
        self._job = job
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Runs at a fixed rate: the time a job takes comes out of the wait, not on top of it
        (a reminder due just after a tick is sent one interval later, not more)."""
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            try:
                with acting_as(self._identity):
                    await self._job()
            except Exception:
                log.exception("periodic_job_failed", job=self.name)
            wait = max(0.0, self._interval - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)


class Alarm:
    """The earliest instant a worker was asked to wake at since its last run: whoever plans
    work in this process (a commit) sets it; the worker sleeps until then at the latest."""

    def __init__(self) -> None:
        self.at: datetime | None = None
        self._rung = asyncio.Event()

    def set(self, at: datetime) -> None:
        """Brings the wake-up forward to `at`; a later instant than the one set changes nothing."""
        if self.at is None or at < self.at:
            self.at = at
            self._rung.set()

    def reset(self) -> None:
        """At the start of a run: what was planned before it is the run's to find."""
        self.at = None
        self._rung.clear()

    def _ringing(self) -> Coroutine[object, object, bool]:
        """Completes at the next `set` from now on that brings the wake-up forward (cleared at
        the call, not when the waiter first runs, so no `set` in between is missed)."""
        self._rung.clear()
        return self._rung.wait()

    async def sleep(self, clock: Clock, until: datetime, stopping: asyncio.Event) -> None:
        """Sleeps in the clock's time until `until`, or an earlier instant set meanwhile, or
        the stop, whichever comes first."""
        while not stopping.is_set():
            deadline = until if self.at is None else min(until, self.at)
            if clock.now() >= deadline:
                return
            waits = [
                asyncio.ensure_future(clock.sleep_until(deadline)),
                asyncio.ensure_future(self._ringing()),
                asyncio.ensure_future(stopping.wait()),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()


class Timed:
    """Runs `job` when its next instant comes, as the service's own named identity. The job
    does what is due and answers when it next has something to do (None: nothing planned);
    `alarm` brings the run forward when this process plans something earlier; and the worker
    runs at least every `longest` seconds of the clock, for what other processes planned."""

    def __init__(
        self,
        service: str,
        name: str,
        job: Callable[[], Awaitable[datetime | None]],
        clock: Clock,
        alarm: Alarm,
        *,
        longest: float,
    ) -> None:
        self.name = name
        self._identity = worker_identity(service, name)
        self._job = job
        self._clock = clock
        self._alarm = alarm
        self._longest = timedelta(seconds=longest)
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            self._alarm.reset()  # a plan committed from here on rings for the next wait
            upcoming: datetime | None = None
            try:
                with acting_as(self._identity):
                    upcoming = await self._job()
            except Exception:
                log.exception("timed_job_failed", job=self.name)
            latest = self._clock.now() + self._longest
            until = latest if upcoming is None else min(upcoming, latest)
            await self._alarm.sleep(self._clock, until, self._stopping)
