"""Promise keeping per priority (issue 14): the `promesa stats --by priority` rows, over real
gRPC on each store, and the grouping rule itself."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crm.followup.v1 import followup_service_pb2 as followup_pb
from crm.followup.v1 import promise_pb2
from devtools.natsserver import NatsServer
from followup.domain.model import Priority
from followup.domain.stats import Grouping, compute
from promesa.clock import ManualClock
from tests.followup.conftest import RunningFollowup, followup_env, make, start_followup
from tests.support import SUPERVISOR_TOKEN, bearer

MONGODB_URI = "CRM_TEST_MONGODB_URI"


@pytest.fixture(params=["sqlite", "mongodb"])
async def followup_on_store(
    request: pytest.FixtureRequest, nats_server: NatsServer, tmp_path: Path
) -> AsyncIterator[RunningFollowup]:
    extra: dict[str, str] = {}
    if request.param == "mongodb":
        extra = {
            "CRM_STORE": "mongodb",
            "CRM_MONGODB_URI": os.environ[MONGODB_URI],
            "CRM_MONGODB_DATABASE": f"stats_by_priority_{tmp_path.name[-20:]}",
        }
    env = followup_env(nats_server, tmp_path, **extra)
    svc = await start_followup(nats_server, env, ManualClock())
    yield svc
    await svc.stop()


async def test_stats_by_priority_count_each_priority_with_unset_as_normal(
    followup_on_store: RunningFollowup,
) -> None:
    svc = followup_on_store
    # Given two urgent promises (one kept), a low one, and one made without a priority
    urgent = await make(svc, priority=promise_pb2.PRIORITY_URGENT)
    await make(svc, priority=promise_pb2.PRIORITY_URGENT)
    await make(svc, priority=promise_pb2.PRIORITY_LOW)
    await make(svc, priority=promise_pb2.PRIORITY_UNSPECIFIED)
    await svc.stub.KeepPromise(
        followup_pb.KeepPromiseRequest(
            id=urgent.id, etag=urgent.etag, evidence=promise_pb2.Evidence(note="called back")
        ),
        metadata=bearer(),
    )

    # When the stats are asked for by priority
    reply = await svc.stub.GetPromiseStats(
        followup_pb.GetPromiseStatsRequest(grouping=followup_pb.STATS_GROUPING_PRIORITY),
        metadata=bearer(SUPERVISOR_TOKEN),
    )

    # Then one row per priority made, keyed by its value name, in key order (as every grouping)
    rows = {r.key: r for r in reply.stats}
    assert [r.key for r in reply.stats] == ["PRIORITY_LOW", "PRIORITY_NORMAL", "PRIORITY_URGENT"]
    assert (rows["PRIORITY_URGENT"].made, rows["PRIORITY_URGENT"].kept) == (2, 1)
    assert rows["PRIORITY_URGENT"].kept_on_time_percent == 100.0
    assert (rows["PRIORITY_LOW"].made, rows["PRIORITY_NORMAL"].made) == (1, 1)  # no HIGH row


def test_priority_grouping_keys_are_the_proto_value_names() -> None:
    # Every domain priority names a value of the contract, so a client can parse every key.
    keys = {f"PRIORITY_{p.value}" for p in Priority}
    assert keys <= set(promise_pb2.Priority.keys())


def test_an_empty_window_has_no_priority_rows() -> None:
    assert compute([], Grouping.PRIORITY, datetime(2026, 1, 1, tzinfo=UTC)) == []
