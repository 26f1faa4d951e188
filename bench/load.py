"""A closed-loop load generator: N calls always in flight for a fixed time after a warm-up.

It runs in the bench process, never in the server's, and reports what the client saw (RPC/s,
per-call latency, status codes) plus how much CPU each watched process used meanwhile, which
tells whether the server or the client was the limit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc

from bench.processes import CpuMeter
from bench.stats import Latencies, LatencySummary

Call = Callable[[int], Awaitable[object]]


@dataclass(frozen=True)
class LoadResult:
    in_flight: int
    seconds: float
    calls: int
    rps: float
    latency: LatencySummary
    errors: Mapping[str, int]
    cpu_percent: Mapping[str, float]  # per watched process; 100 = one core busy


async def closed_loop(
    call: Call,
    *,
    in_flight: int,
    warmup: float,
    duration: float,
    watch: Mapping[str, int],
) -> LoadResult:
    """Keeps `in_flight` calls outstanding; `call(n)` makes the n-th call (n counts from 0).

    Calls that complete inside the measured window count, whenever they started, so the
    window sees the steady state the warm-up reached.
    """
    numbers = itertools.count()
    latencies = Latencies()
    errors: Counter[str] = Counter()
    window = [float("inf"), float("inf")]
    stopping = False
    meter = CpuMeter({"bench client": os.getpid(), **watch})

    async def worker() -> None:
        while not stopping:
            failure = ""
            t0 = time.perf_counter()
            try:
                await call(next(numbers))
            except grpc.aio.AioRpcError as exc:
                failure = exc.code().name
            t1 = time.perf_counter()
            if window[0] <= t1 <= window[1]:
                if failure:
                    errors[failure] += 1
                else:
                    latencies.add(t1 - t0)

    workers = [asyncio.create_task(worker()) for _ in range(in_flight)]
    try:
        await asyncio.sleep(warmup)
        meter.start()
        window[0] = time.perf_counter()
        await asyncio.sleep(duration)
        window[1] = time.perf_counter()
        cpu = meter.stop()
        stopping = True
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    seconds = window[1] - window[0]
    return LoadResult(
        in_flight=in_flight,
        seconds=round(seconds, 3),
        calls=len(latencies),
        rps=len(latencies) / seconds,
        latency=latencies.summary(),
        errors=dict(errors),
        cpu_percent=cpu,
    )


async def one_at_a_time(call: Call, count: int) -> tuple[LatencySummary, Mapping[str, int]]:
    """`count` calls one after another: latency with no queueing in front of the server."""
    latencies = Latencies()
    errors: Counter[str] = Counter()
    for n in range(count):
        t0 = time.perf_counter()
        try:
            await call(n)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            continue
        latencies.add(time.perf_counter() - t0)
    return latencies.summary(), dict(errors)
