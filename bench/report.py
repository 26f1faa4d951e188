"""The bench's results as a compact table for the terminal and as JSON for bench/results/."""

from __future__ import annotations

import dataclasses
import json
import statistics
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from bench.footprint import Footprint
from bench.load import LoadResult
from bench.promises import FollowupResults, TickTimes
from bench.propagation import PropagationResults
from bench.seed import SeedResult
from bench.stats import LatencySummary, median_summary, spread
from bench.suite import REPEATED, STEPS, BenchResults, LookupResults, rpc_figures
from bench.targets import KB, RATIO_TARGETS, Target, evaluate, range_of
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


def _over(runs: int) -> str:
    return "" if runs == 1 else f" (median of {runs} runs)"


def render(r: BenchResults) -> str:
    p = r.profile
    m = r.machine
    repeated = [s for s in r.steps if s in REPEATED]
    lines = [
        f"Promesa bench ({p.name}) {r.started_at}: {m['cpus']} CPUs, Python {m['python']},"
        f" grpcio {m['grpcio']}, uvloop; {p.in_flight} calls in flight on one channel,"
        f" {p.measure_seconds:g} s measured after {p.warmup_seconds:g} s warm-up",
        _steps_line(r.steps, repeated, r.runs),
    ]
    if r.rpcs:
        lines += ["", *_rpcs(r)]
    if r.lookup is not None:
        lines += ["", *_lookup(r.lookup)]
    if r.timeline is not None:
        lines += ["", *_timeline(r.timeline)]
    if r.followup is not None:
        lines += ["", *_followup(r.followup)]
    if r.propagation:
        lines += ["", *_propagation(r.propagation)]
    footprints = [
        f.footprint if f is not None else None for f in (r.followup, r.lookup, r.timeline)
    ]
    if r.rpcs:
        footprints.insert(2, r.rpcs[-1].created_contacts)
    lines += [
        "",
        *_footprints([f for f in footprints if f is not None]),
        "",
        *_targets(evaluate(r), r.runs),
        "",
        *_elapsed(r),
    ]
    return "\n".join(lines)


def _steps_line(steps: list[str], repeated: list[str], runs: int) -> str:
    line = f"Steps: {', '.join(steps)}"
    if not repeated:
        return line + " (none of them repeated)"
    line += f"; {runs} run{'s' if runs > 1 else ''} of {', '.join(repeated)}"
    return line + (": medians over the runs, with min-max" if runs > 1 else "")


def _elapsed(r: BenchResults) -> list[str]:
    """How long each step took, and the whole run: the line a closing note quotes."""
    steps = []
    for name, seconds in r.step_seconds.items():
        each = r.run_seconds.get(name, [])
        runs = f" (runs {', '.join(f'{s:,.0f}' for s in each)} s)" if len(each) > 1 else ""
        steps.append(f"{name} {seconds:,.0f} s{runs}")
    steps_run = "all steps" if r.steps == list(STEPS) else "--only " + ",".join(r.steps)
    return [
        "Time by step: " + "; ".join(steps),
        f"Whole run ({r.profile.name}, --runs {r.runs}, {steps_run}): {r.elapsed_seconds:,.0f} s"
        f" = {r.elapsed_seconds / 60:.1f} min; JSON in {_shown(results_path(r))}",
    ]


def _shown(path: Path) -> str:
    return str(path.relative_to(RESULTS.parents[2]))


def _rpcs(r: BenchResults) -> list[str]:
    """The RPC table: each row the median of its runs, the ratio's range over them."""
    figures = rpc_figures(r.rpcs)
    lines = [
        f"RPCs, {r.profile.in_flight} in flight{_over(len(r.rpcs))}; vs null: RPC/s over the null"
        " servicer's of the same run",
        f"{'RPC':<19}{'server':<15}{'RPC/s':>9}{'vs null':>9}{'min-max':>12}{'p50 ms':>9}"
        f"{'p99 ms':>9}  {'errors':<8}CPU during the window (100% = one core)",
    ]
    for f in figures:
        ld = f.load
        ratio = "-" if f.vs_null is None else f"{f.vs_null.median:.2f}x"
        null = f.server == "null servicer"
        spread = "" if f.vs_null is None or null else range_of(f.vs_null, "{:.2f}")
        lines.append(
            f"{f.rpc:<19}{f.server:<15}{ld.rps:>9,.0f}{ratio:>9}{spread:>12}"
            f"{_ms(ld.latency.p50_ms):>9}{_ms(ld.latency.p99_ms):>9}"
            f"  {_errors(ld.errors):<8}{_cpu(ld)}"
        )
    lines.append("")
    for f in figures:
        if f.vs_null is not None and f.server != "null servicer":
            line = f"{f.rpc} {f.load.rps:,.0f} RPC/s = {f.vs_null.median:.2f}x null"
            if len(r.rpcs) > 1:
                runs = ", ".join("-" if v is None else f"{v:.2f}x" for v in f.vs_null.values)
                line += f" (runs: {runs})"
            if (floor := RATIO_TARGETS.get(f.rpc)) is not None:
                verdict = "ok" if f.vs_null.median >= floor else "FAIL"
                line += f"; target >= {floor:.2f}x: {verdict}"
            lines.append(line)
    for n, rpc_run in enumerate(r.rpcs, 1):
        for row in rpc_run.rows:
            if sum(row.load.errors.values()) and not row.load.calls:
                lines.append(
                    f"NOTE: run {n}: every {row.rpc} call to {row.server} failed: the figure is"
                    " void"
                )
    disturbed = [
        row
        for rpc_run in r.rpcs
        for row in rpc_run.rows
        if row.load.cpu_percent.get("others", 0) > DISTURBED
    ]
    if disturbed:
        windows = sum(len(rpc_run.rows) for rpc_run in r.rpcs)
        lines.append(
            f"NOTE: other processes used over {DISTURBED}% of a core during"
            f" {len(disturbed)} of these {windows} windows (see 'others'); those figures may be"
            " low."
        )
    most: dict[str, int] = {}
    for rpc_run in r.rpcs:
        for name, rss in rpc_run.rss_bytes.items():
            most[name] = max(most.get(name, 0), rss)
    lines.append(
        "RSS after the load (most over the runs): "
        + ", ".join(f"{n} {_mib(b)}" for n, b in most.items())
    )
    return lines


