"""A timed worker runs its job when the instant the job named comes, in the clock's time: a
manual clock wakes it by moving, an alarm set by a commit brings the run forward, at least
every `longest` seconds it runs anyway, and stop() ends it at once, whatever it waits for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from promesa.auth import current_identity, worker_identity
from promesa.clock import ManualClock
from promesa.workers import Alarm, Timed
from tests.support import eventually

DAY = 86_400.0  # seconds: longer than any step of these tests


class Job:
    """Records when each run happened (clock time) and answers the next instant it was told."""

    def __init__(self, clock: ManualClock, answers: list[datetime | None]) -> None:
        self.clock = clock
        self.answers = answers
        self.runs: list[datetime] = []
        self.identities: list[str] = []

    async def __call__(self) -> datetime | None:
        self.runs.append(self.clock.now())
        self.identities.append(current_identity().subject)
        return self.answers.pop(0) if self.answers else None


def ran(job: Job, times: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(job.runs) >= times

    return probe


async def test_the_job_runs_again_when_the_clock_reaches_the_instant_it_named() -> None:
    clock = ManualClock()
    start = clock.now()
    job = Job(clock, [start + timedelta(minutes=5)])
    worker = Timed("followup", "reminder_scheduler", job, clock, Alarm(), longest=DAY)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(ran(job, 1))
        clock.advance(timedelta(minutes=4))
        clock.advance(timedelta(minutes=1))
        await eventually(ran(job, 2))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert job.runs == [start, start + timedelta(minutes=5)]
    assert set(job.identities) == {worker_identity("followup", "reminder_scheduler").subject}


async def test_an_alarm_for_an_earlier_instant_brings_the_run_forward() -> None:
    clock = ManualClock()
    start = clock.now()
    alarm = Alarm()
    job = Job(clock, [start + timedelta(hours=9)])
    worker = Timed("followup", "reminder_scheduler", job, clock, alarm, longest=DAY)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(ran(job, 1))
        alarm.set(start + timedelta(hours=1))
        alarm.set(start + timedelta(hours=2))  # later than the one set: changes nothing
        clock.advance(timedelta(hours=1))
        await eventually(ran(job, 2))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert job.runs == [start, start + timedelta(hours=1)]


async def test_with_nothing_planned_the_job_runs_every_longest_interval() -> None:
    clock = ManualClock()
    start = clock.now()
    job = Job(clock, [])
    worker = Timed("followup", "reminder_scheduler", job, clock, Alarm(), longest=60.0)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(ran(job, 1))
        clock.advance(timedelta(seconds=60))
        await eventually(ran(job, 2))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert job.runs == [start, start + timedelta(seconds=60)]


async def test_a_failing_run_does_not_end_the_worker() -> None:
    clock = ManualClock()
    runs: list[datetime] = []

    async def failing() -> datetime | None:
        runs.append(clock.now())
        raise RuntimeError("the store is away")

    worker = Timed("followup", "reminder_scheduler", failing, clock, Alarm(), longest=1.0)
    task = asyncio.create_task(worker.run())
    try:
        await eventually(lambda: _async(len(runs) >= 1))
        clock.advance(timedelta(seconds=1))
        await eventually(lambda: _async(len(runs) >= 2))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 5)

    assert not task.exception()


async def test_stop_ends_the_wait_at_once_whatever_it_waits_for() -> None:
    clock = ManualClock()
    job = Job(clock, [clock.now() + timedelta(days=365)])
    worker = Timed("followup", "reminder_scheduler", job, clock, Alarm(), longest=DAY)
    task = asyncio.create_task(worker.run())
    await eventually(ran(job, 1))

    worker.stop()

    await asyncio.wait_for(task, 5)  # not a year
    assert len(job.runs) == 1


async def test_a_manual_clock_wakes_its_sleepers_only_when_moved_to_their_instant() -> None:
    clock = ManualClock()
    woken: list[datetime] = []

    async def sleeper(at: datetime) -> None:
        await clock.sleep_until(at)
        woken.append(at)

    first, second = clock.now() + timedelta(seconds=10), clock.now() + timedelta(seconds=20)
    tasks = [asyncio.create_task(sleeper(second)), asyncio.create_task(sleeper(first))]
    await clock.sleep_until(clock.now())  # an instant already reached: returns at once

    clock.advance(timedelta(seconds=15))
    await eventually(lambda: _async(woken == [first]))
    clock.advance(timedelta(seconds=5))
    await asyncio.wait_for(asyncio.gather(*tasks), 5)

    assert woken == [first, second]


async def _async(value: object) -> object:
    return value
