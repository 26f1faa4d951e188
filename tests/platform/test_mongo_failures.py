"""The failures the MongoDB edge must handle, on the wire: write conflicts between concurrent
transactions are retried until both writers end correctly, conflicts that never settle are
ABORTED, a server that goes away is UNAVAILABLE after one or two server selection timeouts
(never a PyMongo error, never PyMongo's two minutes of transaction retries), and a server
without transactions is refused when a store opens.

The conflicts run on the session's server (CRM_TEST_MONGODB_URI); the outage and the
standalone server are servers of the test's own (SecantusDB's `secantusd-py`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import AutoReconnect, OperationFailure, ServerSelectionTimeoutError

from devtools.listening import free_port
from devtools.mongoserver import MongoServer
from promesa import mongo as mdb
from promesa.clock import ManualClock
from promesa.errors import ContentionError, UnavailableError
from promesa.grpc_errors import to_status
from tests.platform.test_store_contract import (
    START,
    MongoNoteStore,
    Note,
    as_is,
    creating,
    event,
    pending_ids,
)

MONGODB_URI = os.environ.get("CRM_TEST_MONGODB_URI", "")
# How long a call may wait for a lost server in these tests: the URI says so, as it would in
# production (`serverSelectionTimeoutMS`); a lost connection is tried once more, then reported.
SELECTION_MS = 1000
ANSWERED_WITHIN = 4 * SELECTION_MS / 1000

pytestmark = pytest.mark.skipif(not MONGODB_URI, reason="CRM_TEST_MONGODB_URI is not set")


def with_selection_timeout(uri: str, ms: int = SELECTION_MS) -> str:
    return f"{uri}{'&' if '?' in uri else '?'}serverSelectionTimeoutMS={ms}"


def crash(server: MongoServer) -> None:
    """The server dies as in a crash; `stop` then only reaps it (SecantusDB ignores SIGTERM,
    so `stop` alone would wait out its grace period)."""
    os.kill(server.pid, signal.SIGKILL)
    server.stop()


@pytest.fixture
async def database() -> AsyncIterator[tuple[mdb.Client, mdb.Database]]:
    """A database of the test's own on the session's server, with the platform collections."""
    client, db = await mdb.open_database(MONGODB_URI, f"promesa_failures_{uuid.uuid4().hex}")
    try:
        yield client, db
    finally:
        await client.drop_database(db.name)
        await client.close()


async def seqs_and_ids(db: mdb.Database) -> list[tuple[int, str]]:
    return [(seq, e.event_id) for seq, e in await mdb.pending_outbox(db, 100)]


# --- write conflicts --------------------------------------------------------------------------


async def test_two_transactions_racing_on_the_outbox_counter_both_commit_in_commit_order(
    database: tuple[mdb.Client, mdb.Database],
) -> None:
    client, db = database
    first_wrote, second_conflicted = asyncio.Event(), asyncio.Event()
    second_attempts = 0
    conflicts: list[OperationFailure] = []

    async def first(session: mdb.Session) -> None:
        await mdb.append_outbox(db, session, [event("e-first")])
        first_wrote.set()
        # Held open until the second has run into the counter this one has written.
        await asyncio.wait_for(second_conflicted.wait(), 10)

    async def second(session: mdb.Session) -> None:
        nonlocal second_attempts
        second_attempts += 1
        await first_wrote.wait()
        try:
            await mdb.append_outbox(db, session, [event("e-second")])
        except OperationFailure as exc:
            conflicts.append(exc)
            second_conflicted.set()
            raise

    # Given two transactions that both take the next outbox numbers, the first one still open,
    # when both run to the end,
    await asyncio.gather(mdb.run_transaction(client, first), mdb.run_transaction(client, second))

    # then the second ran into a write conflict, was re-run until the first had committed,
    # and both landed, in commit order.
    assert conflicts
    assert all(c.has_error_label("TransientTransactionError") for c in conflicts)
    assert second_attempts == len(conflicts) + 1
    assert await seqs_and_ids(db) == [(1, "e-first"), (2, "e-second")]


async def test_a_write_conflict_that_never_settles_is_contention_not_a_driver_error(
    database: tuple[mdb.Client, mdb.Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = database
    monkeypatch.setattr(mdb, "WRITE_CONFLICT_RETRY_SECONDS", 0.3)
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder(session: mdb.Session) -> None:
        await mdb.append_outbox(db, session, [event("e-held")])
        holding.set()
        await asyncio.wait_for(release.wait(), 10)

    async def writer(session: mdb.Session) -> None:
        await mdb.append_outbox(db, session, [event("e-blocked")])

    held = asyncio.create_task(mdb.run_transaction(client, holder))
    await holding.wait()
    try:
        started = time.monotonic()
        with pytest.raises(ContentionError) as raised:
            await mdb.run_transaction(client, writer, database=db.name)
        assert time.monotonic() - started < 5
    finally:
        release.set()
        await held

    assert to_status(raised.value).code == grpc.StatusCode.ABORTED
    assert "try again" in str(raised.value)
    assert await seqs_and_ids(db) == [(1, "e-held")]


async def test_a_failing_callback_is_not_retried_and_leaves_nothing(
    database: tuple[mdb.Client, mdb.Database],
) -> None:
    client, db = database
    attempts = 0

    async def refused(session: mdb.Session) -> None:
        nonlocal attempts
        attempts += 1
        await mdb.append_outbox(db, session, [event("e-1")])
        raise LookupError("a domain rule said no")

    with pytest.raises(LookupError):
        await mdb.run_transaction(client, refused)

    assert attempts == 1
    assert await seqs_and_ids(db) == []


# --- the server going away --------------------------------------------------------------------


@pytest.fixture
def own_mongo(tmp_path: Path) -> Iterator[MongoServer]:
    """A server of the test's own that keeps its data on disk, on a fixed port, so that it can
    be crashed and started again where the clients expect it."""
    server = MongoServer(tmp_path / "mongo-log", data_dir=tmp_path / "mongo", port=free_port())
    server.start()
    yield server
    if server._proc is not None:
        crash(server)


async def test_a_lost_server_is_unavailable_quickly_and_the_store_works_again_once_it_is_back(
    own_mongo: MongoServer,
) -> None:
    clock = ManualClock(START)
    name = f"promesa_outage_{uuid.uuid4().hex}"
    store = await MongoNoteStore.open(with_selection_timeout(own_mongo.uri), name, as_is, clock)
    try:
        await store.commit(creating(Note("n-before", "kept"), event("e-before")))
        # Given the server crashed,
        crash(own_mongo)

        # when a write and a read are attempted, each is UNAVAILABLE within a few seconds,
        for call in (
            store.commit(creating(Note("n-during", "lost"), event("e-during"))),
            store.pending_events(10),
            store.get("n-before"),
        ):
            started = time.monotonic()
            with pytest.raises(UnavailableError) as raised:
                await call
            took = time.monotonic() - started
            assert took < ANSWERED_WITHIN, f"{took:.2f}s"
            assert to_status(raised.value).code == grpc.StatusCode.UNAVAILABLE
            assert str(raised.value) == mdb.UNREACHABLE
            # PyMongo's reason stays for the logs, behind the caller's error.
            assert isinstance(raised.value.__cause__, AutoReconnect)

        # and once the server is back where it was, the store works again, with what was
        # committed before and nothing of the failed write.
        own_mongo.start()
        assert await store.get("n-before") == Note("n-before", "kept")
        assert await store.get("n-during") is None
        assert await pending_ids(store) == ["e-before"]
        await store.commit(creating(Note("n-after", "new"), event("e-after")))
        assert await pending_ids(store) == ["e-before", "e-after"]
    finally:
        await store.close()


async def test_a_store_cannot_open_without_a_server_and_says_so_within_the_timeout() -> None:
    nowhere = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    started = time.monotonic()
    with pytest.raises(ServerSelectionTimeoutError):
        await MongoNoteStore.open(
            nowhere, "promesa_nowhere", as_is, ManualClock(START), server_selection_timeout_ms=300
        )
    assert time.monotonic() - started < 3


async def test_the_uri_sets_the_server_selection_timeout_unless_the_caller_does() -> None:
    uri = "mongodb://127.0.0.1:1/?directConnection=true&serverselectiontimeoutms=1234"
    clients = [
        mdb.connect(uri),
        mdb.connect(uri, server_selection_timeout_ms=50),
        mdb.connect("mongodb://127.0.0.1:1/?directConnection=true"),
    ]
    try:
        assert [c.options.server_selection_timeout for c in clients] == [
            1.234,
            0.05,
            mdb.DEFAULT_SERVER_SELECTION_TIMEOUT_MS / 1000,
        ]
    finally:
        for c in clients:
            await c.close()


async def test_only_connection_failures_become_unavailable_at_the_edge() -> None:
    async def lost() -> None:
        raise ServerSelectionTimeoutError("no server")

    async def refused() -> None:
        raise OperationFailure("bad query", code=2)

    with pytest.raises(UnavailableError):
        await mdb.at_the_edge(lost)()
    with pytest.raises(OperationFailure):
        await mdb.at_the_edge(refused)()


async def test_every_public_method_of_a_store_is_guarded_and_no_private_one() -> None:
    for name in ("commit", "get", "pending_events", "find_request", "record_dead_letter"):
        assert hasattr(getattr(MongoNoteStore, name), "__wrapped__"), name
    assert not hasattr(MongoNoteStore._write, "__wrapped__")


def test_unavailable_answers_grpc_unavailable() -> None:
    assert to_status(UnavailableError(mdb.UNREACHABLE)).code == grpc.StatusCode.UNAVAILABLE


# --- a server without transactions ------------------------------------------------------------


@pytest.fixture(scope="module")
def standalone_mongo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    server = MongoServer(tmp_path_factory.mktemp("standalone"), standalone=True).start()
    yield server
    crash(server)


async def test_a_standalone_server_is_refused_when_a_store_opens_with_what_to_do(
    standalone_mongo: MongoServer,
) -> None:
    name = f"promesa_standalone_{uuid.uuid4().hex}"
    with pytest.raises(mdb.TransactionsUnsupportedError) as raised:
        await MongoNoteStore.open(standalone_mongo.uri, name, as_is, ManualClock(START))

    message = str(raised.value)
    assert f"127.0.0.1:{standalone_mongo.port} is a standalone server" in message
    assert "point CRM_MONGODB_URI at a replica set member" in message
    # Refused before anything was created there.
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(standalone_mongo.uri)
    try:
        assert name not in await client.list_database_names()
    finally:
        await client.close()
