"""Latency samples and their percentiles (nearest rank): seconds in, milliseconds out."""

from __future__ import annotations

import math
from array import array
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
