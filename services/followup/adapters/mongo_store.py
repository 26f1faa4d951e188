"""The production store: MongoDB through PyMongo's async API, promises, reminders, profiles and
contact fates.

A promise is its shared document (`documents.promise_doc`) under `_id` = promise id: its
times are fixed-width UTC text, so they sort and compare as instants. A reminder keeps its
delivery document under `doc`, beside the keys the scheduler owns: `next_attempt_at` (absent
once nothing is left to do, so the partial index holds only what may fall due) and
`lease_token`.

A claim moves `next_attempt_at` to the end of the lease and stamps a token, one reminder at a
time with `find_one_and_update` on `{_id, next_attempt_at <= now}`: the filter and the update
are one atomic step on the server, so of two replicas racing for a reminder exactly one
matches. A replica that dies leaves reminders that fall due again when the lease ends, and one
that comes back late cannot complete what another took over: completing matches the token.
The holder renews the lease while still delivering (`renew_claims`, matching the token too).

A contact's fate is a document under `_id` = contact id. A change that puts something on a
contact (`Change.live_contact`) writes to that contact's fate document in its transaction, and
reads it there: a concurrent erasure or merge writes the same document, so one of the two
transactions conflicts and runs again, and a promise can never slip onto a contact erased
between the read of its fate and the commit (snapshot reads alone would let it).

Writes run in one multi-document transaction, which needs a replica set (see `promesa.mongo`).
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from datetime import datetime

from pymongo import ASCENDING, DESCENDING, IndexModel, ReturnDocument

from followup.adapters import documents
from followup.adapters.documents import iso
from followup.domain.contacts import ContactFate, ContactPreferences
from followup.domain.events import PromiseEvent
from followup.domain.model import Priority, Promise, PromiseKind, Status
from followup.domain.reminders import Outcome, ReminderDelivery
from followup.ports import (
    Change,
    Claim,
    ContactGoneError,
    LeaseLostError,
    OpenCount,
    PromiseFilter,
)
from promesa import mongo as db
from promesa.ids import new_id
from promesa.mongo_store import MongoStore
from promesa.pagination import Cursor

PROMISES = "promises"
REMINDERS = "reminders"
CONTACT_PROFILES = "contact_profiles"
CONTACT_FATES = "contact_fates"

# Rounds of claiming in one call when other replicas took some of the candidates first.
_CLAIM_ROUNDS = 3
# Claims sent at once: a batch of thousands must not take every pooled connection.
_CLAIMS_IN_FLIGHT = 32

INDEXES: dict[str, list[IndexModel]] = {
    PROMISES: [
        IndexModel([("due_at", ASCENDING), ("_id", ASCENDING)], name="promises_by_due"),
        IndexModel(
            [("owner_id", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)],
            name="promises_by_owner",
        ),
        IndexModel(
            [("team", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)],
            name="promises_by_team",
        ),
        IndexModel(
            [("contact_id", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)],
            name="promises_by_contact",
        ),
        IndexModel(
            [("status", ASCENDING), ("due_at", ASCENDING), ("_id", ASCENDING)],
            name="promises_by_status",
        ),
        IndexModel([("created_at", ASCENDING)], name="promises_by_created"),
    ],
    REMINDERS: [
        # Only reminders that may still fall due: the scheduler reads what is due, however
        # many promises are open.
        IndexModel(
            [("next_attempt_at", ASCENDING)],
            name="reminders_due",
            partialFilterExpression={"next_attempt_at": {"$exists": True}},
        ),
        IndexModel(
            [("promise_id", ASCENDING), ("scheduled_at", ASCENDING), ("_id", ASCENDING)],
            name="reminders_by_promise",
        ),
        IndexModel(
            [("owner_id", ASCENDING), ("scheduled_at", ASCENDING), ("_id", ASCENDING)],
            name="reminders_by_owner",
        ),
        IndexModel([("scheduled_at", ASCENDING), ("_id", ASCENDING)], name="reminders_by_time"),
    ],
    # `_id` is the contact id.
    CONTACT_PROFILES: [],
    # `_id` is the contact id; the contacts merged into one are found by their survivor.
    CONTACT_FATES: [
        IndexModel(
            [("merged_into_id", ASCENDING)],
            name="contact_fates_by_survivor",
            partialFilterExpression={"merged_into_id": {"$gt": ""}},
        )
    ],
}


def _reminder_row(r: ReminderDelivery) -> db.Document:
    row: db.Document = {
        "_id": r.id,
        "promise_id": r.promise_id,
        "owner_id": r.owner_id,
        "outcome": r.outcome.value,
        "scheduled_at": iso(r.scheduled_at),
        "doc": documents.delivery_doc(r),
    }
    if r.next_attempt_at is not None:
        row["next_attempt_at"] = iso(r.next_attempt_at)
    return row


def due_query(now: datetime) -> db.Document:
    """Reminders whose next attempt is due (an expired lease counts): it names the partial
    index's condition, so the planner may read `reminders_due`."""
    return {"next_attempt_at": {"$exists": True, "$lte": iso(now)}}


