"""The production store: MongoDB through PyMongo's async API, one document per contact.

Each contact is its shared document (`documents.to_document`) under `_id` = contact id, plus
the keys the queries need (`live`, lower-cased name keys). Emails live in their own
collection keyed by the email, so the database itself refuses a second holder, as the
SQLite primary key does. An erasure record is a document under `_id` = contact id; its
confirmations live one per (contact, service) in their own collection, so a redelivered
one is refused by the key rather than read and compared. Writes run in one multi-document
transaction, which needs a replica set (see `promesa.mongo`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel

from contacts.adapters import documents
from contacts.domain.erasure import ErasureConfirmation, ErasureRecord
from contacts.domain.events import ContactEvent
from contacts.domain.model import Contact, Lifecycle
from contacts.ports import Change, ContactFilter, ContactSearch, EmailTakenError
from promesa import mongo as db
from promesa.mongo_store import MongoStore
from promesa.pagination import Cursor
from promesa.storage import VersionConflictError

CONTACTS = "contacts"
CONTACT_EMAILS = "contact_emails"
ERASURES = "erasures"
ERASURE_CONFIRMATIONS = "erasure_confirmations"

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
    # `_id` is the contact id: one record per erasure.
    ERASURES: [
        IndexModel([("erased_at", DESCENDING), ("_id", DESCENDING)], name="newest"),
    ],
    # `_id` is {contact_id, service}: each service's first confirmation is the one kept.
    ERASURE_CONFIRMATIONS: [IndexModel([("contact_id", ASCENDING)], name="by_contact")],
}


class MongoContactStore(MongoStore[ContactEvent]):
    APP_NAME = "promesa-contacts"
    INDEXES = INDEXES

    def _collections(self, database: db.Database) -> None:
        self._contacts = database[CONTACTS]
        self._emails = database[CONTACT_EMAILS]
        self._erasures = database[ERASURES]
        self._confirmations = database[ERASURE_CONFIRMATIONS]

    # --- reads -------------------------------------------------------------------------------

    async def get(self, contact_id: str) -> Contact | None:
        doc = await self._contacts.find_one({"_id": contact_id})
        return documents.from_document(doc) if doc else None

    async def holder_of_email(self, email: str) -> str | None:
        row = await self._emails.find_one({"_id": email})
        return str(row["contact_id"]) if row else None

    async def list(self, f: ContactFilter, after: Cursor | None, limit: int) -> Sequence[Contact]:
        query: db.Document = {"live": True, **documents.equalities(f)}
        if f.updated_since is not None:
            query["updated_at"] = {"$gte": documents.instant(f.updated_since)}
        if f.tag:
            query["tags"] = f.tag
        if f.teams is not None:
            # Beside a `team` filter, not over it: both must hold.
            query["$and"] = [{"team": {"$in": list(f.teams)}}]
        if after is not None and after.at is not None:
            created_at = documents.instant(after.at)
            query["$or"] = [
                {"created_at": {"$gt": created_at}},
                {"created_at": created_at, "_id": {"$gt": after.id}},
            ]
        return await self._find(query, [("created_at", ASCENDING), ("_id", ASCENDING)], limit)

    async def search(self, q: ContactSearch, after: Cursor | None, limit: int) -> Sequence[Contact]:
        query: db.Document = {"live": True}
        if q.name_prefix:
            # The same half-open range as SQLite: BSON strings compare by UTF-8 bytes.
            bounds = {"$gte": q.name_prefix, "$lt": q.name_prefix + "\U0010ffff"}
            query["$or"] = [{"display_key": bounds}, {"preferred_key": bounds}]
        if q.email:
            query["emails"] = q.email
        if q.phone:
            query["phones"] = q.phone
        if q.teams is not None:
            query["team"] = {"$in": list(q.teams)}
        if after is not None:
            query["_id"] = {"$gt": after.id}
        return await self._find(query, [("_id", ASCENDING)], limit)

    async def lapsed(self, purchased_before: datetime, limit: int) -> Sequence[Contact]:
        query = {
            "live": True,
            "status": Lifecycle.ACTIVE.value,
            "last_purchase_at": {"$lte": documents.instant(purchased_before)},
        }
        return await self._find(query, [("last_purchase_at", ASCENDING), ("_id", ASCENDING)], limit)

    async def _find(
        self, query: db.Document, sort: Sequence[tuple[str, int]], limit: int
    ) -> Sequence[Contact]:
        if limit <= 0:
            return []
        docs = await self._contacts.find(query).sort(list(sort)).limit(limit).to_list()
        return [documents.from_document(d) for d in docs]

    async def erasure(self, contact_id: str) -> ErasureRecord | None:
        found = await self._find_erasures({"_id": contact_id}, 1)
        return found[0] if found else None

    async def erasures(self, after: Cursor | None, limit: int) -> Sequence[ErasureRecord]:
        query: db.Document = {}
        if after is not None and after.at is not None:
            erased_at = documents.instant(after.at)
            query["$or"] = [
                {"erased_at": {"$lt": erased_at}},
                {"erased_at": erased_at, "_id": {"$lt": after.id}},
            ]
        return await self._find_erasures(query, limit)

    async def _find_erasures(self, query: db.Document, limit: int) -> Sequence[ErasureRecord]:
        if limit <= 0:
            return []
        order = [("erased_at", DESCENDING), ("_id", DESCENDING)]
        docs = await self._erasures.find(query).sort(order).limit(limit).to_list()
        confirmations: documents.Confirmations = {d["_id"]: [] for d in docs}
        if docs:
            found = self._confirmations.find({"contact_id": {"$in": list(confirmations)}})
            for c in await found.to_list():
                confirmations[c["contact_id"]].append(documents.confirmation_from_document(c))
        return [documents.erasure_from_document(d, confirmations[d["_id"]]) for d in docs]

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        async def write(session: db.Session) -> None:
            for contact, expected in change.saves:
                await self._save(session, contact, expected)
            if change.erasure is not None:
                await self._save_erasure(session, change.erasure)
            for confirmation in change.confirmations:
                await self._confirm(session, confirmation)

        await self._write(events, write, handled=change.handled, idempotency=change.idempotency)

    async def _save(self, session: db.Session, c: Contact, expected: int) -> None:
        """The contact's document, then its emails in the collection whose unique `_id` is
        the one-holder rule."""
        doc = {**documents.to_document(c), **documents.query_keys(c)}
        await self._save_versioned(self._contacts, session, c.id, doc, expected)
        await self._emails.delete_many({"contact_id": c.id}, session=session)
        if not c.is_live:
            return
        for email in c.details.emails:
            claimed = await self._emails.update_one(
                {"_id": email}, {"$setOnInsert": {"contact_id": c.id}}, upsert=True, session=session
            )
            if claimed.upserted_id is None:
                holder = await self._emails.find_one({"_id": email}, session=session)
                holder_id = str(holder["contact_id"]) if holder else ""
                if holder_id != c.id:
                    raise EmailTakenError(email, holder_id)

    async def _save_erasure(self, session: db.Session, r: ErasureRecord) -> None:
        """An upsert that only inserts, so a second record is refused without aborting the
        transaction."""
        inserted = await self._erasures.update_one(
            {"_id": r.contact_id},
            {"$setOnInsert": documents.erasure_to_document(r)},
            upsert=True,
            session=session,
        )
        if inserted.upserted_id is None:
            raise VersionConflictError(r.contact_id)

    async def _confirm(self, session: db.Session, c: ErasureConfirmation) -> None:
        """A service's first confirmation stays; a redelivered one finds its key taken."""
        await self._confirmations.update_one(
            {"_id": {"contact_id": c.contact_id, "service": c.service}},
            {"$setOnInsert": documents.confirmation_to_document(c)},
            upsert=True,
            session=session,
        )
