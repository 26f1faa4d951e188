"""Periodic background jobs: each run acts as the service's own named identity, a failing run
does not end the job, and stop() ends it promptly, whatever the interval."""

from __future__ import annotations

import asyncio

import pytest

from promesa.auth import Identity, Role, current_identity, worker_identity
from promesa.errors import UnauthenticatedError
from promesa.workers import Periodic
from tests.support import eventually

SHORT = 0.01  # seconds between runs: the job's own interval is the only wait
LONG = 3600.0


class Job:
    """Records who each run acted as; the first `failures` runs raise."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.runs: list[Identity] = []

    async def __call__(self) -> None:
        self.runs.append(current_identity())
        if len(self.runs) <= self.failures:
            raise RuntimeError("the sweep failed")


async def runs_of(job: Job, at_least: int) -> list[Identity] | None:
    return job.runs if len(job.runs) >= at_least else None


async def test_each_run_acts_as_the_workers_own_identity() -> None:
    job = Job()
    worker = Periodic("followup", "reminder-sweep", job, SHORT)
    task = asyncio.create_task(worker.run())
    try:
        runs = await eventually(lambda: runs_of(job, 3), timeout=5)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert set(runs) == {Identity("followup/reminder-sweep", Role.SERVICE)}
    assert runs[0] == worker_identity("followup", "reminder-sweep")


async def test_the_identity_is_bound_only_inside_the_job() -> None:
    job = Job()
    worker = Periodic("contacts", "lapse-sweep", job, SHORT)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: runs_of(job, 1), timeout=5)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    with pytest.raises(UnauthenticatedError):
        current_identity()


async def test_a_failing_run_does_not_end_the_job() -> None:
    job = Job(failures=2)
    worker = Periodic("followup", "escalations", job, SHORT)
    task = asyncio.create_task(worker.run())
    try:
        runs = await eventually(lambda: runs_of(job, 3), timeout=5)
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert len(runs) >= 3
    assert task.exception() is None


async def test_stop_ends_the_wait_at_once_whatever_the_interval() -> None:
    job = Job()
    worker = Periodic("contacts", "lapse-sweep", job, LONG)
    task = asyncio.create_task(worker.run())
    await eventually(lambda: runs_of(job, 1), timeout=5)

    worker.stop()

    await asyncio.wait_for(task, 5)  # not an hour
    assert len(job.runs) == 1


async def test_a_worker_stopped_before_it_starts_never_runs_its_job() -> None:
    job = Job()
    worker = Periodic("contacts", "lapse-sweep", job, SHORT)

    worker.stop()
    await asyncio.wait_for(worker.run(), 5)

    assert job.runs == []
