"""What callers read: one promise, pages of promises and of reminder deliveries, statistics and
service-level breaches, and a user's reminders as they are sent."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime

from crm.followup.v1 import reminder_pb2
from followup import authorization, validation
from followup.domain.model import Promise
from followup.domain.reminders import Breach, ReminderDelivery, ReminderPolicy, breach
from followup.domain.stats import Grouping, PromiseStats, compute
from followup.ports import PromiseFilter, PromiseStore, ReminderFeed, ReminderSubscription
from promesa.auth import Identity
from promesa.clock import Clock
from promesa.errors import FieldViolation, InvalidArgumentError, NotFoundError, Violations
from promesa.pagination import Cursor, Page, decode_token, page_size, paginate


class PromiseQueries:
    """Reads for callers; they change nothing. Every read names its reader (`who`): there is
    no anonymous access, and it is where reads are scoped to what the reader may see."""

    def __init__(
        self,
        store: PromiseStore,
        clock: Clock,
        feed: ReminderFeed,
        *,
        policy: ReminderPolicy | None = None,
    ) -> None:
        """`policy` holds the service levels and calendars breaches are judged by."""
        self._store = store
        self._clock = clock
        self._feed = feed
        self.policy = policy or ReminderPolicy()

    async def get(self, promise_id: str, who: Identity) -> Promise:
        promise = await find(self._store, promise_id)
        authorization.get_promise(who, promise)
        return promise

    async def list(
        self, f: PromiseFilter, overdue_only: bool, size: int, page_token: str, who: Identity
    ) -> Page[Promise]:
        """Earliest due first; `overdue_only` as the clock says now (waiting ones are not).
        Narrowed to what the reader may read; the page token is bound to the narrowed filter,
        so a token never widens what anyone sees."""
        v = Violations()
        f = validation.check_filter(v, f)
        v.raise_if_any()
        f = authorization.list_promises(who, f)
        limit = page_size(size)
        query = (f, overdue_only)
        after = _positioned(decode_token(page_token, query))
        if overdue_only:
            f = replace(f, overdue_at=self._clock.now())
        rows = await self._store.list(f, after, limit + 1)
        return paginate(rows, limit, query, lambda p: Cursor(p.due_at, p.id))

    async def deliveries(
        self, promise_id: str, owner_id: str, size: int, page_token: str, who: Identity
    ) -> Page[ReminderDelivery]:
        """Latest scheduled first: reminders and customer notices, with every attempt. Only
        those the reader may see are listed, so a page may hold fewer than asked (AIP-158)."""
        v = Violations()
        query = (
            v.identifier("promise_id", promise_id, required=False),
            v.identifier("owner_id", owner_id, required=False),
        )
        v.raise_if_any()
        if query[0]:
            authorization.list_reminder_deliveries(who, await self._store.get(query[0]))
        limit = page_size(size)
        before = _positioned(decode_token(page_token, query))
        rows = await self._store.deliveries(*query, before, limit + 1)
        page = paginate(rows, limit, query, lambda r: Cursor(r.scheduled_at, r.id))
        if authorization.unscoped(who):
            return page
        promises = {
            p.id: p for p in await self._store.get_many(sorted({r.promise_id for r in page.items}))
        }
        visible = [
            r
            for r in page.items
            if authorization.delivery_visible(who, r, promises.get(r.promise_id))
        ]
        return Page(visible, page.next_page_token)

    async def stats(
        self, grouping: Grouping, start: datetime | None, end: datetime | None, who: Identity
    ) -> builtins.list[PromiseStats]:
        """Over the promises made in [start, end); either side may be open. Counted over the
        promises the reader may read: across teams only for a supervisor of every team."""
        v = Violations()
        validation.check_window(v, start, end)
        v.raise_if_any()
        made = await self._store.made_between(start, end)
        counted = [p for p in made if authorization.get_promise_stats(who, p)]
        return compute(counted, grouping, self._clock.now(), self.policy)

    async def breaches(
        self,
        start: datetime | None,
        end: datetime | None,
        size: int,
        page_token: str,
        who: Identity,
    ) -> Page[Breach]:
        """The promises due in [start, end) that missed their target (kept late, or open past
        due now), earliest due first; over the promises the reader may read, as statistics
        are. Read in batches until a page is full: breaches are judged, not stored."""
        v = Violations()
        validation.check_window(v, start, end)
        limit = page_size(size)
        v.raise_if_any()
        query = ("breaches", start, end)
        cursor = _positioned(decode_token(page_token, query))
        f = authorization.list_promises(who, PromiseFilter(due_after=start, due_before=end))
        now = self._clock.now()
        found: builtins.list[Breach] = []
        while len(found) <= limit:
            rows = await self._store.list(f, cursor, _BREACH_BATCH)
            found += [
                b
                for p in rows
                if authorization.list_service_level_breaches(who, p)
                and (b := breach(p, now, self.policy)) is not None
            ]
            if len(rows) < _BREACH_BATCH:
                break
            cursor = Cursor(rows[-1].due_at, rows[-1].id)
        return paginate(found, limit, query, lambda b: Cursor(b.promise.due_at, b.promise.id))

    async def reminders(
        self, user_id: str, who: Identity, resume_after: str = ""
    ) -> ReminderStream:
        """The user's reminders from now on, or from just after the reminder whose resume token
        the caller kept (so a reconnecting app misses none and sees none twice); the caller
        closes the stream."""
        v = Violations()
        user_id = v.identifier("owner_id", user_id)
        after = validation.check_resume_token(v, resume_after)
        v.raise_if_any()
        authorization.stream_reminders(who, user_id)
        return ReminderStream(await self._feed.subscribe(user_id, after))


# Promises read at once while looking for breaches.
_BREACH_BATCH = 500


@dataclass(frozen=True)
class StreamedReminder:
    """A reminder, and the token that resumes a stream just after it."""

    reminder: reminder_pb2.Reminder
    resume_token: str


class ReminderStream:
    """A user's reminders, each with its resume token; iterate, then close."""

    def __init__(self, subscription: ReminderSubscription) -> None:
        self._subscription = subscription

    @property
    def resume_token(self) -> str:
        """Resumes where this stream started: what an app that read nothing yet reconnects
        with, so that it misses nothing sent meanwhile."""
        return validation.resume_token(self._subscription.started_after)

    async def __aiter__(self) -> AsyncIterator[StreamedReminder]:
        async for fed in self._subscription:
            yield StreamedReminder(fed.reminder, validation.resume_token(fed.position))

    async def close(self) -> None:
        await self._subscription.close()


async def find(store: PromiseStore, promise_id: str) -> Promise:
    """The promise by id, whoever asks (the caller's rule is checked by the use case);
    INVALID_ARGUMENT for an id that cannot be one, NOT_FOUND for an unknown one."""
    v = Violations()
    promise_id = v.identifier("id", promise_id)
    v.raise_if_any()
    promise = await store.get(promise_id)
    if promise is None:
        raise NotFoundError("promise", promise_id)
    return promise


def _positioned(cursor: Cursor | None) -> Cursor | None:
    """These pages are ordered by a time: a cursor without one was not made here."""
    if cursor is not None and cursor.at is None:
        raise InvalidArgumentError([FieldViolation("page_token", "is not a valid page token")])
    return cursor