def _lookup(lk: LookupResults) -> list[str]:
    seed_line, *seed_notes = _seeded(lk.seed, "contacts")
    return [
        f"Lookup by email with {seed_line}",
        *seed_notes,
        f"  {'what':<47}{'calls':>8}{'RPC/s':>9}{'p50 ms':>9}{'p99 ms':>9}",
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
    ]


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
    several = len(f.runs) > 1
    lines = [
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
        "  Reminder lag, python -m followup on that file (its default settings), NATS"
        " subscriber on crm.followup.reminders.>"
        + (f"; {len(f.runs)} runs, services restarted each run:" if several else ":"),
    ]
    for n, run in enumerate(f.runs, 1):
        lag = run.lag
        tag = f"run {n}: " if several else ""
        lines += [
            f"    {tag}{lag.due:,} promises made with CreatePromise (failed:"
            f" {lag.create_errors}) among {run.open_promises:,} open, due evenly over"
            f" {lag.window_seconds:g} s from {lag.slack_seconds:.1f} s after the last",
            f"      reminders arrived {lag.arrived:,}; lag (received - due) {_lat(lag.lag)}",
            f"      CPU: {_noted(lag.cpu_percent)}",
        ]
    if several:
        lag_runs = median_summary([run.lag.lag for run in f.runs])
        lines.append(f"    median of the runs: lag {_lat(lag_runs)}")
    rate = f.runs[0].pipeline.rate if f.runs else 0.0
    lines.append(
        f"  Interaction -> promise: interactions + followup (that file) on one NATS,"
        f" RecordInteraction (1 promise) paced at {rate:g}/s:"
    )
    for n, run in enumerate(f.runs, 1):
        flow = run.pipeline
        rec = flow.record
        tag = f"run {n}: " if several else ""
        lines += [
            f"    {tag}{rec.calls:,} recorded in {rec.seconds:.1f} s ({rec.rps:,.0f}/s, errors"
            f" {_errors(rec.errors)}, at most {rec.in_flight} in flight), RecordInteraction"
            f" {_lat(rec.latency)}",
            f"      PromiseMade arrived for {flow.arrived:,} of {flow.promised:,}; from"
            f" RecordInteraction sent: {_lat(flow.latency)}",
            f"        of which sent -> InteractionRecorded on NATS {_lat(flow.recorded_on_nats)}",
            f"        and InteractionRecorded -> PromiseMade on NATS"
            f" {_lat(flow.recorded_to_promise)}",
            f"      GetPromise found {flow.confirmed} of {flow.sampled} sampled;"
            f" CPU: {_noted(rec.cpu_percent)}",
        ]
    if several:
        flow_runs = median_summary([run.pipeline.latency for run in f.runs])
        lines.append(f"    median of the runs: from RecordInteraction sent {_lat(flow_runs)}")
    followup_rss = max((run.followup_rss_bytes for run in f.runs), default=0)
    interactions_rss = max((run.interactions_rss_bytes for run in f.runs), default=0)
    lines.append(
        f"  RSS after the runs (most): followup {_mib(followup_rss)},"
        f" interactions {_mib(interactions_rss)}"
    )
    return lines


