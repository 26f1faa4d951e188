"""MongoDB plumbing shared by the services' production stores: client, transactions, outbox, inbox.

The counterpart of `promesa.sqlite`, on PyMongo's async API (`pymongo.AsyncMongoClient`).
Every write that must be atomic with its events runs in a multi-document transaction, and
MongoDB only offers those on a replica set or a sharded cluster: a standalone `mongod` is
refused at boot by `open_database` (a one-node replica set, `mongod --replSet rs0` followed
by `rs.initiate()`, is enough for development).

Times are stored as ISO-8601 strings of aware UTC datetimes, as the SQLite stores keep them:
they sort chronologically as strings, and BSON dates would drop the microseconds.

Failures are translated here, at the edge, so that neither the domain nor the gRPC edge knows
PyMongo: a lost server is UnavailableError (`at_the_edge`, which `MongoStore` puts around every
public method of a store), write conflicts that never settle are ContentionError.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import structlog
from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReturnDocument
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import (
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from promesa.errors import ContentionError, UnavailableError, clip
from promesa.events import IncomingEvent, OutgoingEvent
from promesa.settings import ConfigError
from promesa.storage import DeadLetter

log = structlog.get_logger(__name__)

T = TypeVar("T")
P = ParamSpec("P")
Document = dict[str, Any]
Client = AsyncMongoClient[Document]
Database = AsyncDatabase[Document]
Collection = AsyncCollection[Document]
Session = AsyncClientSession

DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 5_000
# Write conflicts between concurrent transactions are retried this long, then the caller is told
# to try again (ABORTED). PyMongo's `with_transaction` keeps going for 120 s.
WRITE_CONFLICT_RETRY_SECONDS = 30.0
_BACKOFF_FIRST = 0.005
_BACKOFF_MAX = 0.5

UNREACHABLE = "the database cannot be reached; try again later"
COMMIT_UNKNOWN = (
    "the database stopped answering while the change was being committed, so it may have been"
    " saved: read it before sending the request again (a create with the same request_id is"
    " safe to resend)"
)

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
        ),
        IndexModel([("handled_at", ASCENDING)], name="inbox_by_handled_at"),  # for pruning
    ],
    DEAD_LETTERS: [
        IndexModel([("recorded_at", ASCENDING)], name="dead_letters_by_time"),
        # One consumer's letters in id order. The range (`_id`) is the last field on purpose:
        # SecantusDB's range scan goes wrong when more index fields follow the range field.
        IndexModel([("consumer", ASCENDING), ("_id", ASCENDING)], name="dead_letters_by_consumer"),
    ],
    # `_id` is the request id.
    IDEMPOTENCY: [],
}


class TransactionsUnsupportedError(ConfigError):
    """The server is a standalone mongod: multi-document transactions need a replica set. A
    configuration error (CRM_MONGODB_URI names the wrong kind of server), which the message
    names, so that a service refuses to boot with it rather than with a traceback."""


def unavailable(exc: PyMongoError) -> UnavailableError:
    """What a caller is told when the database went away (logged here, once, with PyMongo's
    reason, which the caller does not need): whether the change may have been saved."""
    unknown = exc.has_error_label("UnknownTransactionCommitResult")
    log.warning(
        "database_unavailable",
        error_type=type(exc).__name__,
        error=clip(str(exc), 300),
        commit_unknown=unknown,
    )
    return UnavailableError(COMMIT_UNKNOWN if unknown else UNREACHABLE)


def lost_server(exc: PyMongoError) -> bool:
    """A connection failure (no server selected, socket closed or timed out, primary gone),
    or a commit that could not be confirmed: the database, not the request, is at fault."""
    return isinstance(exc, ConnectionFailure) or exc.has_error_label(
        "UnknownTransactionCommitResult"
    )


def at_the_edge(method: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """`method` with a lost server turned into UnavailableError (gRPC UNAVAILABLE): the one
    place where PyMongo's connection failures (ServerSelectionTimeoutError, AutoReconnect,
    NetworkTimeout, ...) stop, so that use cases, consumers and the relay see a PromesaError."""

    @functools.wraps(method)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except PyMongoError as exc:
            if lost_server(exc):
                raise unavailable(exc) from exc
            raise

    return guarded


def to_iso(value: datetime) -> str:
    """The stored form of an instant: ISO-8601 in UTC, so strings compare as instants do."""
    return value.astimezone(UTC).isoformat()


def connect(
    uri: str,
    *,
    app_name: str = "promesa",
    server_selection_timeout_ms: int | None = None,
) -> Client:
    """A client that connects lazily; `tz_aware` so any BSON date read back is aware UTC.

    The server selection timeout is how long a call waits for a server before the caller is
    told UNAVAILABLE: the argument when given, else the URI's `serverSelectionTimeoutMS`,
    else DEFAULT_SERVER_SELECTION_TIMEOUT_MS (PyMongo's own default is 30 s)."""
    options: dict[str, Any] = {"tz_aware": True, "appname": app_name}
    if server_selection_timeout_ms is not None:
        options["serverSelectionTimeoutMS"] = server_selection_timeout_ms
    elif not _uri_sets(uri, "serverSelectionTimeoutMS"):
        options["serverSelectionTimeoutMS"] = DEFAULT_SERVER_SELECTION_TIMEOUT_MS
    return AsyncMongoClient(uri, **options)


def _uri_sets(uri: str, option: str) -> bool:
    """True when the connection string's options name `option` (names are case-insensitive)."""
    query = uri.partition("?")[2]
    return any(pair.partition("=")[0].lower() == option.lower() for pair in re.split("[&;]", query))


async def open_database(
    uri: str,
    name: str,
    *,
    app_name: str = "promesa",
    server_selection_timeout_ms: int | None = None,
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
    # The address, never the URI: that may hold a password.
    where = ", ".join(sorted(f"{host}:{port}" for host, port in client.nodes)) or "the server"
    raise TransactionsUnsupportedError(
        f"MongoDB at {where} is a standalone server, but the stores need multi-document"
        " transactions, which only a replica set or a sharded cluster offers: point"
        " CRM_MONGODB_URI at a replica set member or a mongos (for development, one mongod"
        " started with --replSet rs0 and initiated with rs.initiate() will do)"
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


async def run_transaction(
    client: Client, callback: Callable[[Session], Awaitable[T]], *, database: str = ""
) -> T:
    """Runs `callback` in one transaction (replica set required) and commits it.

    A write conflict with a concurrent transaction (TransientTransactionError) aborts and
    re-runs the whole callback after a short random back-off, for up to
    WRITE_CONFLICT_RETRY_SECONDS and then ContentionError (ABORTED), so the callback must not
    keep state between attempts. A connection lost mid-transaction is tried once more (that
    attempt waits for a server as long as the server selection timeout allows, which rides out
    a short failover); a lost connection after that, or no server found within the timeout,
    propagates for `at_the_edge` to answer UNAVAILABLE: PyMongo's `with_transaction` would
    retry it for two minutes while the caller waits. A commit whose outcome is unknown is
    never re-run: commitTransaction is sent again for a write-concern failure, and a lost
    connection propagates. Any other exception raised by the callback, such as a domain error,
    aborts the transaction and propagates unchanged. The callback must not continue after a
    failed command: the server aborts the transaction on a command error, so the helpers below
    use upserts that report "already there" instead of failing on a duplicate key.
    """
    deadline = time.monotonic() + WRITE_CONFLICT_RETRY_SECONDS
    reconnecting = False
    attempt = 0
    async with client.start_session() as session:
        while True:
            attempt += 1
            try:
                return await _transaction(session, callback, deadline)
            except PyMongoError as exc:
                if lost_server(exc):
                    # Having waited a whole selection timeout for a server, do not wait again.
                    waited = isinstance(exc, ServerSelectionTimeoutError)
                    if (
                        reconnecting
                        or waited
                        or exc.has_error_label("UnknownTransactionCommitResult")
                    ):
                        raise
                    reconnecting = True
                elif not exc.has_error_label("TransientTransactionError"):
                    raise
                elif time.monotonic() >= deadline:
                    raise ContentionError("database", database) from exc
            # Jittered, so that writers that collided do not collide again in step.
            await asyncio.sleep(random.random() * min(_BACKOFF_FIRST * 1.5**attempt, _BACKOFF_MAX))


async def _transaction(
    session: Session, callback: Callable[[Session], Awaitable[T]], deadline: float
) -> T:
    """One attempt: start, run the callback (abort on any exception), commit."""
    await session.start_transaction(
        read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority")
    )
    try:
        result = await callback(session)
    except BaseException:
        if session.in_transaction:
            await session.abort_transaction()  # best effort: PyMongo ignores its errors
        raise
    while True:
        try:
            await session.commit_transaction()
            return result
        except PyMongoError as exc:
            # Committing again is safe (the same transaction number), and the only way to learn
            # the outcome of a commit that timed out waiting for its write concern.
            unknown = exc.has_error_label("UnknownTransactionCommitResult")
            if not unknown or isinstance(exc, ConnectionFailure) or time.monotonic() >= deadline:
                raise


# --- outbox -------------------------------------------------------------------------------------


async def append_outbox(
    db: Database,
    session: Session,
    events: Sequence[OutgoingEvent],
    held_by: str | None = None,
    until: datetime | None = None,
) -> None:
    """Inside the state change's transaction: one row per event, numbered in commit order,
    claimed for `held_by` until `until` when given (`OutboxStore.hold_new_events`).

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
    claim = {"claimed_by": held_by, "claimed_until": to_iso(until) if until else None}
    await outbox.insert_many(
        [{"_id": first + i, **e.row(), **claim} for i, e in enumerate(fresh)],
        ordered=True,
        session=session,
    )


async def pending_outbox(db: Database, limit: int) -> list[tuple[int, OutgoingEvent]]:
    """The oldest unsent events in commit order (the `_id` is the sequence number), claimed or
    not: what is waiting, for tests and tools."""
    if limit <= 0:
        return []
    rows = await db[OUTBOX].find({}).sort("_id", ASCENDING).limit(limit).to_list()
    return [(int(r["_id"]), OutgoingEvent.from_row(r)) for r in rows]


async def claim_outbox(
    db: Database, holder: str, limit: int, now: datetime, until: datetime
) -> list[tuple[int, OutgoingEvent]]:
    """Claims for `holder` until `until` the oldest events no other relay holds (never claimed,
    or held past their claim's end by a relay that died) and those `holder` holds already
    (a publish it must retry), in commit order.

    No transaction: the update checks each row's claim again as it sets it, atomically per
    document, so of two relays that read the same candidates only one gets each row; when the
    update matched fewer rows than were read, the ones `holder` now holds are read back. Two
    round trips when uncontended. Filtered by `_id` and the claim fields, with no compound
    index (SecantusDB's range scan on one is wrong, see issue 11): the relay keeps the outbox
    short.
    """
    if limit <= 0:
        return []
    outbox = db[OUTBOX]
    claimable = {
        "$or": [
            {"claimed_by": None},  # never claimed (or written before claims existed)
            {"claimed_by": holder},
            {"claimed_until": {"$lte": to_iso(now)}},
        ]
    }
    rows = await outbox.find(claimable).sort("_id", ASCENDING).limit(limit).to_list()
    if not rows:
        return []
    ids = [row["_id"] for row in rows]
    claimed = await outbox.update_many(
        {"$and": [{"_id": {"$in": ids}}, claimable]},
        {"$set": {"claimed_by": holder, "claimed_until": to_iso(until)}},
    )
    if claimed.matched_count != len(ids):  # another relay got some first: see which are ours
        rows = (
            await outbox.find({"_id": {"$in": ids}, "claimed_by": holder})
            .sort("_id", ASCENDING)
            .to_list()
        )
    return [(int(r["_id"]), OutgoingEvent.from_row(r)) for r in rows]


async def held_outbox(
    db: Database, holder: str, after: int, limit: int
) -> list[tuple[int, OutgoingEvent]]:
    """The events `holder` holds past `after`, in commit order: a read, as they were claimed
    when written. Those whose claim ran out are included while nobody took them over, so a
    relay that fell behind still sends in commit order."""
    if limit <= 0:
        return []
    rows = (
        await db[OUTBOX]
        .find({"_id": {"$gt": after}, "claimed_by": holder})
        .sort("_id", ASCENDING)
        .limit(limit)
        .to_list()
    )
    return [(int(r["_id"]), OutgoingEvent.from_row(r)) for r in rows]


async def release_outbox(db: Database, holder: str) -> None:
    """A relay that stops hands its unsent claims back, so another takes them over at once."""
    await db[OUTBOX].update_many(
        {"claimed_by": holder}, {"$set": {"claimed_by": None, "claimed_until": None}}
    )


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


async def prune_inbox(db: Database, before: datetime, limit: int) -> int:
    """Deletes up to `limit` inbox rows handled before `before`, oldest first (through the
    `handled_at` index): one bounded batch per call."""
    if limit <= 0:
        return 0
    cutoff = {"handled_at": {"$lt": to_iso(before)}}
    rows = await (
        db[INBOX].find(cutoff, {"_id": 1}).sort("handled_at", ASCENDING).limit(limit).to_list()
    )
    if not rows:
        return 0
    deleted = await db[INBOX].delete_many({"_id": {"$in": [r["_id"] for r in rows]}, **cutoff})
    return deleted.deleted_count


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
            "source": event.source,
            "ce_subject": event.ce_subject,
            "time": event.time,
            "data": event.data,
            "error": error,
            "deliveries": event.delivery,
            "recorded_at": to_iso(now),
            "replayed_at": None,
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


async def list_dead_letters(
    db: Database, consumer: str | None, after_id: str | None, limit: int
) -> list[DeadLetter]:
    """Oldest first (ObjectIds grow with insertion); after a malformed `after_id` there is
    nothing (no letter has that id)."""
    if limit <= 0:
        return []
    query: Document = {}
    if after_id is not None:
        after = _object_id(after_id)
        if after is None:
            return []
        query["_id"] = {"$gt": after}
    if consumer is not None:
        query["consumer"] = consumer
    rows = await db[DEAD_LETTERS].find(query).sort("_id", ASCENDING).limit(limit).to_list()
    return [_dead_letter(r) for r in rows]


async def dead_letter(db: Database, letter_id: str) -> DeadLetter | None:
    oid = _object_id(letter_id)
    if oid is None:
        return None
    row = await db[DEAD_LETTERS].find_one({"_id": oid})
    return _dead_letter(row) if row else None


async def mark_dead_letter_replayed(db: Database, letter_id: str, at: datetime) -> None:
    """The first replay's time stays: marking again (a retried replay) changes nothing."""
    oid = _object_id(letter_id)
    if oid is not None:
        await db[DEAD_LETTERS].update_one(
            {"_id": oid, "replayed_at": None}, {"$set": {"replayed_at": to_iso(at)}}
        )


_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def _object_id(letter_id: str) -> ObjectId | None:
    """A dead letter's id as MongoDB made it; None for anything else (no letter has it)."""
    return ObjectId(letter_id) if _OBJECT_ID.fullmatch(letter_id) else None


def _dead_letter(row: Document) -> DeadLetter:
    """Letters recorded before source, ce_subject and time were kept read them as empty."""
    kept_since = {"source": "", "ce_subject": "", "time": "", "replayed_at": None}
    return DeadLetter.from_row(str(row["_id"]), {**kept_since, **row})
