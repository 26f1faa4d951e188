"""The follow-up service's domain metrics: the promise gauges from the stores' counts (SQLite
and MongoDB), refreshed by the runtime's worker, and the counters and lag recorded as promises
are kept and reminders delivered, through the running service. No label carries an id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from devtools.natsserver import NatsServer
from followup.domain.model import Priority, Status
from followup.metrics import PromiseGauges
from followup.ports import Change, OpenCount, PromiseStore
from promesa.clock import ManualClock
from tests.followup import test_store_contract as contract
from tests.followup.conftest import RunningFollowup, followup_env, make, start_followup
from tests.support import SUPERVISOR_TOKEN, bearer, eventually

T0, HOUR = contract.T0, contract.HOUR
WAITING = Status.WAITING_ON_CUSTOMER


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(params=["sqlite", "mongodb"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PromiseStore]:
    """A store of each adapter, made as the store contract makes them."""
    adapter: contract.PromiseStoreContract
    if request.param == "sqlite":
        adapter = contract.TestSqlitePromiseStore()
    elif contract.MONGODB_URI:
        adapter = contract.TestMongoPromiseStore()
    else:
        pytest.skip("CRM_TEST_MONGODB_URI is not set")
    made = await adapter.create_store(tmp_path, contract.RecordingEncoder())
    yield made
    await adapter.dispose_store(made)


async def test_open_promises_are_counted_by_team_and_priority_with_the_overdue_ones(
    store: PromiseStore,
) -> None:
    a = contract.a_promise
    await store.commit(
        Change(
            saves=[
                (p, 0)
                for p in (
                    a("due-soon", HOUR),  # normal: not stored in SQLite's doc at all
                    a("late", HOUR, priority=Priority.URGENT),
                    a("later", 5 * HOUR, priority=Priority.URGENT),
                    a("paused-late", HOUR, status=WAITING, paused_at=T0 + 2 * HOUR),
                    a("paused-in-time", HOUR, status=WAITING, paused_at=T0),
                    a("lisbon", HOUR, team="lisbon", owner_id="bea"),
                    a("kept", HOUR, status=Status.KEPT),
                    a("cancelled", HOUR, status=Status.CANCELLED),
                )
            ]
        )
    )

    counts = await store.count_open(T0 + 2 * HOUR)
    early = await store.count_open(T0)

    def by_group(found: Sequence[OpenCount]) -> list[OpenCount]:
        return sorted(found, key=lambda c: (c.team, c.priority))

    # Kept and cancelled ones are not counted; a waiting one is overdue only if it was paused
    # after its due time, whenever it is counted.
    assert by_group(counts) == [
        OpenCount("lisbon", Priority.NORMAL, 1, 1),
        OpenCount("madrid", Priority.NORMAL, 3, 2),  # due-soon and paused-late overdue
        OpenCount("madrid", Priority.URGENT, 2, 1),
    ]
    assert by_group(early) == [
        OpenCount("lisbon", Priority.NORMAL, 1, 0),
        OpenCount("madrid", Priority.NORMAL, 3, 1),
        OpenCount("madrid", Priority.URGENT, 2, 0),
    ]


async def test_the_gauges_show_the_counts_and_a_group_left_empty_reads_0(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    store = contract.TestSqlitePromiseStore()
    made = await store.create_store(tmp_path, contract.RecordingEncoder())
    try:
        p = contract.a_promise("p1", HOUR, team="oslo", priority=Priority.LOW)
        await made.commit(Change(saves=[(p, 0)]))
        gauges = PromiseGauges(made, clock)
        clock.advance(2 * HOUR)
        await gauges()
        labels = {"team": "oslo", "priority": "low"}
        assert value("promesa_followup_promises_open", **labels) == 1
        assert value("promesa_followup_promises_overdue", **labels) == 1

        kept = contract.changed(p, status=Status.KEPT)
        await made.commit(Change(saves=[(kept, p.version)]))
        await gauges()
        assert REGISTRY.get_sample_value("promesa_followup_promises_open", labels) == 0
        assert REGISTRY.get_sample_value("promesa_followup_promises_overdue", labels) == 0
    finally:
        await store.dispose_store(made)


async def test_the_runtime_refreshes_the_promise_gauges_with_its_own(
    followup_service: RunningFollowup,
) -> None:
    svc = followup_service
    await make(svc, team="bergen", priority=promise_pb2.PRIORITY_URGENT, token=SUPERVISOR_TOKEN)
    await svc.runtime.refresh_metrics()
    assert value("promesa_followup_promises_open", team="bergen", priority="urgent") == 1
    assert value("promesa_followup_promises_overdue", team="bergen", priority="urgent") == 0


async def test_the_refresher_runs_on_its_own_every_period(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    env = followup_env(nats_server, tmp_path, CRM_METRICS_REFRESH_SECONDS="1")
    svc = await start_followup(nats_server, env, ManualClock())
    try:
        await make(svc, team="tromso", token=SUPERVISOR_TOKEN)

        async def shown() -> bool:
            return value("promesa_followup_promises_open", team="tromso", priority="high") == 1

        await eventually(shown, timeout=5)
    finally:
        await svc.stop()


async def test_keeping_counts_on_time_and_late_by_team_and_priority(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    labels = {"team": "trondheim", "priority": "high"}
    before = {
        on_time: value("promesa_followup_promises_kept_total", **labels, on_time=on_time)
        for on_time in ("true", "false")
    }
    boss = SUPERVISOR_TOKEN
    in_time = await make(svc, team="trondheim", due_in=timedelta(hours=2), token=boss)
    late = await make(svc, team="trondheim", due_in=timedelta(hours=1), token=boss)
    clock.advance(timedelta(minutes=90))
    for p in (in_time, late):
        await svc.stub.KeepPromise(
            followup_pb.KeepPromiseRequest(
                id=p.id, evidence=promise_pb2.Evidence(note="refund paid")
            ),
            metadata=bearer(SUPERVISOR_TOKEN),
        )

    for on_time in ("true", "false"):
        now = value("promesa_followup_promises_kept_total", **labels, on_time=on_time)
        assert now - before[on_time] == 1, on_time


async def test_a_reminders_lag_and_its_failed_attempts_are_recorded_once(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    lag_count = ("promesa_followup_reminder_lag_seconds_count", {"kind": "at_due"})
    lag_sum = ("promesa_followup_reminder_lag_seconds_sum", {"kind": "at_due"})
    failed = ("promesa_followup_deliveries_failed_total", {"notifier": "recorder"})
    before = [value(name, **labels) for name, labels in (lag_count, lag_sum, failed)]
    await make(svc, due_in=timedelta(minutes=30))
    svc.recorder.failing = True
    # Due at 30 min, claimed 2 min late: NATS delivers it then, the recorder fails,
    clock.advance(timedelta(minutes=32))
    assert await svc.scheduler.tick() == 1
    # and its retry succeeds, later: not a second "first delivery".
    svc.recorder.failing = False
    clock.advance(timedelta(minutes=5))
    assert await svc.scheduler.drain() >= 1

    after = [value(name, **labels) for name, labels in (lag_count, lag_sum, failed)]
    assert [x - y for x, y in zip(after, before, strict=True)] == [1, 120, 1]


async def test_no_domain_metric_is_labelled_with_an_id(
    followup_service: RunningFollowup,
) -> None:
    svc, clock = followup_service, followup_service.clock
    p = await make(svc, due_in=timedelta(minutes=30), contact_id="contact-label-check")
    svc.recorder.failing = True
    clock.advance(timedelta(minutes=31))
    await svc.scheduler.drain()
    await svc.runtime.refresh_metrics()
    ids = {p.id, p.contact_id, p.owner_id}
    for family in REGISTRY.collect():
        if family.name.startswith("promesa_followup_"):
            for sample in family.samples:
                assert not ids & set(sample.labels.values()), sample