def next_due_query() -> db.Document:
    """Every reminder that may still fall due, in the words of the partial index's condition."""
    return {"next_attempt_at": {"$exists": True}}


class MongoPromiseStore(MongoStore[PromiseEvent]):
    APP_NAME = "promesa-followup"
    INDEXES = INDEXES

    def _collections(self, database: db.Database) -> None:
        self._promises = database[PROMISES]
        self._reminders = database[REMINDERS]
        self._profiles = database[CONTACT_PROFILES]
        self._fates = database[CONTACT_FATES]

    # --- reads -------------------------------------------------------------------------------

    async def _find(
        self,
        query: db.Document,
        sort: Sequence[tuple[str, int]] = (),
        limit: int | None = None,
    ) -> builtins.list[Promise]:
        if limit is not None and limit <= 0:
            return []
        cursor = self._promises.find(query)
        if sort:
            cursor = cursor.sort(builtins.list(sort))
        if limit is not None:
            cursor = cursor.limit(limit)
        return [documents.promise_from(d) for d in await cursor.to_list()]

    async def get(self, promise_id: str) -> Promise | None:
        doc = await self._promises.find_one({"_id": promise_id})
        return documents.promise_from(doc) if doc else None

    async def get_many(self, promise_ids: Sequence[str]) -> builtins.list[Promise]:
        if not promise_ids:
            return []
        return await self._find({"_id": {"$in": builtins.list(promise_ids)}})

    async def list(self, f: PromiseFilter, after: Cursor | None, limit: int) -> Sequence[Promise]:
        query: db.Document = {}
        clauses: builtins.list[db.Document] = []
        for key in ("owner_id", "team", "contact_id"):
            if getattr(f, key):
                query[key] = getattr(f, key)
        if f.status is not None:
            query["status"] = f.status.value
        due: db.Document = {}
        if f.due_after is not None:
            due["$gte"] = iso(f.due_after)
        if f.due_before is not None:
            due["$lt"] = iso(f.due_before)
        if f.overdue_at is not None:
            # Waiting promises have their clock stopped: overdue only if paused after due.
            clauses.append(
                {
                    "$or": [
                        {"status": Status.OPEN.value, "due_at": {"$lt": iso(f.overdue_at)}},
                        {
                            "status": Status.WAITING_ON_CUSTOMER.value,
                            "paused_at": {"$type": "string"},
                            "$expr": {"$gt": ["$paused_at", "$due_at"]},
                        },
                    ]
                }
            )
        if after is not None and after.at is not None:
            at, promise_id = iso(after.at), after.id
            # The plain bound keeps the index scan bounded; the $or breaks the tie by id.
            due["$gte"] = max(at, due.get("$gte", at))
            clauses.append(
                {"$or": [{"due_at": {"$gt": at}}, {"due_at": at, "_id": {"$gt": promise_id}}]}
            )
        if due:
            query["due_at"] = due
        if clauses:
            query["$and"] = clauses
        return await self._find(query, [("due_at", ASCENDING), ("_id", ASCENDING)], limit)

    async def of_contact(self, contact_id: str) -> Sequence[Promise]:
        return await self._find({"contact_id": contact_id})

    async def open_of_kind(self, contact_id: str, kind: PromiseKind) -> Sequence[Promise]:
        return await self._find(
            {
                "contact_id": contact_id,
                "kind": kind.value,
                "status": {"$in": [Status.OPEN.value, Status.WAITING_ON_CUSTOMER.value]},
            }
        )

    async def made_between(self, start: datetime | None, end: datetime | None) -> Sequence[Promise]:
        created: db.Document = {}
        if start is not None:
            created["$gte"] = iso(start)
        if end is not None:
            created["$lt"] = iso(end)
        return await self._find({"created_at": created} if created else {})

    async def count_open(self, now: datetime) -> Sequence[OpenCount]:
        # Counted in the server through promises_by_status: only the groups come back.
        open_statuses = [Status.OPEN.value, Status.WAITING_ON_CUSTOMER.value]
        late = {"$and": [{"$eq": ["$status", Status.OPEN.value]}, {"$lt": ["$due_at", iso(now)]}]}
        paused_late = {
            "$and": [
                {"$eq": ["$status", Status.WAITING_ON_CUSTOMER.value]},
                {"$eq": [{"$type": "$paused_at"}, "string"]},
                {"$gt": ["$paused_at", "$due_at"]},
            ]
        }
        pipeline: builtins.list[db.Document] = [
            {"$match": {"status": {"$in": open_statuses}}},
            {
                "$group": {
                    "_id": {"team": "$team", "priority": "$priority"},
                    "open": {"$sum": 1},
                    "overdue": {"$sum": {"$cond": [{"$or": [late, paused_late]}, 1, 0]}},
                }
            },
        ]
        groups = await (await self._promises.aggregate(pipeline)).to_list()
        return [
            OpenCount(
                g["_id"]["team"],
                Priority(g["_id"].get("priority") or Priority.NORMAL.value),
                g["open"],
                g["overdue"],
            )
            for g in groups
        ]

    async def profile(self, contact_id: str) -> ContactPreferences | None:
        doc = await self._profiles.find_one({"_id": contact_id})
        return documents.profile_from(doc) if doc else None

    async def fate(self, contact_id: str) -> ContactFate | None:
        doc = await self._fates.find_one({"_id": contact_id})
        return documents.fate_from(doc) if doc else None

    async def duplicates_of(self, contact_id: str) -> Sequence[str]:
        rows = (
            await self._fates.find({"merged_into_id": contact_id}, {"_id": 1})
            .sort("_id", ASCENDING)
            .to_list()
        )
        return [str(r["_id"]) for r in rows]

    async def deliveries(
        self, promise_id: str, owner_id: str, before: Cursor | None, limit: int
    ) -> Sequence[ReminderDelivery]:
        if limit <= 0:
            return []
        query: db.Document = {}
        for key, value in (("promise_id", promise_id), ("owner_id", owner_id)):
            if value:
                query[key] = value
        if before is not None and before.at is not None:
            at, reminder_id = iso(before.at), before.id
            query["scheduled_at"] = {"$lte": at}
            query["$or"] = [
                {"scheduled_at": {"$lt": at}},
                {"scheduled_at": at, "_id": {"$lt": reminder_id}},
            ]
        rows = (
            await self._reminders.find(query, {"doc": 1})
            .sort([("scheduled_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit)
            .to_list()
        )
        return [documents.delivery_from(r["doc"]) for r in rows]

    # --- the scheduler's claim ------------------------------------------------------------------

    async def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> Sequence[Claim]:
        """Each due reminder is leased by one atomic find-and-modify that re-checks that it is
        still due: a reminder another replica leased in between no longer matches and is
        skipped, so no two replicas ever hold the same lease."""
        token = new_id()
        lease = iso(lease_until)
        claims: builtins.list[Claim] = []
        tried: set[str] = set()  # a lease that ends before `now` would match again
        for _ in range(_CLAIM_ROUNDS):
            wanted = limit - len(claims)
            if wanted <= 0:
                break
            rows = (
                await self._reminders.find(due_query(now), {"_id": 1})
                .sort("next_attempt_at", ASCENDING)
                .limit(wanted)
                .to_list()
            )
            candidates = [str(r["_id"]) for r in rows if str(r["_id"]) not in tried]
            if not candidates:
                break
            tried.update(candidates)
            won: builtins.list[Claim | None] = []
            for i in range(0, len(candidates), _CLAIMS_IN_FLIGHT):
                chunk = candidates[i : i + _CLAIMS_IN_FLIGHT]
                won.extend(
                    await asyncio.gather(*(self._claim_one(r, now, lease, token) for r in chunk))
                )
            claims.extend(c for c in won if c is not None)
            if all(c is not None for c in won):
                break  # nothing was lost to another replica: what is left is not due
        return claims

    async def _claim_one(
        self, reminder_id: str, due: datetime, lease: str, token: str
    ) -> Claim | None:
        row = await self._reminders.find_one_and_update(
            {"_id": reminder_id, **due_query(due)},
            {"$set": {"next_attempt_at": lease, "lease_token": token}},
            projection={"doc": 1},
            return_document=ReturnDocument.AFTER,
        )
        return Claim(documents.delivery_from(row["doc"]), token) if row else None

    async def next_due(self) -> datetime | None:
        """The first entry of `reminders_due`: the filter names the partial index's condition,
        so the planner reads one index key (`next_due_query`)."""
        row = await self._reminders.find_one(
            next_due_query(), {"next_attempt_at": 1}, sort=[("next_attempt_at", ASCENDING)]
        )
        return datetime.fromisoformat(row["next_attempt_at"]) if row else None

    async def renew_claims(self, claims: Sequence[Claim], until: datetime) -> set[str]:
        """One update per token matching it: a reminder another replica took over carries
        that replica's token and is left alone."""
        held: set[str] = set()
        by_token: dict[str, builtins.list[str]] = {}
        for c in claims:
            by_token.setdefault(c.token, []).append(c.delivery.id)
        for token, reminder_ids in by_token.items():
            mine = {"_id": {"$in": reminder_ids}, "lease_token": token}
            await self._reminders.update_many(mine, {"$set": {"next_attempt_at": iso(until)}})
            rows = await self._reminders.find(mine, {"_id": 1}).to_list()
            held.update(str(r["_id"]) for r in rows)
        return held

    # --- the one write path ------------------------------------------------------------------

    async def commit(self, change: Change) -> None:
        events = [self._encode(e) for e in change.events]

        async def write(session: db.Session) -> None:
            if change.live_contact:
                await self._require_live(session, change.live_contact)
            for fate in change.fates:
                stored = await self._fates.find_one({"_id": fate.contact_id}, session=session)
                combined = documents.fate_from(stored).combined(fate) if stored else fate
                await self._fates.update_one(
                    {"_id": fate.contact_id},
                    {"$set": documents.fate_doc(combined)},
                    upsert=True,
                    session=session,
                )
            for claim in change.completed:
                await self._complete(session, claim)
            for claim in change.progressed:
                await self._progress(session, claim)
            for promise, expected in change.saves:
                await self._save_versioned(
                    self._promises, session, promise.id, documents.promise_doc(promise), expected
                )
            for promise_id, planned in change.replans.items():
                await self._reminders.delete_many(
                    {"promise_id": promise_id, "outcome": Outcome.PENDING.value}, session=session
                )
                await self._insert(session, planned)
            await self._insert(session, change.added)
            for profile in change.profiles:
                stored = await self._profiles.find_one({"_id": profile.contact_id}, session=session)
                if stored is not None and not profile.supersedes(documents.profile_from(stored)):
                    continue  # an older change heard late
                await self._profiles.replace_one(
                    {"_id": profile.contact_id},
                    documents.profile_doc(profile),
                    upsert=True,
                    session=session,
                )
            if change.forgotten_profiles:
                await self._profiles.delete_many(
                    {"_id": {"$in": builtins.list(change.forgotten_profiles)}}, session=session
                )

        await self._write(events, write, handled=change.handled, idempotency=change.idempotency)

    async def _require_live(self, session: db.Session, contact_id: str) -> None:
        """Writes to the contact's fate document (a live one is created), so that an erasure
        or merge committed by another transaction meanwhile conflicts with this one, then
        refuses a contact that is gone."""
        doc = await self._fates.find_one_and_update(
            {"_id": contact_id},
            {
                "$setOnInsert": documents.fate_doc(ContactFate(contact_id)),
                "$inc": {"guarded_writes": 1},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
            session=session,
        )
        if doc is not None and not documents.fate_from(doc).is_live:
            raise ContactGoneError(contact_id)

    async def _complete(self, session: db.Session, claim: Claim) -> None:
        r = claim.delivery
        update: db.Document = {
            "$set": {"doc": documents.delivery_doc(r), "outcome": r.outcome.value},
            "$unset": {"lease_token": ""},
        }
        if r.next_attempt_at is not None:
            update["$set"]["next_attempt_at"] = iso(r.next_attempt_at)
        else:
            update["$unset"]["next_attempt_at"] = ""
        result = await self._reminders.update_one(
            {"_id": r.id, "lease_token": claim.token}, update, session=session
        )
        if result.matched_count != 1:
            raise LeaseLostError(r.id)

    async def _progress(self, session: db.Session, claim: Claim) -> None:
        r = claim.delivery
        result = await self._reminders.update_one(
            {"_id": r.id, "lease_token": claim.token},
            {"$set": {"doc": documents.delivery_doc(r), "outcome": r.outcome.value}},
            session=session,
        )
        if result.matched_count != 1:
            raise LeaseLostError(r.id)

    async def _insert(self, session: db.Session, planned: Sequence[ReminderDelivery]) -> None:
        if planned:
            await self._reminders.insert_many(
                [_reminder_row(r) for r in planned], ordered=True, session=session
            )
