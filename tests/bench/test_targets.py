"""How the bench judges a latency target: an effect that never showed fails it."""

from __future__ import annotations

from bench.stats import LatencySummary
from bench.targets import _p99

NOTHING = LatencySummary(count=0, p50_ms=None, p99_ms=None, max_ms=None)


def test_an_effect_never_seen_fails_its_target_whatever_the_others_did() -> None:
    assert _p99("erasure", [NOTHING], 50, missing=1).met is False
    assert _p99("erasure", [LatencySummary(9, 1.0, 2.0, 2.0)], 50, missing=1).met is False


def test_a_p99_under_the_target_with_nothing_missing_meets_it() -> None:
    met = _p99("created", [LatencySummary(100, 5.0, 17.2, 17.2)], 50)
    assert met.met is True
    assert met.value == 17.2
    assert met.range == ""  # one run: no range to show


def test_a_figure_with_nothing_expected_is_not_judged() -> None:
    assert _p99("merge", [NOTHING], 50).met is None
