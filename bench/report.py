"""The bench's results as a compact table for the terminal and as JSON for bench/results/."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from bench.load import LoadResult
from bench.promises import FollowupResults, TickTimes
from bench.seed import SeedResult
from bench.stats import LatencySummary
from bench.suite import BenchResults
from bench.timeline import TimelineResults

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
DISTURBED = 20  # % of one core used by processes outside the bench: the figure is suspect


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _cpu(load: LoadResult) -> str:
    return _cpu_of(load.cpu_percent)


def _cpu_of(cpu: Mapping[str, float]) -> str:
    return ", ".join(f"{name} {pct:.0f}%" for name, pct in cpu.items())


def _noted(cpu: Mapping[str, float]) -> str:
    """The CPU use, with a warning when processes outside the bench used a lot of it."""
    others = cpu.get("others", 0)
    note = (
        f" (NOTE: others {others:.0f}%, over {DISTURBED}%: may be slow)"
        if others > DISTURBED
        else ""
    )
    return _cpu_of(cpu) + note


def _lat(lat: LatencySummary) -> str:
    return f"p50 {_ms(lat.p50_ms)} ms, p99 {_ms(lat.p99_ms)} ms, max {_ms(lat.max_ms)} ms"


def _seeded(s: SeedResult, what: str) -> list[str]:
    """The seed line's tail, and a note when the time limit cut it short."""
    lines = [f"{s.count:,} {what} in SQLite (seeded in {s.seconds:.1f} s"]
    if s.index_seconds:
        lines[0] += f", {s.index_seconds:.1f} s of it building indexes and flushing"
    lines[0] += f", file {s.file_bytes / 1e9:.2f} GB)"
    if s.count < s.requested:
        lines.append(
            f"  NOTE: seeding {s.requested:,} did not fit in {s.time_limit_seconds:g} s;"
            f" measured with {s.count:,}"
        )
    return lines


