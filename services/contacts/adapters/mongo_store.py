"""The production store: MongoDB through PyMongo's async API, one document per contact.

Each contact is its shared document (`documents.to_document`) under `_id` = contact id, plus
the keys the queries need (`live`, lower-cased name keys). Emails live in their own
collection keyed by the email, so the database itself refuses a second holder, as the
SQLite primary key does. Writes run in one multi-document transaction, which needs a
replica set (see `promesa.mongo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel

from contacts.adapters.documents import from_document, to_document
from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact, Lifecycle
from contacts.ports import (
    Change,
    ContactFilter,
    EmailTakenError,
    VersionConflictError,
)
from promesa import mongo as db
from promesa.mongo_store import MongoStore

CONTACTS = "contacts"
CONTACT_EMAILS = "contact_emails"

DeadLetters = list[dict[str, object]]  # named here: inside the class, `list` is a method

# Every query of live contacts says `live: true`, so the indexes only hold live ones.
_LIVE = {"partialFilterExpression": {"live": True}}

INDEXES: dict[str, list[IndexModel]] = {
    CONTACTS: [
        IndexModel([("created_at", ASCENDING), ("_id", ASCENDING)], name="by_created", **_LIVE),
        IndexModel(
            [("owner_id", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)],
            name="by_owner",
            **_LIVE,
        ),
        IndexModel(
            [("team", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)],
            name="by_team",
            **_LIVE,
        ),
        IndexModel(
            [("tags", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)],
            name="by_tag",
            **_LIVE,
        ),
        IndexModel(
            [("status", ASCENDING), ("last_purchase_at", ASCENDING), ("_id", ASCENDING)],
            name="lapsing",
            **_LIVE,
        ),
        IndexModel([("display_key", ASCENDING)], name="by_display", **_LIVE),
        IndexModel([("preferred_key", ASCENDING)], name="by_preferred", **_LIVE),
        IndexModel([("emails", ASCENDING)], name="by_email", **_LIVE),
        IndexModel([("phones", ASCENDING)], name="by_phone", **_LIVE),
    ],
    # `_id` is the normalised email: its unique index is the uniqueness rule.
    CONTACT_EMAILS: [IndexModel([("contact_id", ASCENDING)], name="by_contact")],
}


class MongoContactStore(MongoStore[ContactEvent]):
    APP_NAME = "promesa-contacts"
    INDEXES = INDEXES

    def _collections(self, database: db.Database) -> None:
        self._contacts = database[CONTACTS]
        self._emails = database[CONTACT_EMAILS]

    # --- reads -------------------------------------------------------------------------------

    async def get(self, contact_id: str) -> Contact | None:
        doc = await self._contacts.find_one({"_id": contact_id})
        return from_document(doc) if doc else None

    async def holder_of_email(self, email: str) -> str | None:
        row = await self._emails.find_one({"_id": email})
        return str(row["contact_id"]) if row else None

    async def list(
        self, f: ContactFilter, after: tuple[str, str] | None, limit: int
    ) -> Sequence[Contact]:
        query: db.Document = {"live": True}
        if f.status is not None:
            query["status"] = f.status.value
        if f.owner_id:
            query["owner_id"] = f.owner_id
        if f.team:
            query["team"] = f.team
        if f.kind is not None:
            query["kind"] = f.kind.value
        if f.relationship is not None:
            query["relationship"] = f.relationship.value
        if f.updated_since is not None:
            query["updated_at"] = {"$gte": db.to_iso(f.updated_since)}
        if f.tag:
            query["tags"] = f.tag.strip().lower()
        if after is not None:
            created_at, contact_id = after
            query["$or"] = [
                {"created_at": {"$gt": created_at}},
                {"created_at": created_at, "_id": {"$gt": contact_id}},
            ]
        return await self._find(query, [("created_at", ASCENDING), ("_id", ASCENDING)], limit)

    async def search(
        self, name_prefix: str, email: str, phone: str, after: str | None, limit: int
    ) -> Sequence[Contact]:
        query: db.Document = {"live": True}
        if name_prefix:
            # The same half-open range as SQLite: BSON strings compare by UTF-8 bytes.
            bounds = {"$gte": name_prefix, "$lt": name_prefix + "\U0010ffff"}
            query["$or"] = [{"display_key": bounds}, {"preferred_key": bounds}]
        if email:
            query["emails"] = email
        if phone:
            query["phones"] = phone
        if after is not None:
            query["_id"] = {"$gt": after}
        return await self._find(query, [("_id", ASCENDING)], limit)

    async def lapsed(self, purchased_before: datetime, limit: int) -> Sequence[Contact]:
        query = {
            "live": True,
            "status": Lifecycle.ACTIVE.value,
            "last_purchase_at": {"$lte": db.to_iso(purchased_before)},
        }
        return await self._find(query, [("last_purchase_at", ASCENDING), ("_id", ASCENDING)], limit)

    async def _find(
        self, query: db.Document, sort: Sequence[tuple[str, int]], limit: int
    ) -> Sequence[Contact]:
        if limit <= 0:
            return []
        docs = await self._contacts.find(query).sort(list(sort)).limit(limit).to_list()
        return [from_document(d) for d in docs]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        async def write(session: db.Session) -> None:
            for contact, expected in change.saves:
                await self._save(session, contact, expected)

        await self._write(events, write, handled=change.handled, idempotency=change.idempotency)

    async def _save(self, session: db.Session, c: Contact, expected: int) -> None:
        d = c.details
        doc: dict[str, Any] = {
            **to_document(c),
            "live": c.is_live,
            "display_key": d.display_name.lower(),
            "preferred_key": d.preferred_name.lower(),
        }
        if expected == 0:
            inserted = await self._contacts.update_one(
                {"_id": c.id}, {"$setOnInsert": doc}, upsert=True, session=session
            )
            if inserted.upserted_id is None:
                raise VersionConflictError(c.id)  # the id exists: it is not a new contact
        else:
            replaced = await self._contacts.replace_one(
                {"_id": c.id, "version": expected}, doc, session=session
            )
            if replaced.matched_count != 1:
                raise VersionConflictError(c.id)
        await self._emails.delete_many({"contact_id": c.id}, session=session)
        if not c.is_live:
            return
        for email in d.emails:
            claimed = await self._emails.update_one(
                {"_id": email}, {"$setOnInsert": {"contact_id": c.id}}, upsert=True, session=session
            )
            if claimed.upserted_id is None:
                holder = await self._emails.find_one({"_id": email}, session=session)
                holder_id = str(holder["contact_id"]) if holder else ""
                if holder_id != c.id:
                    raise EmailTakenError(email, holder_id)
