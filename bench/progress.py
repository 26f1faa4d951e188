"""What the bench is doing, on stderr, at most about once a second: a long run is never silent,
and stdout keeps only the final table.

Each line starts with the time since the run started, so a slow step shows where it began.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

EVERY = 1.0  # seconds between two progress lines of one step
_STARTED = time.perf_counter()


def say(message: str) -> None:
    """One line on stderr, at once (a step starting or ending)."""
    print(f"[{time.perf_counter() - _STARTED:7.1f} s] {message}", file=sys.stderr, flush=True)


class Progress:
    """Progress of a step that counts: `seeding contacts: 240,000/1,000,000 (41,200/s)`."""

    def __init__(
        self, what: str, total: int | None = None, *, unit: str = "", start: int = 0
    ) -> None:
        """`start`: what was done before (a resumed seed), left out of the rate."""
        self._what = what
        self._total = total
        self._unit = unit
        self._t0 = time.perf_counter()
        self._last = self._t0
        self._start = self._done = start

    def update(self, done: int) -> None:
        """`done` so far; prints when the last line is a second old."""
        self._done = done
        now = time.perf_counter()
        if now - self._last >= EVERY:
            self._last = now
            say(self._line(now))

    def advance(self, n: int = 1) -> None:
        self.update(self._done + n)

    def finish(self, note: str = "") -> None:
        say(self._line(time.perf_counter()) + (f"; {note}" if note else "") + " - done")

    def _line(self, now: float) -> str:
        total = f"/{self._total:,}" if self._total is not None else ""
        rate = (self._done - self._start) / max(now - self._t0, 1e-9)
        return f"{self._what}: {self._done:,}{total}{self._unit} ({rate:,.0f}/s)"


@asynccontextmanager
async def ticking(status: Callable[[], str]) -> AsyncIterator[None]:
    """Prints `status()` every second while the block runs (a load window, a wait): for steps
    whose work happens in other tasks or processes."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(EVERY)
            say(status())

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
