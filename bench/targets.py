"""Issue 13's targets, judged on the median over the bench's runs of each run's figure: ratios
against the null servicer of the same run, latencies, bytes on disk per row, memory per
service. A figure measured once (a seeded file's bytes) is its own median."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bench.footprint import Footprint
from bench.stats import LatencySummary, Spread, spread
from bench.suite import BenchResults, rpc_figures

KB = 1000  # bytes: the "5.1 KB per promise" is a 5.1 GB file over 1M promises
MB = 1000 * KB
# RPC/s over the null servicer's, 64 in flight, by RPC.
RATIO_TARGETS = {"CreateContact": 0.40, "RecordInteraction": 0.40, "GetContact": 0.60}


@dataclass(frozen=True)
class Target:
    figure: str
    measured: str  # the median over the runs
    target: str
    met: bool | None  # None: not measured in this run
    note: str = ""  # why a figure is not comparable (a short run's smaller sizes)
    value: float | None = None  # the measured figure as a number (x, ms, bytes), for the JSON
    runs: Spread | None = None  # a repeated figure's median, range and value in each run
    range: str = ""  # min-max over the runs as shown, when there were several


def range_of(s: Spread, fmt: str) -> str:
    """`0.38-0.45x`: the spread of a figure measured more than once, else nothing."""
    known = [v for v in s.values if v is not None]
    if len(known) < 2:
        return ""
    return fmt.format(s.low) + "-" + fmt.format(s.high)


def _ratio(r: BenchResults, rpc: str, server: str, at_least: float) -> Target:
    figure = f"{rpc}, {r.profile.in_flight} in flight, vs null"
    for f in rpc_figures(r.rpcs):
        if f.rpc == rpc and f.server == server and f.vs_null is not None:
            errors = sum(f.load.errors.values())  # over all the runs
            note = f"{errors:,} calls failed" if errors else ""
            ratio = f.vs_null
            met = ratio.median >= at_least and not errors
            return Target(
                figure,
                f"{ratio.median:.2f}x",
                f">= {at_least:.2f}x",
                met,
                note,
                ratio.median,
                ratio,
                range_of(ratio, "{:.2f}x"),
            )
    return Target(figure, "-", f">= {at_least:.2f}x", None, "not measured")


def _p99(
    figure: str,
    runs: Sequence[LatencySummary],
    below_ms: float,
    *,
    missing: int = 0,
    note: str = "",
) -> Target:
    """The median of the runs' p99s under `below_ms`; anything that never arrived, in any run,
    fails it whatever the p99."""
    notes = [note] if note else []
    if missing:
        notes.append(f"{missing:,} never seen")
    target = f"p99 < {below_ms:g} ms"
    p99 = spread([lat.p99_ms for lat in runs])
    if p99 is None:
        # Nothing arrived: a failure if something was expected, else not measured.
        return Target(figure, "-", target, False if missing else None, "; ".join(notes))
    met = p99.median < below_ms and not missing
    measured = f"p99 {p99.median:,.1f} ms"
    shown = range_of(p99, "{:,.1f}")
    return Target(
        figure, measured, target, met, "; ".join(notes), p99.median, p99, shown and shown + " ms"
    )


def _bytes(f: Footprint, at_most: float, requested: int) -> Target:
    note = f"{f.rows:,} rows, not {requested:,}" if f.rows < requested else ""
    met = f.bytes_per_row <= at_most if f.rows else None
    return Target(
        f"bytes on disk per {f.what}",
        f"{f.bytes_per_row / KB:,.2f} KB",
        f"<= {at_most / KB:g} KB",
        met,
        note,
        f.bytes_per_row,
    )


def _rss(r: BenchResults) -> Iterable[Target]:
    """The most each service held after any of its runs."""
    seen: dict[str, list[int]] = {}
    for rpc_run in r.rpcs:
        for name, rss in rpc_run.rss_bytes.items():
            seen.setdefault(name, []).append(rss)
    if r.lookup is not None:
        seen.setdefault("contacts", []).append(r.lookup.contacts_rss_bytes)
    if r.timeline is not None:
        seen.setdefault("interactions", []).append(r.timeline.interactions_rss_bytes)
    for run in r.followup.runs if r.followup is not None else []:
        seen.setdefault("interactions", []).append(run.interactions_rss_bytes)
        seen.setdefault("followup", []).append(run.followup_rss_bytes)
    for p in r.propagation:
        for name, rss in p.rss_bytes.items():
            seen.setdefault(name, []).append(rss)
    for name in ("contacts", "interactions", "followup"):
        if name in seen:
            most = max(seen[name])
            yield Target(
                f"RSS of {name} after the runs (most)",
                f"{most / MB:,.0f} MB",
                "< 150 MB",
                most < 150 * MB,
                value=most,
            )


def _followup(r: BenchResults) -> list[Target]:
    f = r.followup
    if f is None:
        return []
    open_note = f"{f.seed.count:,} open promises, not 1M" if f.seed.count < 1_000_000 else ""
    flows = [run.pipeline for run in f.runs]
    lags = [run.lag for run in f.runs]
    sizes = r.profile.followup
    return [
        _p99(
            f"interaction -> promise visible, {sizes.pipeline_rate:g}/s",
            [flow.latency for flow in flows],
            100,
            missing=sum(flow.promised - flow.arrived for flow in flows),
            note=open_note,
        ),
        _p99(
            f"reminder lag, {sizes.due:,} due over {sizes.due_window_seconds:g} s",
            [lag.lag for lag in lags],
            100,
            missing=sum(lag.due - lag.arrived for lag in lags),
            note=open_note,
        ),
        _bytes(f.footprint, 1.5 * KB, sizes.promises),
    ]


def _propagation(r: BenchResults) -> list[Target]:
    """Each consumer's row, over the runs (every run has the same rows in the same order)."""
    if not r.propagation:
        return []
    rows = []
    rate = r.propagation[0].rate
    for same in zip(*(p.effects for p in r.propagation), strict=True):
        e = same[0]
        rows.append(
            _p99(
                f"event -> effect, {e.consumer}: {e.event}",
                [effect.latency for effect in same],
                50,
                missing=sum(effect.missed for effect in same),
                note=f"{rate:g}/s",
            )
        )
    return rows


def evaluate(r: BenchResults) -> list[Target]:
    """The targets of the steps that ran, in the issue's order, then RSS."""
    rows = []
    if r.rpcs:
        rows += [
            _ratio(r, "CreateContact", "contacts", RATIO_TARGETS["CreateContact"]),
            _ratio(r, "RecordInteraction", "interactions", RATIO_TARGETS["RecordInteraction"]),
            _ratio(r, "GetContact", "contacts", RATIO_TARGETS["GetContact"]),
        ]
    rows += _followup(r)
    if r.lookup is not None:
        rows.append(_bytes(r.lookup.footprint, 1.0 * KB, r.profile.seed_count))
    if r.timeline is not None:
        rows.append(_bytes(r.timeline.footprint, 1.0 * KB, r.profile.timeline.interactions))
    rows += _propagation(r)
    rows += _rss(r)
    return rows
