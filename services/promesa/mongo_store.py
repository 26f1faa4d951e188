"""A base for a service's MongoDB store: opening and preparing the database, and the outbox,
idempotency and dead-letter methods the relay and consumers use, the same for every service."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Self, TypeVar

from promesa import mongo as db
from promesa import tracing
from promesa.clock import Clock
from promesa.event_catalog import subject_token
from promesa.events import IncomingEvent, OutgoingEvent
from promesa.outbox import Hold
from promesa.storage import (
    AlreadyHandledError,
    DeadLetter,
    DuplicateRequestError,
    IdempotencyKey,
    InboxKey,
    VersionConflictError,
)

E = TypeVar("E")


class MongoStore(Generic[E]):
    """Subclasses name their collections' indexes and set up their collection handles in
    `_collections`; every write runs in `promesa.mongo.run_transaction`.

    Every public coroutine method, the base's and each subclass's, is wrapped in
    `promesa.mongo.at_the_edge`: a lost server leaves the store as UnavailableError (gRPC
    UNAVAILABLE), whatever the method, so no adapter has to remember to catch PyMongo's
    connection failures, and no caller has to know them."""

    APP_NAME: ClassVar[str]
    INDEXES: ClassVar[Mapping[str, Sequence[Any]]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _guard_public_methods(cls)

    def __init__(
        self,
        client: db.Client,
        database: db.Database,
        encode: Callable[[E], OutgoingEvent],
        clock: Clock,
    ) -> None:
        """Use `open`, which also checks the server and creates the collections."""
        self._client = client
        self._db = database
        self._encode = encode
        self._clock = clock
        self._hold: Hold | None = None
        self._collections(database)

    def _collections(self, database: db.Database) -> None:
        """Binds the subclass's collection handles."""

    @classmethod
    async def open(
        cls,
        uri: str,
        database: str,
        encode: Callable[[E], OutgoingEvent],
        clock: Clock,
        *,
        server_selection_timeout_ms: int | None = None,
    ) -> Self:
        """Connects to a replica set, creating collections and indexes that are missing.
        Without a timeout, the URI's `serverSelectionTimeoutMS` or the default applies
        (`promesa.mongo.connect`)."""
        client, database_ = await db.open_database(
            uri,
            database,
            app_name=cls.APP_NAME,
            server_selection_timeout_ms=server_selection_timeout_ms,
        )
        try:
            await db.ensure_collections(database_, cls.INDEXES)
        except BaseException:
            await client.close()
            raise
        return cls(client, database_, encode, clock)

    async def _write(
        self,
        events: Sequence[OutgoingEvent],
        apply: Callable[[db.Session], Awaitable[None]],
        *,
        handled: InboxKey | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> None:
        """One transaction: the inbox row first (AlreadyHandledError), the idempotency key
        (DuplicateRequestError), the caller's writes, then the outbox rows. Encode events before
        calling: a retried transaction must write the very same ones."""
        now = self._clock.now()
        held_by, until = self._hold.claim(now) if self._hold else (None, None)

        async def write(session: db.Session) -> None:
            if handled is not None and not await db.inbox_claim(
                self._db, session, handled.consumer, handled.event_id, now
            ):
                raise AlreadyHandledError(handled.event_id)
            k = idempotency
            if k is not None and not await db.remember_idempotent(
                self._db, session, k.request_id, k.operation, k.resource_id, k.fingerprint
            ):
                raise DuplicateRequestError(k.request_id)
            await apply(session)
            await db.append_outbox(self._db, session, events, held_by, until)

        with tracing.commit_span(events) as traced:
            events = traced  # `write` reads them when it runs: stamped with the commit's span
            await db.run_transaction(self._client, write, database=self._db.name)

    @staticmethod
    async def _save_versioned(
        collection: db.Collection,
        session: db.Session,
        resource_id: str,
        doc: db.Document,
        expected: int,
    ) -> None:
        """Inserts a new resource (`expected` 0) or replaces the version it was read at;
        VersionConflictError when the id exists already or another writer got there first.
        An upsert rather than an insert, so a clash does not abort the transaction."""
        if expected == 0:
            inserted = await collection.update_one(
                {"_id": resource_id}, {"$setOnInsert": doc}, upsert=True, session=session
            )
            if inserted.upserted_id is None:
                raise VersionConflictError(resource_id)
            return
        replaced = await collection.replace_one(
            {"_id": resource_id, "version": expected}, doc, session=session
        )
        if replaced.matched_count != 1:
            raise VersionConflictError(resource_id)

    async def find_request(self, request_id: str) -> IdempotencyKey | None:
        row = await db.find_request(self._db, request_id)
        if row is None:
            return None
        return IdempotencyKey(request_id, row["operation"], row["fingerprint"], row["resource_id"])

    async def pending_events(self, limit: int) -> Sequence[tuple[int, OutgoingEvent]]:
        return await db.pending_outbox(self._db, limit)

    async def claim_events(
        self, holder: str, limit: int, lease: timedelta
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        now = self._clock.now()
        return await db.claim_outbox(self._db, holder, limit, now, now + lease)

    def hold_new_events(self, holder: str | None, lease: timedelta) -> None:
        self._hold = Hold(holder, lease) if holder else None

    async def held_events(
        self, holder: str, after: int, limit: int
    ) -> Sequence[tuple[int, OutgoingEvent]]:
        return await db.held_outbox(self._db, holder, after, limit)

    async def release_events(self, holder: str) -> None:
        await db.release_outbox(self._db, holder)

    async def mark_events_sent(self, seqs: Sequence[int]) -> None:
        await db.delete_outbox(self._db, seqs)

    async def outbox_backlog(self) -> int:
        return await db.outbox_backlog(self._db)

    async def record_dead_letter(self, consumer: str, event: IncomingEvent, error: str) -> None:
        await db.record_dead_letter(self._db, consumer, event, error, self._clock.now())

    async def dead_letters(self) -> list[dict[str, object]]:
        return await db.dead_letters(self._db)

    async def list_dead_letters(
        self, consumer: str | None, after_id: str | None, limit: int
    ) -> Sequence[DeadLetter]:
        """Oldest first; `consumer` None for every consumer's; nothing after a malformed id."""
        return await db.list_dead_letters(self._db, consumer, after_id, limit)

    async def dead_letter(self, letter_id: str) -> DeadLetter | None:
        """None for an unknown id, and for one this backend could not have made."""
        return await db.dead_letter(self._db, letter_id)

    async def mark_dead_letter_replayed(self, letter_id: str, at: datetime) -> None:
        """Idempotent: the first replay's instant stays; an unknown id changes nothing."""
        await db.mark_dead_letter_replayed(self._db, letter_id, at)

    async def prune_inbox(self, before: datetime, limit: int) -> int:
        """Forgets up to `limit` events handled before `before` (one bounded batch; returns how
        many): an event redelivered after that is applied again, so `before` must lie further
        back than the stream's duplicate window and the longest redelivery."""
        return await db.prune_inbox(self._db, before, limit)

    async def forget_dead_letters(self, contact_id: str) -> None:
        """An erased person's dead letters go: their payloads may hold what they said."""
        suffix = re.escape("." + subject_token(contact_id)) + "$"
        await self._db[db.DEAD_LETTERS].delete_many({"subject": {"$regex": suffix}})

    async def scrub(self) -> None:
        """Nothing to do from here: MongoDB rewrites a document in place, and the space of
        deleted data is reclaimed (and overwritten) by the storage engine; operators who must
        prove nothing remains on disk run `compact` on the collections (see README)."""

    async def close(self) -> None:
        await self._client.close()


def _guard_public_methods(cls: type) -> None:
    """Wraps the coroutine methods `cls` itself defines (inherited ones are wrapped already)."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.iscoroutinefunction(member):
            setattr(cls, name, db.at_the_edge(member))


_guard_public_methods(MongoStore)
