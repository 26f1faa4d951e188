"""Latency samples and their percentiles (nearest rank), in seconds in and milliseconds out."""

from __future__ import annotations

import math
from array import array


class Latencies:
    def __init__(self) -> None:
        self._samples = array("d")
        self._sorted = True

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._sorted = False

    def __len__(self) -> int:
        return len(self._samples)

    def percentile_ms(self, p: float) -> float:
        """The nearest-rank p-th percentile in milliseconds; NaN without samples."""
        if not self._samples:
            return math.nan
        if not self._sorted:
            self._samples = array("d", sorted(self._samples))
            self._sorted = True
        rank = max(1, math.ceil(p / 100 * len(self._samples)))
        return self._samples[rank - 1] * 1000
