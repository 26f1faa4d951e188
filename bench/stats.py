"""Latency samples and their percentiles (nearest rank): seconds in, milliseconds out; and a
figure over several runs (median, min, max)."""

from __future__ import annotations

import math
import statistics
from array import array
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_ms: float | None  # None without samples
    p99_ms: float | None
    max_ms: float | None


class Latencies:
    """Appends are cheap (a C double each), so a hot loop can record every call."""

    def __init__(self) -> None:
        self._samples = array("d")

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)

    def __len__(self) -> int:
        return len(self._samples)

    def summary(self) -> LatencySummary:
        ordered = sorted(self._samples)
        return LatencySummary(
            count=len(ordered),
            p50_ms=_nearest_rank(ordered, 50),
            p99_ms=_nearest_rank(ordered, 99),
            max_ms=ordered[-1] * 1000 if ordered else None,
        )


def _nearest_rank(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1] * 1000


@dataclass(frozen=True)
class Spread:
    """One figure over the runs of a bench: the issue's figures are medians of 3 runs, and the
    range says how much a single run could be trusted."""

    median: float
    low: float
    high: float
    values: list[float | None]  # per run, in run order; None where the run had no figure


def spread(values: Sequence[float | None]) -> Spread | None:
    """The median, min and max of the runs that have the figure; None if none has it."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return Spread(statistics.median(known), min(known), max(known), list(values))


def median_summary(summaries: Sequence[LatencySummary]) -> LatencySummary:
    """Several runs' latencies as one row: the samples of all of them, the median of their
    percentiles (each run's p99 is a figure of that run; pooling would let one disturbed run
    set it), and the worst max."""
    p50 = spread([s.p50_ms for s in summaries])
    p99 = spread([s.p99_ms for s in summaries])
    worst = [s.max_ms for s in summaries if s.max_ms is not None]
    return LatencySummary(
        count=sum(s.count for s in summaries),
        p50_ms=p50.median if p50 else None,
        p99_ms=p99.median if p99 else None,
        max_ms=max(worst) if worst else None,
    )
