"""The fast subset of `make chaos` (R1, R3, R6, R8 with less load) in `make test`: the real
system as processes on loopback (nats-server, contacts, interactions, two follow-up replicas on
SQLite), faults injected, figures checked. The whole of it is `python -m chaos`."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.report import Outcome, Report
from chaos.run import run_store
from chaos.scenarios import FAST

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
async def fast_report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """One cluster for the four scenarios: starting one costs more than each scenario."""
    root = Path(tmp_path_factory.mktemp("chaos"))
    report = Report(workdir=str(root), scenarios=list(FAST), stores=["sqlite"])
    await run_store("sqlite", FAST, root / "sqlite", report, fast=True)
    report.finish()
    return report


def outcome(report: Report, scenario: str) -> Outcome:
    [found] = [o for o in report.outcomes if o.scenario in (scenario, "setup")]
    assert not found.error, found.error
    return found


async def test_r1_every_acknowledged_command_takes_effect_exactly_once(
    fast_report: Report,
) -> None:
    r1 = outcome(fast_report, "R1")
    assert r1.violations == []
    assert r1.figures["commands_acknowledged"] > 0
    assert r1.figures["effects_found"] == r1.figures["effects_expected"]
    assert (r1.figures["duplicate_core_nats"], r1.figures["duplicate_jetstream"]) == (0, 0)
    assert r1.figures["jetstream_messages_stored"] > 0


async def test_r3_a_producer_killed_with_events_in_its_outbox_loses_none(
    fast_report: Report,
) -> None:
    r3 = outcome(fast_report, "R3")
    assert r3.violations == []
    assert all(r3.figures["outbox_rows_at_each_kill"])
    assert (r3.figures["events_lost"], r3.figures["duplicate_effects"]) == (0, 0)
    # A relay killed mid-publish sends its batch again: JetStream stores each event once.
    assert r3.figures["duplicate_jetstream"] == 0
    assert "core_nats_copies_after_kill" in r3.figures


async def test_r6_poison_messages_land_in_the_dead_letters_at_once(fast_report: Report) -> None:
    r6 = outcome(fast_report, "R6")
    assert r6.violations == []
    assert r6.figures["dead_letters_found"] == r6.figures["dead_letters_expected"] > 0


async def test_r8_generated_requests_get_no_unknown_internal_or_hang(fast_report: Report) -> None:
    r8 = outcome(fast_report, "R8")
    assert r8.violations == []
    assert r8.figures["calls"] >= r8.figures["rpcs"] * r8.figures["requests_per_rpc"]
