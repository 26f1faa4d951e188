"""MongoDB plumbing shared by the services' production stores: client, transactions, outbox, inbox.

The counterpart of `promesa.sqlite`, on PyMongo's async API (`pymongo.AsyncMongoClient`).
Every write that must be atomic with its events runs in a multi-document transaction, and
MongoDB only offers those on a replica set or a sharded cluster: a standalone `mongod` is
refused at boot by `open_database` (a one-node replica set, `mongod --replSet rs0` followed
by `rs.initiate()`, is enough for development).

Times are stored as ISO-8601 strings of aware UTC datetimes, as the SQLite stores keep them:
they sort chronologically as strings, and BSON dates would drop the microseconds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from promesa.events import IncomingEvent, OutgoingEvent

T = TypeVar("T")
Document = dict[str, Any]
Client = AsyncMongoClient[Document]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]
Session = AsyncClientSession

DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000

OUTBOX = "outbox"
COUNTERS = "counters"
INBOX = "inbox"
DEAD_LETTERS = "dead_letters"
IDEMPOTENCY = "idempotency"

_NAMESPACE_EXISTS = 48
_COMMAND_NOT_FOUND = 59

PLATFORM_INDEXES: dict[str, list[IndexModel]] = {
    # `_id` is the outbox sequence number; the event id is unique, as in SQLite.
    OUTBOX: [IndexModel([("event_id", ASCENDING)], name="outbox_event_id", unique=True)],
    COUNTERS: [],
    INBOX: [
        IndexModel(
            [("consumer", ASCENDING), ("event_id", ASCENDING)], name="inbox_claim", unique=True
        )
    ],
    DEAD_LETTERS: [IndexModel([("recorded_at", ASCENDING)], name="dead_letters_by_time")],
    # `_id` is the request id.
    IDEMPOTENCY: [],
}


class TransactionsUnsupportedError(RuntimeError):
    """The server is a standalone mongod: multi-document transactions need a replica set."""


def to_iso(value: datetime) -> str:
    """The stored form of an instant: ISO-8601 in UTC, so strings compare as instants do."""
    return value.astimezone(UTC).isoformat()


def connect(
    uri: str,
    *,
    app_name: str = "promesa",
    server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
) -> Client:
    """A client that connects lazily; `tz_aware` so any BSON date read back is aware UTC."""
    return AsyncMongoClient(
        uri,
        tz_aware=True,
        appname=app_name,
        serverSelectionTimeoutMS=server_selection_timeout_ms,
    )


async def open_database(
    uri: str,
    name: str,
    *,
    app_name: str = "promesa",
    server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
) -> tuple[Client, Database]:
    """Connects, checks that transactions are available and creates the platform collections.

    Raises TransactionsUnsupportedError on a standalone server, and PyMongo's
    ServerSelectionTimeoutError when no server answers within the timeout.
    """
    client = connect(
        uri, app_name=app_name, server_selection_timeout_ms=server_selection_timeout_ms
    )
    try:
        await require_transactions(client)
        db = client[name]
        await ensure_collections(db, PLATFORM_INDEXES)
        # Seeded here so the first transactions never race to create the counter.
        with contextlib.suppress(DuplicateKeyError):  # a replica booting alongside seeded it
            await db[COUNTERS].update_one(
                {"_id": OUTBOX}, {"$setOnInsert": {"seq": 0}}, upsert=True
            )
    except BaseException:
        await client.close()
        raise
    return client, db


async def require_transactions(client: Client) -> None:
    """Refuses a standalone server: a replica set member or a mongos answers with its role."""
    try:
        hello: Document = await client.admin.command("hello")
    except OperationFailure as exc:
        if exc.code != _COMMAND_NOT_FOUND:
            raise
        hello = await client.admin.command("isMaster")  # servers older than 4.4.2
    if "setName" in hello or hello.get("msg") == "isdbgrid":
        return
    raise TransactionsUnsupportedError(
        "MongoDB is a standalone server, but the stores need multi-document transactions:"
        " use a replica set (a single node started with --replSet and rs.initiate() will do)"
    )


async def ensure_collections(db: Database, indexes: Mapping[str, Sequence[IndexModel]]) -> None:
    """Creates the missing collections and their indexes; safe to run again, and by replicas
    booting at the same time. Collections exist before any transaction writes to them."""
    existing = set(await db.list_collection_names())
    for name, models in indexes.items():
        if name not in existing:
            try:
                await db.create_collection(name)
            except CollectionInvalid:
                pass  # another replica created it first
            except OperationFailure as exc:
                if exc.code != _NAMESPACE_EXISTS:
                    raise
        if models:
            await db[name].create_indexes(models)


async def run_transaction(client: Client, callback: Callable[[Session], Awaitable[T]]) -> T:
    """Runs `callback` in one transaction (replica set required) and commits it.

    PyMongo's `with_transaction` re-runs the whole callback on a TransientTransactionError
    (a write conflict with a concurrent transaction) and retries a commit whose outcome is
    unknown, so the callback must not keep state between attempts. Any other exception
    raised by the callback, such as a domain error, aborts the transaction and propagates
    unchanged. The callback must not continue after a failed command: the server aborts
    the transaction on a command error, so the helpers below use upserts that report
    "already there" instead of failing on a duplicate key.
    """
    async with client.start_session() as session:
        return await session.with_transaction(
            callback,
            read_concern=ReadConcern("snapshot"),
            write_concern=WriteConcern("majority"),
        )


# --- outbox -------------------------------------------------------------------------------------


async def append_outbox(db: Database, session: Session, events: Sequence[OutgoingEvent]) -> None:
    """Inside the state change's transaction: one row per event, numbered in commit order.

    The sequence comes from a counter document incremented in the same transaction, so two
    transactions that both append conflict and one of them retries after the other has
    committed: sequence order is commit order, at the price of serialising the writers that
    emit events. An event id already waiting in the outbox is skipped, like SQLite's
    INSERT OR IGNORE.
    """
    first_of: dict[str, OutgoingEvent] = {}
    for e in events:  # the first of two events with one id wins, as SQLite's INSERT OR IGNORE
        first_of.setdefault(e.event_id, e)
    fresh = list(first_of.values())
    if not fresh:
        return
    outbox = db[OUTBOX]
    waiting = {
        row["event_id"]
        async for row in outbox.find(
            {"event_id": {"$in": [e.event_id for e in fresh]}},
            {"event_id": 1},
            session=session,
        )
    }
    fresh = [e for e in fresh if e.event_id not in waiting]
    if not fresh:
        return
    counter = await db[COUNTERS].find_one_and_update(
        {"_id": OUTBOX},
        {"$inc": {"seq": len(fresh)}},
        upsert=True,
        return_document=ReturnDocument.AFTER,
        session=session,
    )
    assert counter is not None
    first = int(counter["seq"]) - len(fresh) + 1
    await outbox.insert_many(
        [{"_id": first + i, **e.row()} for i, e in enumerate(fresh)],
        ordered=True,
        session=session,
    )


async def pending_outbox(db: Database, limit: int) -> list[tuple[int, OutgoingEvent]]:
    """The oldest unsent events in commit order (the `_id` is the sequence number)."""
    if limit <= 0:
        return []
    rows = await db[OUTBOX].find({}).sort("_id", ASCENDING).limit(limit).to_list()
    return [(int(r["_id"]), OutgoingEvent.from_row(r)) for r in rows]


async def delete_outbox(db: Database, seqs: Sequence[int]) -> None:
    """Sent rows are deleted: JetStream is the record of what was published."""
    if seqs:
        await db[OUTBOX].delete_many({"_id": {"$in": list(seqs)}})


async def outbox_backlog(db: Database) -> int:
    return await db[OUTBOX].count_documents({})


# --- inbox, idempotency -------------------------------------------------------------------------


async def inbox_claim(
    db: Database, session: Session, consumer: str, event_id: str, now: datetime
) -> bool:
    """Inside the effect's transaction: True the first time an event is seen, False after.

    An upsert rather than an insert, so a repeat does not abort the transaction on the server.
    """
    result = await db[INBOX].update_one(
        {"consumer": consumer, "event_id": event_id},
        {"$setOnInsert": {"handled_at": to_iso(now)}},
        upsert=True,
        session=session,
    )
    return result.upserted_id is not None


async def find_request(db: Database, request_id: str) -> Document | None:
    """The stored idempotency row of a request id (operation, fingerprint, resource_id)."""
    return await db[IDEMPOTENCY].find_one({"_id": request_id})


async def remember_idempotent(
    db: Database,
    session: Session,
    request_id: str,
    operation: str,
    resource_id: str,
    fingerprint: str,
) -> bool:
    """Inside the transaction: True when the request id is new, False when it was committed
    before (the caller raises, which aborts the transaction)."""
    result = await db[IDEMPOTENCY].update_one(
        {"_id": request_id},
        {
            "$setOnInsert": {
                "operation": operation,
                "resource_id": resource_id,
                "fingerprint": fingerprint,
            }
        },
        upsert=True,
        session=session,
    )
    return result.upserted_id is not None


# --- dead letters -------------------------------------------------------------------------------


async def record_dead_letter(
    db: Database, consumer: str, event: IncomingEvent, error: str, now: datetime
) -> None:
    await db[DEAD_LETTERS].insert_one(
        {
            "consumer": consumer,
            "event_id": event.event_id,
            "subject": event.subject,
            "type": event.type,
            "data": event.data,
            "error": error,
            "deliveries": event.delivery,
            "recorded_at": to_iso(now),
        }
    )


async def dead_letters(db: Database) -> list[dict[str, object]]:
    """Oldest first, with the same keys as the SQLite stores return."""
    rows = (
        await db[DEAD_LETTERS]
        .find({}, {"data": 0})
        .sort("_id", ASCENDING)  # insertion order, as SQLite's rowid
        .to_list()
    )
    keys = ("consumer", "event_id", "subject", "type", "error", "deliveries", "recorded_at")
    return [{k: r[k] for k in keys} for r in rows]
