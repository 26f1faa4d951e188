"""The run's figures as chaos-report.json and as a table a person reads."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chaos.cluster import ACK_WAIT_SECONDS, REMINDER_LEASE_SECONDS, SCHEDULER_INTERVAL_SECONDS

TITLES = {
    "R1": "baseline load",
    "R2": "SIGKILL follow-up consumer x3",
    "R3": "SIGKILL interactions, outbox full, x3",
    "R4": "SIGKILL nats-server x2",
    "R5": "SIGSTOP follow-up past ack wait",
    "R6": "poison messages",
    "R7": "republish after duplicate window",
    "R8": "fuzzed requests",
    "R9": "deadlines + retries, same request_id",
    "R10": "reminders: 2 replicas, slow/down webhook",
    "setup": "cluster start",
}


@dataclass
class Outcome:
    scenario: str
    store: str
    figures: dict[str, Any]
    violations: list[str]
    seconds: float
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.violations

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAIL: " + "; ".join(self.violations)
        return f"{self.scenario:<4} {self.store:<8} {self.seconds:>7.1f}s  {verdict}"


@dataclass
class Report:
    workdir: str
    scenarios: list[str]
    stores: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    startup_seconds: dict[str, float] = field(default_factory=dict)
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    finished_at: str = ""
    seconds: float = 0.0
    _t0: float = field(default_factory=time.monotonic)

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    def finish(self) -> None:
        self.finished_at = datetime.now(UTC).isoformat()
        self.seconds = round(time.monotonic() - self._t0, 1)

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "seconds": self.seconds,
            "logs": self.workdir,
            "stores": self.stores,
            "scenarios": self.scenarios,
            "startup_seconds": self.startup_seconds,
            "settings": {
                "consumer_ack_wait_seconds": ACK_WAIT_SECONDS,
                "reminder_lease_seconds": REMINDER_LEASE_SECONDS,
                "scheduler_interval_seconds": SCHEDULER_INTERVAL_SECONDS,
                "followup_replicas": 2,
                "nats": "sync_interval: always",
            },
            "results": [
                {**asdict(o), "title": TITLES.get(o.scenario, ""), "passed": o.passed}
                for o in self.outcomes
            ],
        }


def write_report(report: Report, path: Path) -> None:
    path.write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")


# A cell shows the first of its figures a result has; `*` marks the second (counted, not a
# violation: core-NATS copies where a publisher was killed).
COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("acked", ("commands_acknowledged",)),
    ("effects", ("effects_found",)),
    ("lost", ("events_lost",)),
    ("dup eff", ("duplicate_effects",)),
    ("dup js", ("duplicate_jetstream",)),
    ("dup nats", ("duplicate_core_nats", "core_nats_copies_after_kill")),
    ("dup strm", ("stream_reminders_duplicates",)),
    ("dup hook", ("duplicate_webhook",)),
    ("redeliv", ("redeliveries",)),
    ("recov s", ("recovery_seconds",)),
    ("lag p99", ("reminder_lag_p99_seconds",)),
)


def summary(report: Report) -> str:
    head = f"{'scenario':<43} {'store':<8}" + "".join(f"{t:>9}" for t, _ in COLUMNS)
    lines = [head + "  verdict", "-" * (len(head) + 9)]
    for o in report.outcomes:
        title = f"{o.scenario} {TITLES.get(o.scenario, '')}"[:43]
        cells = "".join(f"{_cell(o.figures, keys):>9}" for _, keys in COLUMNS)
        lines.append(f"{title:<43} {o.store:<8}{cells}  {'ok' if o.passed else 'FAIL'}")
        for violation in o.violations:
            lines.append(f"    ! {violation}")
    lines.append("* core-NATS copies after a publisher was killed: at least once, not a violation")
    lines.append(
        f"{'PASSED' if report.passed else 'FAILED'} in {report.seconds:.0f}s"
        f" ({len(report.outcomes)} runs)"
    )
    return "\n".join(lines)


def _cell(figures: dict[str, Any], keys: tuple[str, ...]) -> str:
    for i, key in enumerate(keys):
        if key in figures:
            return _text(figures[key]) + ("*" if i else "")
    return "-"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)
