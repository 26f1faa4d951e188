"""Facts about the MongoDB-protocol server the tests run on, pinned so that a change in it
shows up: what our adapters rely on, and the one known bug of SecantusDB they work around."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymongo
import pytest
from pymongo.database import Database

from tests.support import mongodb_is_secantus

URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
SECANTUS = bool(URI) and mongodb_is_secantus(URI)

pytestmark = pytest.mark.skipif(not URI, reason="CRM_TEST_MONGODB_URI is not set")


@pytest.fixture
def db() -> Iterator[Database[dict[str, object]]]:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(URI)
    name = f"promesa_wire_{uuid.uuid4().hex}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def test_the_server_is_a_replica_set_primary_so_transactions_are_offered() -> None:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(URI)
    with client:
        hello = client.admin.command("hello")
    assert hello.get("setName") and hello.get("isWritablePrimary")


@pytest.mark.xfail(
    SECANTUS,
    strict=True,
    reason="SecantusDB 0.7.0b3: a range on a compound index's field followed by more index "
    "fields returns too few rows",
)
def test_a_range_on_a_compound_index_field_followed_by_more_fields_finds_every_row(
    db: Database[dict[str, object]],
) -> None:
    rows = db["rows"]
    rows.create_index([("k", 1), ("n", -1), ("_id", -1)])
    rows.insert_many([{"_id": f"d{i}", "k": "a", "n": i} for i in range(6)])
    rows.insert_one({"_id": "other", "k": "b", "n": 2})

    found = rows.find({"k": "a", "n": {"$gte": 2, "$lt": 4}}).sort([("n", -1), ("_id", -1)])

    assert [d["_id"] for d in found] == ["d3", "d2"]


def test_the_same_range_without_trailing_index_fields_is_right(
    db: Database[dict[str, object]],
) -> None:
    rows = db["rows"]
    rows.create_index([("k", 1), ("n", 1)])
    rows.insert_many([{"_id": f"d{i}", "k": "a", "n": i} for i in range(6)])

    found = rows.find({"k": "a", "n": {"$gte": 2, "$lt": 4}}).sort("n", 1)

    assert [d["_id"] for d in found] == ["d2", "d3"]
