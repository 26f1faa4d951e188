"""The bench's results as a compact table for the terminal and as JSON for bench/results/."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

from bench.load import LoadResult
from bench.stats import LatencySummary
from bench.suite import BenchResults

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
DISTURBED = 20  # % of one core used by processes outside the bench: the figure is suspect


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _cpu(load: LoadResult) -> str:
    return ", ".join(f"{name} {pct:.0f}%" for name, pct in load.cpu_percent.items())


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
        f"{'RPC':<15}{'server':<15}{'RPC/s':>9}{'vs null':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"  {'errors':<8}CPU during the window (100% = one core)",
    ]
    for row in r.rpcs:
        ld = row.load
        ratio = "-" if row.vs_null is None else f"{row.vs_null:.2f}x"
        lines.append(
            f"{row.rpc:<15}{row.server:<15}{ld.rps:>9,.0f}{ratio:>9}"
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
    s = lk.seed
    lines += [
        "",
        f"Lookup by email with {s.count:,} contacts in SQLite"
        f" (seeded in {s.seconds:.1f} s, file {s.file_bytes / 1e9:.2f} GB)",
    ]
    if s.count < s.requested:
        lines.append(
            f"  NOTE: seeding {s.requested:,} did not fit in {s.time_limit_seconds:g} s;"
            f" measured with {s.count:,}"
        )
    lines.append(f"  {'what':<47}{'calls':>8}{'RPC/s':>9}{'p50 ms':>9}{'p99 ms':>9}")

    def lookup_row(what: str, lat: LatencySummary, rps: str = "-") -> str:
        return f"  {what:<47}{lat.count:>8,}{rps:>9}{_ms(lat.p50_ms):>9}{_ms(lat.p99_ms):>9}"

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
        f"Whole run: {r.elapsed_seconds:.0f} s; JSON in {RESULTS.relative_to(RESULTS.parents[2])}",
    ]
    return "\n".join(lines)


def write_json(r: BenchResults, path: Path = RESULTS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(r), indent=2) + "\n")
    return path
