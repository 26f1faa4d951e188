"""The customer's answer in both stores: it reads back with every field, commits with its event,
and its comment leaves with the contact's other free text on erasure. Always on SQLite; on
MongoDB when CRM_TEST_MONGODB_URI is set (the session's server, see tests/conftest.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from crm.followup.v1 import events_pb2 as followup_events
from followup.adapters import event_codec
from followup.adapters.mongo_store import MongoPromiseStore
from followup.adapters.sqlite_store import SqlitePromiseStore
from followup.domain import feedback, lifecycle
from followup.domain.model import Evidence
from followup.ports import Change, PromiseStore
from promesa.clock import ManualClock
from tests.followup.test_store_contract import HOUR, T0, a_promise

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
STORES = [
    "sqlite",
    pytest.param(
        "mongodb",
        marks=pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set"),
    ),
]


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PromiseStore]:
    clock = ManualClock(T0)
    if request.param == "sqlite":
        sqlite = SqlitePromiseStore(tmp_path / "followup.db", event_codec.encode, clock)
        yield sqlite
        await sqlite.close()
        return
    database = f"promesa_voice_{uuid.uuid4().hex}"
    mongo = await MongoPromiseStore.open(MONGODB_URI, database, event_codec.encode, clock)
    try:
        yield mongo
    finally:
        await mongo.close()
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(MONGODB_URI)
        try:
            await client.drop_database(database)
        finally:
            await client.close()


async def test_the_customers_answer_reads_back_and_is_published_once(
    store: PromiseStore,
) -> None:
    made = a_promise("p1", source_interaction_id="i-1")
    await store.commit(Change(saves=[(made, 0)]))
    kept, events = lifecycle.keep(made, Evidence(note="done"), "ana", T0 + HOUR)
    kept = replace(kept, satisfaction_requested_at=T0 + HOUR)
    await store.commit(Change(saves=[(kept, made.version)], events=events))

    answer = feedback.Answer(5, "Très bien, 谢谢.\nQuick.")
    rated, given = feedback.record(kept, answer, T0 + 2 * HOUR)
    await store.commit(Change(saves=[(rated, kept.version)], events=given))

    stored = await store.get("p1")
    assert stored == rated
    assert stored is not None and stored.satisfaction_by_customer
    assert stored.satisfaction_requested_at == T0 + HOUR
    outbox = [e for _, e in await store.pending_events(100)]
    [published] = [e for e in outbox if "customer_satisfaction_given" in e.subject]
    assert published.subject == "crm.followup.customer_satisfaction_given.c1"
    payload = followup_events.CustomerSatisfactionGiven.FromString(published.data)
    assert (payload.promise_id, payload.source_interaction_id, payload.score) == ("p1", "i-1", 5)
    assert payload.actor == "customer:c1"
    assert "Quick" not in published.data.decode(errors="replace")


async def test_the_comment_leaves_with_the_contacts_free_text(store: PromiseStore) -> None:
    made = a_promise("p1")
    kept, _ = lifecycle.keep(made, Evidence(note="done"), "ana", T0 + HOUR)
    rated, _ = feedback.record(kept, feedback.Answer(2, "Call me on 612 345 678"), T0 + 2 * HOUR)
    await store.commit(Change(saves=[(rated, 0)]))

    erased, _ = lifecycle.erase(rated, T0 + timedelta(days=1))
    await store.commit(Change(saves=[(erased, rated.version)]))
    await store.scrub()

    stored = await store.get("p1")
    assert stored is not None
    assert stored.satisfaction_comment == ""
    assert (stored.satisfaction, stored.satisfaction_by_customer) == (2, True)
