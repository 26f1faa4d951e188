"""A background job repeated on an interval (sweeps, schedulers) that stops promptly."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from promesa.auth import acting_as, worker_identity

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
