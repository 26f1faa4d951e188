"""A background job repeated on an interval (sweeps, schedulers) that stops promptly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


class Periodic:
    def __init__(self, name: str, job: Callable[[], Awaitable[object]], interval: float) -> None:
        self.name = name
        self._job = job
        self._interval = interval
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._job()
            except Exception:
                log.exception("periodic_job_failed", job=self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
