"""Helpers for tests that run services for real: tokens, gRPC channels, polling with a deadline."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.aio.msg import Msg

from promesa.auth import Identity, Role

T = TypeVar("T")

AGENT_TOKEN = "agent-token"
SUPERVISOR_TOKEN = "supervisor-token"
SERVICE_TOKEN = "service-token"
TOKENS = (
    f"{AGENT_TOKEN}=agent-ana:agent:madrid,"
    f"{SUPERVISOR_TOKEN}=sup-sam:supervisor,"
    f"{SERVICE_TOKEN}=svc-followup:service"
)


# The callers of authorization tests, one per kind of reach: their rows read as "ana may…".
ANA = Identity("agent-ana", Role.AGENT, "madrid")
PIA = Identity("agent-pia", Role.AGENT, "paris")
NED = Identity("agent-ned", Role.AGENT)  # an agent in no team
PAT = Identity("sup-pat", Role.SUPERVISOR, "paris")
SAM = Identity("sup-sam", Role.SUPERVISOR)  # no team: supervises every team
SVC = Identity("svc-followup", Role.SERVICE)
CALLERS = {"ana": ANA, "pia": PIA, "ned": NED, "pat": PAT, "sam": SAM, "svc": SVC}


@cache
def mongodb_is_secantus(uri: str) -> bool:
    """True when the MongoDB-protocol server of the tests is SecantusDB (it says so in
    buildInfo): its query planner is simpler than mongod's, so plan assertions do not apply."""
    import pymongo

    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=5000
    )
    with client:
        return "secantusVersion" in client.admin.command("buildInfo")


def mongod_planner_only(uri: str) -> pytest.MarkDecorator:
    """For tests of mongod's query plans: skipped, with the reason, under SecantusDB."""
    return pytest.mark.skipif(
        bool(uri) and mongodb_is_secantus(uri),
        reason="checks mongod's query planner; SecantusDB's simpler planner picks other plans",
    )


def bearer(token: str = AGENT_TOKEN) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Polls until the probe returns something truthy; fails with the deadline, never sleeps
    longer than needed."""
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations carried by an INVALID_ARGUMENT status."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no rich status details"
    found: dict[str, str] = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            found.update({v.field: v.description for v in bad.field_violations})
    return found


async def stream_messages(js: object, stream: str, subject: str = ">") -> list[Msg]:
    """Every message currently in a stream (an ephemeral consumer that reads from the start)."""
    from nats.errors import TimeoutError as NatsTimeout
    from nats.js import JetStreamContext
    from nats.js.api import ConsumerConfig, DeliverPolicy

    assert isinstance(js, JetStreamContext)
    info = await js.stream_info(stream)
    total = info.state.messages
    if total == 0:
        return []
    sub = await js.pull_subscribe(
        subject, stream=stream, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    found: list[Msg] = []
    try:
        while len(found) < total:
            try:
                batch = await sub.fetch(min(total - len(found), 1000), timeout=2)
            except (NatsTimeout, TimeoutError):
                break
            for msg in batch:
                await msg.ack()
            found.extend(batch)
    finally:
        await sub.unsubscribe()
    return found


async def events_about(js: object, stream: str, ce_subject: str) -> list[Msg]:
    msgs = await stream_messages(js, stream)
    return [m for m in msgs if (m.headers or {}).get("ce-subject") == ce_subject]


async def health_status(channel: grpc.aio.Channel, service: str = "", timeout: float = 1.0) -> int:
    """grpc.health.v1 Check, as Kubernetes probes call it (its type stubs are incomplete)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub: Any = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return int(reply.status)


def plan_stages(plan: object) -> list[tuple[str, str]]:
    """Every (stage, index name) of a MongoDB explain plan, however deeply nested."""
    found: list[tuple[str, str]] = []
    if isinstance(plan, dict):
        if "stage" in plan:
            found.append((str(plan["stage"]), str(plan.get("indexName", ""))))
        for value in plan.values():
            found.extend(plan_stages(value))
    elif isinstance(plan, list):
        for value in plan:
            found.extend(plan_stages(value))
    return found


def assert_migrated(path: Path, version: int) -> None:
    """A SQLite file rewritten to layout `version`, with no table of the old layout left."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == version
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema")]
    finally:
        conn.close()
    assert not [t for t in tables if t.endswith("_layout0")]
