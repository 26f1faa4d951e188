"""Time as a dependency, so rules about due dates and inactivity are tested without sleeping."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, instant: datetime) -> None:
        """Returns once the clock reads `instant` or later: a worker that waits for something
        due waits in the clock's own time, so a test clock wakes it by moving."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, instant: datetime) -> None:
        # One sleep, on the loop's monotonic time: a wall clock stepped meanwhile moves the
        # instant, so a waiter bounds its waits (a fallback interval) and looks again.
        await asyncio.sleep(max(0.0, (instant - self.now()).total_seconds()))


class ManualClock:
    """A clock that only moves when told to: tests and benchmarks advance it explicitly, and
    whoever sleeps until an instant wakes when the clock is moved to it."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._sleepers: set[tuple[datetime, asyncio.Future[None]]] = set()

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self.set(self._now + delta)
        return self._now

    def set(self, instant: datetime) -> None:
        self._now = instant
        for at, woken in list(self._sleepers):
            if at <= instant:
                self._sleepers.discard((at, woken))
                # Safe from any thread: the sleeper resumes on its own loop.
                woken.get_loop().call_soon_threadsafe(_wake, woken)

    async def sleep_until(self, instant: datetime) -> None:
        if instant <= self._now:
            return
        sleeper = (instant, asyncio.get_running_loop().create_future())
        self._sleepers.add(sleeper)
        try:
            await sleeper[1]
        finally:
            self._sleepers.discard(sleeper)


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():
        woken.set_result(None)