def _propagation(runs: list[PropagationResults]) -> list[str]:
    """The table of every consumer's row, each the median of its runs."""
    p = runs[0]
    several = len(runs) > 1
    customers = "+".join(f"{r.customers}" for r in runs)
    lines = [
        f"Event -> effect at a low rate: {customers} customers one at a time (at most"
        f" {p.rate:g}/s) on contacts + interactions + followup + one NATS; from the reply of the",
        f"  call that published the event to its effect in the consumer's store (polled every"
        f" {p.poll_ms:g} ms, deadline {p.deadline_seconds:g} s)" + _over(len(runs)),
        f"  {'consumer':<23}{'event':<40}{'effect':<28}{'n':>5}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'missed':>8}" + (f"{'p99 min-max':>16}" if several else ""),
    ]
    for same in zip(*(r.effects for r in runs), strict=True):
        e = same[0]
        lat = median_summary([effect.latency for effect in same])
        p99 = spread([effect.latency.p99_ms for effect in same])
        shown = range_of(p99, "{:.1f}") if p99 is not None else ""
        lines.append(
            f"  {e.consumer:<23}{e.event:<40}{e.effect:<28}{lat.count:>5}{_ms(lat.p50_ms):>9}"
            f"{_ms(lat.p99_ms):>9}{_ms(lat.max_ms):>9}{sum(x.missed for x in same):>8}"
            + (f"{shown:>16}" if several else "")
        )
    errors: Counter[str] = Counter()
    cpu: dict[str, list[float]] = {}
    for r in runs:
        errors.update(r.call_errors)
        for name, pct in r.cpu_percent.items():
            cpu.setdefault(name, []).append(pct)
    lines.append(
        "  RecordInteraction refused after interactions knew the contact:"
        f" {sum(r.refused_after_known for r in runs)}; failed calls: {_errors(errors)};"
        f" CPU{' (median)' if several else ''}:"
        f" {_noted({name: statistics.median(pcts) for name, pcts in cpu.items()})}"
    )
    return lines


def _footprints(footprints: list[Footprint]) -> list[str]:
    """Each file's bytes per row, then its tables and indexes by size (from dbstat)."""
    lines = [
        "Bytes on disk per row (WAL checkpointed; per table and index from dbstat;"
        f" 1 KB = {KB} bytes)"
    ]
    for f in footprints:
        lines.append(
            f"  per {f.what}: {f.bytes_per_row:,.0f} B ({f.rows:,} rows {f.note};"
            f" file {f.file_bytes / 1e6:,.1f} MB, free pages {f.free_bytes / 1e6:,.1f} MB)"
        )
        small = [o for o in f.objects if o.bytes * 200 < f.file_bytes]  # under 0.5% each
        for o in f.objects:
            if o in small:
                continue
            of = f" of {o.table}" if o.kind == "index" else ""
            share = 100 * o.bytes / f.file_bytes if f.file_bytes else 0.0
            per_row = o.bytes / f.rows if f.rows else 0.0
            lines.append(
                f"    {o.kind or 'sqlite':<6} {o.name + of:<58}{per_row:>9,.0f} B/row{share:>6.1f}%"
            )
        if small and f.rows:
            rest = sum(o.bytes for o in small)
            lines.append(
                f"    {len(small)} more under 0.5% each{rest / f.rows:>50,.0f} B/row"
                f"{100 * rest / f.file_bytes:>6.1f}%"
            )
    return lines


def _targets(targets: list[Target], runs: int) -> list[str]:
    """Issue 13's targets table: the figure, its median over the runs and their range, the
    target, met or not (by the median)."""
    if not targets:
        return ["Targets (issue 13): none measured by these steps"]
    width = max(len(t.figure) for t in targets) + 2
    lines = [
        "Targets (issue 13)" + _over(runs),
        f"  {'figure':<{width}}{'measured':>15}  {'min-max':>18}  {'target':<14}{'':<6}note",
    ]
    for t in targets:
        verdict = "-" if t.met is None else "ok" if t.met else "FAIL"
        lines.append(
            f"  {t.figure:<{width}}{t.measured:>15}  {t.range:>18}  {t.target:<14}{verdict:<6}"
            f"{t.note}".rstrip()
        )
    met = sum(1 for t in targets if t.met)
    judged = sum(1 for t in targets if t.met is not None)
    lines.append(f"  {met} of {judged} targets met")
    return lines


def results_path(r: BenchResults) -> Path:
    """latest.json for a run of every step; a run of some steps (`--only`) writes beside it,
    so re-measuring one figure does not overwrite the whole run's."""
    if r.steps == list(STEPS):
        return RESULTS
    return RESULTS.with_name(f"latest-only-{'-'.join(r.steps)}.json")


def write_json(r: BenchResults, path: Path | None = None) -> Path:
    """Every run's figures as measured, the RPC rows' medians, and the targets (each with its
    median, range and value per run)."""
    path = path or results_path(r)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {
        **dataclasses.asdict(r),
        "rpc_medians": [dataclasses.asdict(f) for f in rpc_figures(r.rpcs)],
        "targets": [dataclasses.asdict(t) for t in evaluate(r)],
    }
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
