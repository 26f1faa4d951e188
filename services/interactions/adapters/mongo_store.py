"""The production store: MongoDB through PyMongo's async API, one document per interaction.

Each interaction is its shared document (`documents.to_document`) under `_id` = interaction id,
plus the keys the queries need: `occurred_us`, the occurrence as integer microseconds since the
epoch (`documents.micros`, as in SQLite), and `erased`. The contacts read model is a collection
of its own keyed by contact id.
Writes run in one multi-document transaction, which needs a replica set (see `promesa.mongo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel

from interactions.adapters.documents import from_document, micros, timeline_key, to_document
from interactions.domain.events import InteractionEvent
from interactions.domain.model import Interaction, KnownContact
from interactions.ports import Change, ContactGoneError, Scope, TimelineFilter
from promesa import mongo as db
from promesa.mongo_store import MongoStore
from promesa.pagination import Cursor

INTERACTIONS = "interactions"
KNOWN_CONTACTS = "known_contacts"

INDEXES: dict[str, list[IndexModel]] = {
    INTERACTIONS: [
        # A timeline page is a bounded walk of this index, newest first, with no sort stage.
        IndexModel(
            [("contact_id", ASCENDING), ("occurred_us", DESCENDING), ("_id", DESCENDING)],
            name="interactions_timeline",
        ),
        IndexModel(
            [("contact_id", ASCENDING)],
            name="interactions_unerased",
            partialFilterExpression={"erased": False},
        ),
    ],
    # `_id` is the contact id; an erasure looks up what was merged into it.
    KNOWN_CONTACTS: [IndexModel([("merged_into_id", ASCENDING)], name="known_contacts_merged")],
}


def _instant(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _when(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _known_from(doc: db.Document) -> KnownContact:
    return KnownContact(
        str(doc["_id"]),
        merged_into_id=doc.get("merged_into_id", ""),
        erased_at=_instant(doc.get("erased_at")),
        owner_id=doc.get("owner_id", ""),
        team=doc.get("team", ""),
        profile_at=_instant(doc.get("profile_at")),
        erasure_confirmed_at=_instant(doc.get("erasure_confirmed_at")),
    )


def timeline_query(
    f: TimelineFilter, after: Cursor | None, scope: Scope | None = None
) -> tuple[db.Document, list[tuple[str, int]]]:
    """The filter and sort of a timeline page: a bounded walk of `interactions_timeline`."""
    query: db.Document = {"contact_id": f.contact_id}
    if scope is not None:
        # Checked on each document of the walk: no index of its own is needed.
        query["$and"] = [
            {"$or": [{"team": {"$in": [scope.team, ""]}}, {"agent_id": scope.agent_id}]}
        ]
    for key, value in (("type", f.type), ("channel", f.channel), ("agent_id", f.agent_id)):
        if value:
            query[key] = str(value)
    occurred: db.Document = {}
    if f.occurred_after is not None:
        occurred["$gte"] = micros(f.occurred_after)
    if f.occurred_before is not None:
        occurred["$lt"] = micros(f.occurred_before)
    if after is not None:
        at, interaction_id = timeline_key(after)
        # The plain bound keeps the index scan bounded; the $or breaks the tie by id.
        occurred["$lte"] = at
        query["$or"] = [
            {"occurred_us": {"$lt": at}},
            {"occurred_us": at, "_id": {"$lt": interaction_id}},
        ]
    if occurred:
        query["occurred_us"] = occurred
    return query, [("occurred_us", DESCENDING), ("_id", DESCENDING)]


class MongoInteractionStore(MongoStore[InteractionEvent]):
    APP_NAME = "promesa-interactions"
    INDEXES = INDEXES

    def _collections(self, database: db.Database) -> None:
        self._interactions = database[INTERACTIONS]
        self._contacts = database[KNOWN_CONTACTS]

    # --- reads -------------------------------------------------------------------------------

    async def get(self, interaction_id: str) -> Interaction | None:
        doc = await self._interactions.find_one({"_id": interaction_id})
        return from_document(doc) if doc else None

    async def timeline(
        self, f: TimelineFilter, after: Cursor | None, limit: int, scope: Scope | None = None
    ) -> Sequence[Interaction]:
        query, sort = timeline_query(f, after, scope)
        return await self._find(query, sort, limit)

    async def of_contact(
        self, contact_id: str, limit: int, *, unerased_only: bool = False
    ) -> Sequence[Interaction]:
        query: db.Document = {"contact_id": contact_id}
        if unerased_only:
            query["erased"] = False
        return await self._find(query, [], limit)

    async def contact(self, contact_id: str) -> KnownContact | None:
        doc = await self._contacts.find_one({"_id": contact_id})
        return _known_from(doc) if doc else None

    async def merged_into(self, contact_id: str) -> Sequence[str]:
        cursor = self._contacts.find({"merged_into_id": contact_id}, {"_id": 1}).sort("_id")
        return [str(d["_id"]) for d in await cursor.to_list()]

    async def _find(
        self, query: db.Document, sort: Sequence[tuple[str, int]], limit: int
    ) -> list[Interaction]:
        if limit <= 0:
            return []
        cursor = self._interactions.find(query)
        if sort:
            cursor = cursor.sort(list(sort))
        docs = await cursor.limit(limit).to_list()
        return [from_document(d) for d in docs]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        async def write(session: db.Session) -> None:
            if change.live_contact:
                await self._require_live(session, change.live_contact)
            for c in change.contacts:
                await self._contacts.update_one(
                    {"_id": c.id},
                    {
                        "$set": {
                            "merged_into_id": c.merged_into_id,
                            "erased_at": _when(c.erased_at),
                            "owner_id": c.owner_id,
                            "team": c.team,
                            "profile_at": _when(c.profile_at),
                            "erasure_confirmed_at": _when(c.erasure_confirmed_at),
                        }
                    },
                    upsert=True,
                    session=session,
                )
            for interaction, expected in change.saves:
                await self._save(session, interaction, expected)

        await self._write(events, write, handled=change.handled, idempotency=change.idempotency)

    async def _require_live(self, session: db.Session, contact_id: str) -> None:
        """A write, not a read: under snapshot isolation a read would not conflict with an
        erasure or merge committed meanwhile, and the touch could land behind the cascade.
        Writing the contact's row makes the two transactions conflict, so one of them retries
        and sees the other."""
        result = await self._contacts.update_one(
            {"_id": contact_id, "merged_into_id": "", "erased_at": None},
            {"$inc": {"touches": 1}},
            session=session,
        )
        if result.matched_count != 1:
            raise ContactGoneError(contact_id)

    async def _save(self, session: db.Session, i: Interaction, expected: int) -> None:
        doc: db.Document = {
            **to_document(i),
            "occurred_us": micros(i.details.occurred_at),
            "erased": i.erased_at is not None,
        }
        await self._save_versioned(self._interactions, session, i.id, doc, expected)
