"""Load generators: closed loop (N calls always in flight) and paced (a call every 1/rate s).

They run in the bench process, never in the server's, and report what the client saw (RPC/s,
per-call latency, status codes) plus how much CPU each watched process used meanwhile, which
tells whether the server or the client was the limit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import grpc

from bench.processes import CpuMeter, Server
from bench.profile import Profile
from bench.progress import Progress, say, ticking
from bench.stats import Latencies, LatencySummary, median_summary

Call = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class LoadResult:
    in_flight: int  # closed loop: always; paced: the most at any moment
    seconds: float
    calls: int
    rps: float
    latency: LatencySummary
    errors: Mapping[str, int]
    cpu_percent: Mapping[str, float]  # per watched process; 100 = one core busy


class _Tally:
    """What the client saw: the latency of each call that succeeded, the status of each that
    failed."""

    def __init__(self) -> None:
        self.latencies = Latencies()
        self.errors: Counter[str] = Counter()

    def add(self, seconds: float, failure: str) -> None:
        if failure:
            self.errors[failure] += 1
        else:
            self.latencies.add(seconds)

    def __len__(self) -> int:
        """Calls counted so far, failed ones included."""
        return len(self.latencies) + self.errors.total()

    def result(self, in_flight: int, seconds: float, cpu: Mapping[str, float]) -> LoadResult:
        calls = len(self.latencies)
        return LoadResult(
            in_flight=in_flight,
            seconds=round(seconds, 3),
            calls=calls,
            rps=calls / seconds,
            latency=self.latencies.summary(),
            errors=dict(self.errors),
            cpu_percent=cpu,
        )


def median_load(loads: Sequence[LoadResult]) -> LoadResult:
    """Several runs of one load as one row: the median RPC/s, latency percentiles and CPU per
    process, the calls and failures of all runs added up."""
    cpu: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    for load in loads:
        errors.update(load.errors)
        for name, pct in load.cpu_percent.items():
            cpu.setdefault(name, []).append(pct)
    return LoadResult(
        in_flight=max(load.in_flight for load in loads),
        seconds=round(sum(load.seconds for load in loads), 3),
        calls=sum(load.calls for load in loads),
        rps=statistics.median(load.rps for load in loads),
        latency=median_summary([load.latency for load in loads]),
        errors=dict(errors),
        cpu_percent={name: statistics.median(pcts) for name, pcts in cpu.items()},
    )


async def _timed(call: Call, n: int) -> tuple[float, str]:
    """Makes the n-th call: its duration, and its status code name if it failed ("" if not)."""
    t0 = time.perf_counter()
    try:
        await call(n)
    except grpc.aio.AioRpcError as exc:
        return time.perf_counter() - t0, exc.code().name
    return time.perf_counter() - t0, ""


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Cancels what is still running (after an error or a cancellation) and waits for it."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def closed_loop(
    call: Call,
    *,
    label: str,
    in_flight: int,
    warmup: float,
    duration: float,
    watch: Mapping[str, int],
) -> LoadResult:
    """Keeps `in_flight` calls outstanding; `call(n)` makes the n-th call (n counts from 0).

    Calls that complete inside the measured window count, whenever they started, so the
    window sees the steady state the warm-up reached. `label` names the load in the progress
    lines (e.g. `CreateContact @64 in flight on contacts`).
    """
    numbers = itertools.count()
    tally = _Tally()
    window = [float("inf"), float("inf")]
    stopping = False
    meter = CpuMeter({"bench client": os.getpid(), **watch})

    async def worker() -> None:
        while not stopping:
            seconds, failure = await _timed(call, next(numbers))
            if window[0] <= time.perf_counter() <= window[1]:
                tally.add(seconds, failure)

    def status() -> str:
        elapsed = time.perf_counter() - window[0]
        rate = len(tally) / elapsed if elapsed > 0 else 0.0
        return f"{label}: measuring {duration:g} s: {elapsed:.1f} s in, {rate:,.0f} RPC/s"

    workers = [asyncio.create_task(worker()) for _ in range(in_flight)]
    try:
        say(f"{label}: warm-up {warmup:g} s...")
        await asyncio.sleep(warmup)
        meter.start()
        window[0] = time.perf_counter()
        async with ticking(status):
            await asyncio.sleep(duration)
        window[1] = time.perf_counter()
        cpu = meter.stop()
        stopping = True
        await asyncio.gather(*workers)
    finally:
        await _settle(workers)
    result = tally.result(in_flight, window[1] - window[0], cpu)
    say(f"{label}: {result.rps:,.0f} RPC/s, p99 {result.latency.p99_ms or 0:.1f} ms")
    return result


async def loaded(call: Call, rpc: str, server: Server, profile: Profile) -> LoadResult:
    """The closed loop with the profile's calls in flight, warm-up and window."""
    return await closed_loop(
        call,
        label=f"{rpc} @{profile.in_flight} in flight on {server.name}",
        in_flight=profile.in_flight,
        warmup=profile.warmup_seconds,
        duration=profile.measure_seconds,
        watch=server.watched(),
    )


async def paced(
    call: Call, *, label: str, rate: float, duration: float, watch: Mapping[str, int]
) -> LoadResult:
    """Starts `call(n)` every 1/rate seconds for `duration`, however many are still in flight
    (an open loop: customers do not wait for each other), then waits for all of them. A start
    that falls behind schedule is made at once, so the offered rate holds on average."""
    tally = _Tally()
    in_flight = peak = 0
    meter = CpuMeter({"bench client": os.getpid(), **watch})

    async def one(n: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            tally.add(*await _timed(call, n))
        finally:
            in_flight -= 1

    tasks: list[asyncio.Task[None]] = []

    def status() -> str:
        elapsed = time.perf_counter() - start
        return (
            f"{label} paced at {rate:g}/s for {duration:g} s: {elapsed:.1f} s in,"
            f" {len(tally):,} answered ({len(tally) / elapsed:,.0f}/s), {in_flight} in flight"
        )

    meter.start()
    start = time.perf_counter()
    try:
        async with ticking(status):
            for n in range(round(rate * duration)):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(n)))
            await asyncio.gather(*tasks)
    finally:
        await _settle(tasks)
    seconds = time.perf_counter() - start
    return tally.result(peak, seconds, meter.stop())


async def one_at_a_time(
    call: Call, count: int, label: str = ""
) -> tuple[LatencySummary, Mapping[str, int]]:
    """`count` calls one after another: latency with no queueing in front of the server.
    With a `label`, progress lines say how far they are."""
    tally = _Tally()
    counter = Progress(f"{label}, 1 in flight", count, unit=" calls") if label else None
    for n in range(count):
        tally.add(*await _timed(call, n))
        if counter is not None:
            counter.update(n + 1)
    if counter is not None:
        counter.finish()
    return tally.latencies.summary(), dict(tally.errors)