def _errors(errors: Mapping[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in errors.items()) or "0"


def render(r: BenchResults) -> str:
    p = r.profile
    m = r.machine
    lines = [
        f"Promesa bench ({p.name}) {r.started_at}: {m['cpus']} CPUs, Python {m['python']},"
        f" grpcio {m['grpcio']}, uvloop; {p.in_flight} calls in flight on one channel,"
        f" {p.measure_seconds:g} s measured after {p.warmup_seconds:g} s warm-up",
        "",
        f"{'RPC':<19}{'server':<15}{'RPC/s':>9}{'vs null':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"  {'errors':<8}CPU during the window (100% = one core)",
    ]
    for row in r.rpcs:
        ld = row.load
        ratio = "-" if row.vs_null is None else f"{row.vs_null:.2f}x"
        lines.append(
            f"{row.rpc:<19}{row.server:<15}{ld.rps:>9,.0f}{ratio:>9}"
            f"{_ms(ld.latency.p50_ms):>9}{_ms(ld.latency.p99_ms):>9}"
            f"  {_errors(ld.errors):<8}{_cpu(ld)}"
        )
    lines.append("")
    for row in r.rpcs:
        if row.vs_null is not None and row.server != "null servicer":
            lines.append(f"{row.rpc} {row.load.rps:,.0f} RPC/s = {row.vs_null:.2f}x null")
    disturbed = [row for row in r.rpcs if row.load.cpu_percent.get("others", 0) > DISTURBED]
    if disturbed:
        lines.append(
            f"NOTE: other processes used over {DISTURBED}% of a core during"
            f" {len(disturbed)} of these windows (see 'others'); those figures may be low."
        )
    lines.append(
        "RSS after the load: " + ", ".join(f"{n} {_mib(b)}" for n, b in r.rss_bytes.items())
    )

    lk = r.lookup
    seed_line, *seed_notes = _seeded(lk.seed, "contacts")
    lines += ["", f"Lookup by email with {seed_line}", *seed_notes]
    lines.append(f"  {'what':<47}{'calls':>8}{'RPC/s':>9}{'p50 ms':>9}{'p99 ms':>9}")
    lines += [
        lookup_row("store.holder_of_email (in process)", lk.store_holder_of_email),
        lookup_row("SearchContacts, null servicer, 1 in flight", lk.null_search_one_in_flight),
        lookup_row("SearchContacts(email), contacts, 1 in flight", lk.search_one_in_flight),
        lookup_row(
            f"SearchContacts(email), contacts, {lk.search_loaded.in_flight} in flight",
            lk.search_loaded.latency,
            f"{lk.search_loaded.rps:,.0f}",
        ),
        f"  errors: 1 in flight {_errors(lk.search_one_in_flight_errors)},"
        f" loaded {_errors(lk.search_loaded.errors)};"
        f" CPU loaded: {_cpu(lk.search_loaded)}; contacts RSS {_mib(lk.contacts_rss_bytes)}",
        "",
        *_timeline(r.timeline),
        "",
        *_followup(r.followup),
        "",
        f"Whole run: {r.elapsed_seconds:.0f} s; JSON in {RESULTS.relative_to(RESULTS.parents[2])}",
    ]
    return "\n".join(lines)


def lookup_row(what: str, lat: LatencySummary, rps: str = "-") -> str:
    return f"  {what:<47}{lat.count:>8,}{rps:>9}{_ms(lat.p50_ms):>9}{_ms(lat.p99_ms):>9}"


def _timeline(t: TimelineResults) -> list[str]:
    seed_line, *notes = _seeded(t.seed, "interactions")
    deep_from = t.grpc.pages // 2 + 1
    return [
        f"ListInteractions of one contact with {t.hot_contact:,} of {seed_line}",
        *notes,
        f"  page_size {t.page_size}, {t.grpc.pages} pages; deep = pages {deep_from}-{t.grpc.pages},"
        " reached by page tokens",
        f"  {'what':<47}{'calls':>8}{'RPC/s':>9}{'p50 ms':>9}{'p99 ms':>9}",
        lookup_row("store.timeline, first page (in process)", t.store.first),
        lookup_row("store.timeline, deep pages (in process)", t.store.deep),
        lookup_row("ListInteractions, null servicer, 1 in flight", t.null_first_page),
        lookup_row("ListInteractions, first page, 1 in flight", t.grpc.first),
        lookup_row("ListInteractions, deep pages, 1 in flight", t.grpc.deep),
        f"  interactions RSS after the walks {_mib(t.interactions_rss_bytes)}",
    ]


def _tick_row(t: TickTimes) -> str:
    busy, idle = t.busy, t.idle
    return (
        f"    {t.open_promises:>11,}{busy.count:>7}{_ms(busy.p50_ms):>10}{_ms(busy.max_ms):>10}"
        f"{idle.count:>7}{_ms(idle.p50_ms):>10}{_ms(idle.p99_ms):>10}"
    )


def _ratio(large: float | None, small: float | None) -> str:
    return f"{large / small:.2f}x" if large is not None and small else "-"


def _followup(f: FollowupResults) -> list[str]:
    seed_line, *notes = _seeded(f.seed, f"open promises ({f.reminders_per_promise} reminders each)")
    small, large = f.ticks_small, f.ticks_large
    lag, flow = f.lag, f.pipeline
    rec = flow.record
    return [
        f"Follow-up with {seed_line}",
        *notes,
        f"  ReminderScheduler.tick in process on the seeded store (synchronous=FULL, batch"
        f" {large.batch}); busy = delivers a full batch, idle = nothing due",
        f"    {'open':>11}{'busy':>7}{'p50 ms':>10}{'max ms':>10}"
        f"{'idle':>7}{'p50 ms':>10}{'p99 ms':>10}",
        _tick_row(small),
        _tick_row(large),
        f"    {large.open_promises:,} vs {small.open_promises:,}: busy tick"
        f" {_ratio(large.busy.p50_ms, small.busy.p50_ms)}, idle tick"
        f" {_ratio(large.idle.p50_ms, small.idle.p50_ms)}",
        f"  Reminder lag, python -m followup on that file (scheduler every"
        f" {lag.scheduler_interval_seconds:g} s, its default), NATS subscriber on"
        " crm.followup.reminders.>:",
        f"    {lag.due:,} promises written into its store by the bench, due evenly over"
        f" {lag.window_seconds:g} s from {lag.slack_seconds:.1f} s after their commit",
        f"    reminders arrived {lag.arrived:,}; lag (received - due) {_lat(lag.lag)}",
        f"    CPU: {_noted(lag.cpu_percent)}",
        f"  Interaction -> promise: interactions (fresh) + followup (that file) on one NATS,"
        f" RecordInteraction (1 promise) paced at {flow.rate:g}/s:",
        f"    {rec.calls:,} recorded in {rec.seconds:.1f} s ({rec.rps:,.0f}/s, errors"
        f" {_errors(rec.errors)}, at most {rec.in_flight} in flight), RecordInteraction"
        f" {_lat(rec.latency)}",
        f"    PromiseMade arrived for {flow.arrived:,} of {flow.promised:,}; from"
        f" RecordInteraction sent: {_lat(flow.latency)}",
        f"    GetPromise found {flow.confirmed} of {flow.sampled} sampled;"
        f" CPU: {_noted(rec.cpu_percent)}",
        f"  RSS after the runs: followup {_mib(f.followup_rss_bytes)},"
        f" interactions {_mib(f.interactions_rss_bytes)}",
    ]


def write_json(r: BenchResults, path: Path = RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(r), indent=2) + "\n")
    return path
