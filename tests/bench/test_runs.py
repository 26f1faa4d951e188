"""How the bench turns several runs into one figure: the median, its range, each run's value."""

from __future__ import annotations

from pathlib import Path

from bench import report
from bench.footprint import Footprint
from bench.load import LoadResult
from bench.profile import QUICK
from bench.stats import LatencySummary, median_summary, spread
from bench.suite import BenchResults, RpcRow, RpcRun, rpc_figures
from bench.targets import evaluate

NO_FILE = Footprint("contact", 0, 0, 0.0, [], 0, "test")


def _load(rps: float, p99_ms: float, errors: int = 0) -> LoadResult:
    return LoadResult(
        in_flight=64,
        seconds=2.0,
        calls=int(rps * 2),
        rps=rps,
        latency=LatencySummary(int(rps * 2), p99_ms / 2, p99_ms, p99_ms * 2),
        errors={"UNAVAILABLE": errors} if errors else {},
        cpu_percent={"contacts": 90.0, "others": 5.0},
    )


def _run(null_rps: float, create_rps: float, errors: int = 0) -> RpcRun:
    """One run: CreateContact on the null servicer and on contacts."""
    null = _load(null_rps, 10.0)
    create = _load(create_rps, 40.0, errors)
    rows = [
        RpcRow("CreateContact", "null servicer", null, 1.0),
        RpcRow("CreateContact", "contacts", create, create_rps / null_rps),
    ]
    return RpcRun(rows, {"contacts": 60_000_000}, NO_FILE, 30.0)


def _results(runs: list[RpcRun]) -> BenchResults:
    return BenchResults(
        profile=QUICK,
        started_at="2026-12-01T23:00:00+00:00",
        machine={"cpus": 2, "python": "3.11", "grpcio": "1.0", "platform": "test"},
        runs=len(runs),
        steps=["rpcs"],
        rpcs=runs,
        propagation=[],
        lookup=None,
        timeline=None,
        followup=None,
        step_seconds={"rpcs": 90.0},
        run_seconds={"rpcs": [30.0] * len(runs)},
        elapsed_seconds=91.0,
    )


def test_a_figure_over_runs_is_their_median_with_the_range_and_each_value() -> None:
    s = spread([0.42, None, 0.38, 0.45])
    assert s is not None
    assert (s.median, s.low, s.high) == (0.42, 0.38, 0.45)
    assert s.values == [0.42, None, 0.38, 0.45]
    assert spread([None, None]) is None


def test_latencies_over_runs_take_the_median_percentile_and_the_worst_max() -> None:
    runs = [LatencySummary(10, 1.0, 5.0, 9.0), LatencySummary(10, 2.0, 50.0, 80.0)]
    runs.append(LatencySummary(10, 3.0, 7.0, 7.0))
    assert median_summary(runs) == LatencySummary(30, 2.0, 7.0, 80.0)


def test_each_run_is_judged_against_its_own_null_servicer() -> None:
    # Given three runs whose null servicer ran at different speeds
    runs = [_run(8_000, 4_000), _run(4_000, 1_000), _run(6_000, 2_700)]

    # When they are summed up
    (null, created) = rpc_figures(runs)

    # Then the ratio is the median of the runs' ratios, not a ratio of medians
    assert created.vs_null is not None
    assert created.vs_null.values == [0.5, 0.25, 0.45]
    assert created.vs_null.median == 0.45
    assert created.load.rps == 2_700
    assert null.load.rps == 6_000


def test_a_target_is_met_by_the_median_and_shows_the_range() -> None:
    # Given one slow run among three
    r = _results([_run(8_000, 4_000), _run(4_000, 1_000), _run(6_000, 2_700)])

    # When the targets are judged
    (create, *_) = evaluate(r)

    # Then the median meets CreateContact's 0.40x, and the slow run shows in the range
    assert create.met is True
    assert create.measured == "0.45x"
    assert create.range == "0.25x-0.50x"
    assert create.runs is not None and create.runs.values == [0.5, 0.25, 0.45]


def test_a_call_that_failed_in_any_run_fails_the_target() -> None:
    r = _results([_run(8_000, 4_000), _run(8_000, 4_000, errors=3), _run(8_000, 4_000)])
    (create, *_) = evaluate(r)
    assert create.met is False
    assert create.note == "3 calls failed"


def test_the_report_of_some_steps_names_the_runs_and_the_whole_time(tmp_path: Path) -> None:
    r = _results([_run(8_000, 4_000), _run(4_000, 1_000)])

    text = report.render(r)

    assert "median of 2 runs" in text
    assert "(runs: 0.50x, 0.25x)" in text
    assert "Time by step: rpcs 90 s (runs 30, 30 s)" in text
    assert text.splitlines()[-1].startswith("Whole run (quick, --runs 2, --only rpcs): 91 s")
    # a run of some steps does not overwrite the whole run's JSON
    assert report.results_path(r).name == "latest-only-rpcs.json"
    assert report.write_json(r, tmp_path / "r.json").read_text().count('"vs_null"') == 6
